package mqtt_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/mqtttest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// newBrokerFunc starts a broker of the kind a subtest runs against.
type newBrokerFunc func(mqtttest.Options) *mqtttest.Broker

// eachBroker runs story against the embedded broker and against
// mosquitto (skipped when it is not installed, failed under
// PUBSUB_REQUIRE_SERVICES=1).
func eachBroker(t *testing.T, story func(t *testing.T, newBroker newBrokerFunc)) {
	t.Run("embedded", func(t *testing.T) {
		story(t, func(o mqtttest.Options) *mqtttest.Broker { return mqtttest.Embedded(t, o) })
	})
	t.Run("mosquitto", func(t *testing.T) {
		bin := testserver.NeedBinary(t, "mosquitto")
		story(t, func(o mqtttest.Options) *mqtttest.Broker { return mqtttest.Mosquitto(t, bin, o) })
	})
}

// site is the endpoint of these tests with an mqtt block in it; {MQTT}
// stands for the block.
const site = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		poll_timeout 1s
		history 1000 1h
		{MQTT}
	}
}
`

// mqttBlock is an mqtt block for url with client_id id and the given
// sub-directives, one per line.
func mqttBlock(url, id string, lines ...string) string {
	return fmt.Sprintf("mqtt %s {\n\t\t\tclient_id %s\n\t\t\t%s\n\t\t}", url, id, strings.Join(lines, "\n\t\t\t"))
}

// withMQTT is site with block in it.
func withMQTT(block string) string { return strings.Replace(site, "{MQTT}", block, 1) }

// start runs Caddy with site and the mqtt block, its pubsub logs (INFO
// and up) going to a JSON log file, and returns the endpoint URL.
func start(t *testing.T, block string) (*testserver.Server, string, *caddyLog) {
	t.Helper()
	return startSite(t, withMQTT(block))
}

// startSite is start with a whole site of its own.
func startSite(t *testing.T, site string) (*testserver.Server, string, *caddyLog) {
	t.Helper()
	logs := &caddyLog{path: filepath.Join(t.TempDir(), "pubsub.log")}
	globals := fmt.Sprintf("\tlog pubsub {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t\tinclude http.handlers.pubsub\n\t}", logs.path)
	s := testserver.StartWith(t, globals, site)
	return s, s.Base + "/events", logs
}

// withRedis is site with the mqtt block and its hub kept in Redis at url.
func withRedis(block, url string) string {
	broker := fmt.Sprintf("history 1000 1h\n\t\tbroker redis %s {\n\t\t\tdial_timeout 1s\n\t\t}", url)
	return strings.Replace(withMQTT(block), "history 1000 1h", broker, 1)
}

// caddyLog reads the log file Caddy writes.
type caddyLog struct{ path string }

// entries returns every log entry written so far.
func (l *caddyLog) entries(t *testing.T) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(l.path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// count returns how many entries have message msg.
func (l *caddyLog) count(t *testing.T, msg string) int {
	t.Helper()
	n := 0
	for _, e := range l.entries(t) {
		if e["msg"] == msg {
			n++
		}
	}
	return n
}

// wait waits until n entries have message msg and returns the last one.
// A log file offers no event to wait on, so it is polled.
func (l *caddyLog) wait(t *testing.T, msg string, n int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * testserver.Wait)
	for {
		var last map[string]any
		found := 0
		for _, e := range l.entries(t) {
			if e["msg"] == msg {
				found++
				last = e
			}
		}
		if found >= n {
			return last
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(l.path)
			t.Fatalf("log %q %d times: found %d within %s; log:\n%s", msg, n, found, 2*testserver.Wait, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// envelopeWithin reads the next SSE event of a ?format=json stream,
// skipping heartbeats, and fails when none comes within d: heartbeats
// alone would keep envelope waiting forever.
func envelopeWithin(t *testing.T, s *testserver.SSEStream, d time.Duration) testserver.Envelope {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatal("SSE stream ended")
			}
			if ev.IsComment {
				continue
			}
			var e testserver.Envelope
			if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
				t.Fatalf("SSE data %q: %v", ev.Data, err)
			}
			return e
		case <-deadline:
			t.Fatalf("no SSE event within %s", d)
		}
	}
}

// envelope reads the next SSE event of a ?format=json stream.
func envelope(t *testing.T, s *testserver.SSEStream) testserver.Envelope {
	t.Helper()
	ev := s.Next()
	var e testserver.Envelope
	if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
		t.Fatalf("SSE data %q: %v", ev.Data, err)
	}
	if e.ID != ev.ID {
		t.Fatalf("envelope ID %q, SSE id %q", e.ID, ev.ID)
	}
	return e
}

// short renders a message as "topic event data" for comparisons.
func short(topic, event, data string) string { return topic + " " + event + " " + data }
