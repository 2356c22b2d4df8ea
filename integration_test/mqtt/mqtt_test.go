package mqtt_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pubsub/caddy-pubsub/internal/mqtttest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Sensors publish to an MQTT broker; SSE, WebSocket and long-poll clients
// of Caddy get each message that matches the mqtt block's filters, under
// the prefix, with the same IDs; binary payloads come as base64.
func TestMQTTMessagesReachEveryTransport(t *testing.T) {
	eachBroker(t, func(t *testing.T, newBroker newBrokerFunc) {
		b := newBroker(mqtttest.Options{})
		_, ep, logs := start(t, mqttBlock(b.URL(), "it-transports",
			"subscribe sensors/# 1", "subscribe alerts/+ 0", "prefix mqtt/"))
		logs.wait(t, "mqtt connected", 1)

		sse := testserver.Subscribe(t, nil, ep+"?topic=mqtt/%23&format=json", nil)
		ws := testserver.DialWS(t, ep+"?topic=mqtt/%23", nil)

		b.Publish("sensors/kitchen/temp", []byte("21.5"), 1, false)
		b.Publish("alerts/fire", []byte{0xff, 0xfe}, 0, false)
		b.Publish("alerts/fire/floor1", []byte("deeper than alerts/+"), 1, false)
		b.Publish("other/x", []byte("not subscribed"), 1, false)
		b.Publish("sensors/hall/temp", []byte("19"), 1, false)

		want := []string{
			short("mqtt/sensors/kitchen/temp", "", "21.5"),
			short("mqtt/alerts/fire", "base64", "//4="),
			short("mqtt/sensors/hall/temp", "", "19"),
		}
		var ids []string
		for _, w := range want {
			e := envelope(t, sse)
			if got := short(e.Topic, e.Event, e.Data); got != w {
				t.Errorf("SSE got %q, want %q", got, w)
			}
			ids = append(ids, e.ID)
		}
		for i, w := range want {
			f := ws.NextOf("message")
			if got := short(f.Topic, f.Event, f.Data); got != w || f.ID != ids[i] {
				t.Errorf("WebSocket got %q id %s, want %q id %s", got, f.ID, w, ids[i])
			}
		}
		poll := testserver.Poll(t, ep, "earliest", "mqtt/#")
		if len(poll.Messages) != len(want) {
			t.Fatalf("long-poll got %+v", poll.Messages)
		}
		for i, m := range poll.Messages {
			if got := short(m.Topic, m.Event, m.Data); got != want[i] || m.ID != ids[i] {
				t.Errorf("long-poll got %q id %s, want %q id %s", got, m.ID, want[i], ids[i])
			}
		}
		// Plain SSE on one exact topic, from history.
		plain := testserver.Subscribe(t, nil, ep+"?topic=mqtt/sensors/hall/temp&last_id=earliest", nil)
		if ev := plain.Next(); ev.ID != ids[2] || ev.Data != "19" || ev.Event != "" {
			t.Errorf("plain SSE got %+v", ev)
		}
	})
}

// A retained MQTT message is the topic's current value: the link gets it
// when it subscribes and publishes it into history flagged "retained", so
// a dashboard that opens with last_id=earliest shows it at once, then
// live updates.
func TestMQTTRetainedValueForNewSubscribers(t *testing.T) {
	eachBroker(t, func(t *testing.T, newBroker newBrokerFunc) {
		b := newBroker(mqtttest.Options{})
		b.Publish("sensors/kitchen/temp", []byte("21.5"), 1, true)
		_, ep, logs := start(t, mqttBlock(b.URL(), "it-retained", "subscribe sensors/# 1", "prefix mqtt/"))
		logs.wait(t, "mqtt connected", 1)

		// Long-poll from the start of history until the retained value is
		// in (each poll waits at most poll_timeout for it).
		deadline := time.Now().Add(testserver.Wait)
		var got []testserver.Envelope
		for len(got) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("retained value not in history")
			}
			got = testserver.Poll(t, ep, "earliest", "mqtt/#").Messages
		}
		if s := short(got[0].Topic, got[0].Event, got[0].Data); s != short("mqtt/sensors/kitchen/temp", "retained", "21.5") {
			t.Fatalf("history starts with %q", s)
		}

		dash := testserver.Subscribe(t, nil, ep+"?topic=mqtt/%23&format=json&last_id=earliest", nil)
		if e := envelope(t, dash); e.Event != "retained" || e.Data != "21.5" {
			t.Fatalf("new subscriber got %+v first", e)
		}
		b.Publish("sensors/kitchen/temp", []byte("22"), 1, true)
		if e := envelope(t, dash); e.Event != "" || e.Data != "22" {
			t.Fatalf("live update %+v", e)
		}
	})
}

// Caddy starts and serves while the broker is down; the link keeps
// trying and connects once the broker is up.
func TestMQTTBrokerDownAtStart(t *testing.T) {
	eachBroker(t, func(t *testing.T, newBroker newBrokerFunc) {
		b := newBroker(mqtttest.Options{Down: true})
		_, ep, logs := start(t, mqttBlock(b.URL(), "it-down", "subscribe sensors/# 1", "prefix mqtt/"))
		e := logs.wait(t, "mqtt connect failed; retrying", 1)
		if e["level"] != "warn" || !strings.Contains(fmt.Sprint(e["error"]), "connection refused") {
			t.Errorf("log entry %v", e)
		}

		sse := testserver.Subscribe(t, nil, ep+"?topic=mqtt/%23&format=json", nil)
		testserver.Publish(t, ep, url.Values{"topic": {"mqtt/direct"}, "data": {"HTTP works meanwhile"}})
		if e := envelope(t, sse); e.Topic != "mqtt/direct" {
			t.Fatalf("got %+v", e)
		}

		b.Up()
		logs.wait(t, "mqtt connected", 1)
		b.Publish("sensors/a", []byte("up"), 1, false)
		if e := envelope(t, sse); e.Topic != "mqtt/sensors/a" || e.Data != "up" {
			t.Fatalf("got %+v", e)
		}
	})
}

// The broker goes away mid-stream (mosquitto: stopped and restarted from
// its persistence file, twice) and QoS 1 messages are published while
// Caddy is cut off: the link reconnects by itself and the messages reach
// the subscriber, which stayed connected to Caddy all along.
func TestMQTTBrokerRestartMidStream(t *testing.T) {
	eachBroker(t, func(t *testing.T, newBroker newBrokerFunc) {
		b := newBroker(mqtttest.Options{})
		_, ep, logs := start(t, mqttBlock(b.URL(), "it-restart", "subscribe q/# 1", "prefix mqtt/"))
		logs.wait(t, "mqtt connected", 1)
		sse := testserver.Subscribe(t, nil, ep+"?topic=mqtt/%23&format=json", nil)
		b.Publish("q/1", []byte("before"), 1, false)
		if e := envelope(t, sse); e.Data != "before" {
			t.Fatalf("got %+v", e)
		}

		b.Down()
		logs.wait(t, "mqtt connection lost; reconnecting", 1)
		for i := range 3 {
			b.Publish("q/1", []byte(fmt.Sprintf("during %d", i)), 1, false)
		}
		b.Up()
		logs.wait(t, "mqtt connected", 2)

		// QoS 1 is at least once: "before" may come again if its PUBACK
		// did not reach the broker before the cut. mosquitto keeps the
		// order; the embedded broker resends queued messages in any order.
		var got []string
		for len(got) < 3 {
			if e := envelope(t, sse); e.Data != "before" {
				got = append(got, e.Data)
			}
		}
		want := []string{"during 0", "during 1", "during 2"}
		if b.Kind == "embedded" {
			for _, w := range want {
				if !strings.Contains(strings.Join(got, ","), w) {
					t.Fatalf("got %q, want each of %q", got, want)
				}
			}
		} else if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		b.Publish("q/1", []byte("after"), 1, false)
		e := envelope(t, sse)
		for e.Data == "before" || strings.HasPrefix(e.Data, "during") {
			e = envelope(t, sse)
		}
		if e.Data != "after" {
			t.Fatalf("got %+v", e)
		}
	})
}

// Wrong credentials: Caddy runs, and the log says clearly what to check,
// with the username and never the password; the right password (from the
// environment, picked up by a reload) connects.
func TestMQTTWrongCredentials(t *testing.T) {
	eachBroker(t, func(t *testing.T, newBroker newBrokerFunc) {
		b := newBroker(mqtttest.Options{Users: map[string]string{"caddy": "right-password"}})
		t.Setenv("MQTT_TEST_PASS", "wrong-secret-password")
		block := mqttBlock(b.URL(), "it-creds", "username caddy", "password {env.MQTT_TEST_PASS}", "subscribe a 1")
		s, _, logs := start(t, block)
		e := logs.wait(t, "mqtt broker refused the login: check username and password", 1)
		if e["level"] != "error" || e["username"] != "caddy" {
			t.Errorf("log entry %v", e)
		}
		t.Setenv("MQTT_TEST_PASS", "right-password")
		s.Load(withMQTT(block))
		logs.wait(t, "mqtt connected", 1)
		raw, err := os.ReadFile(logs.path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "password\":") || strings.Contains(string(raw), "-password") {
			t.Errorf("the log shows a password:\n%s", raw)
		}
	})
}

// A reload that keeps the mqtt block keeps the live connection; one that
// changes it, with the same client_id, starts the new link and closes the
// old one without the two fighting over the session; no message is lost
// or doubled on the way, and subscribers stay connected throughout.
func TestMQTTReload(t *testing.T) {
	eachBroker(t, func(t *testing.T, newBroker newBrokerFunc) {
		b := newBroker(mqtttest.Options{})
		block := mqttBlock(b.URL(), "it-reload", "subscribe a/# 1", "prefix mqtt/")
		s, ep, logs := start(t, block)
		logs.wait(t, "mqtt connected", 1)
		sse := testserver.Subscribe(t, nil, ep+"?topic=mqtt/%23&format=json", nil)

		// Same mqtt block, other settings changed: the link stays.
		s.Load(strings.Replace(withMQTT(block), "heartbeat 1s", "heartbeat 2s", 1))
		b.Publish("a/1", []byte("after the first reload"), 1, false)
		if e := envelope(t, sse); e.Data != "after the first reload" {
			t.Fatalf("got %+v", e)
		}
		if n := logs.count(t, "mqtt connected"); n != 1 {
			t.Errorf("%d connections after a reload that kept the mqtt block, want 1", n)
		}

		// Changed mqtt block, same client_id: a new link takes over.
		s.Load(withMQTT(mqttBlock(b.URL(), "it-reload", "subscribe a/# 1", "subscribe b/# 1", "prefix mqtt/")))
		logs.wait(t, "mqtt connected", 2)
		logs.wait(t, "mqtt link closed", 1)
		b.Publish("b/1", []byte("new filter"), 1, false)
		b.Publish("a/2", []byte("once"), 1, false)
		b.Publish("a/3", []byte("sentinel"), 1, false)
		for _, want := range []string{"new filter", "once", "sentinel"} {
			if e := envelope(t, sse); e.Data != want {
				t.Fatalf("got %+v, want %q", e, want)
			}
		}
		if n := logs.count(t, "mqtt connection lost; reconnecting"); n != 0 {
			t.Errorf("links fought over the session: %d reconnects", n)
		}

		// Stopping Caddy disconnects from the broker.
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		logs.wait(t, "mqtt disconnected", 1)
	})
}

// `caddy validate` (and `caddy adapt --validate`) provisions the config:
// that must not connect, or it would take the session from the running
// instance with the same client_id.
func TestMQTTValidateOpensNoConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	raw, err := testserver.Adapt(strings.ReplaceAll(withMQTT(mqttBlock("tcp://"+ln.Addr().String(), "it-validate", "subscribe a 1")), "{PORT}", "0"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
	// Validate has returned, so any connection made in Provision is in the
	// listener's backlog; the short wait also catches one made in the
	// background.
	select {
	case <-accepted:
		t.Fatal("validating the config connected to the broker")
	case <-time.After(500 * time.Millisecond):
	}
}

// Mistakes in the mqtt block fail `caddy adapt` with the file and line.
func TestMQTTConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		block, want string
	}{
		{"mqtt udp://127.0.0.1 {\n subscribe a 1\n}", "unsupported scheme \"udp\""},
		{"mqtt tcp://user:secret@127.0.0.1 {\n subscribe a 1\n}", "holds credentials"},
		{"mqtt tcp://127.0.0.1/path {\n subscribe a 1\n}", "no path or query"},
		{"mqtt {\n subscribe a 1\n}", "wrong argument count"},
		{"mqtt tcp://127.0.0.1 {\n subscribe a 3\n}", "QoS 3: use 0, 1 or 2"},
		{"mqtt tcp://127.0.0.1 {\n subscribe a one\n}", "QoS \"one\" is not a number"},
		{"mqtt tcp://127.0.0.1 {\n subscribe a/#/b 1\n}", "# must be the last level"},
		{"mqtt tcp://127.0.0.1 {\n subscribe\n}", "wrong argument count"},
		{"mqtt tcp://127.0.0.1 {\n client_id\n subscribe a\n}", "wrong argument count"},
		{"mqtt tcp://127.0.0.1 {\n prefix $pubsub/\n subscribe a\n}", "topics starting with $ are the hub's own"},
		{"mqtt tcp://127.0.0.1 {\n subscribe a\n tls_insecure_skip_verify\n}", "tls_insecure_skip_verify is not offered"},
		{"mqtt tcp://127.0.0.1 {\n subscribe a\n keepalive 5s\n}", "unknown mqtt sub-directive \"keepalive\""},
		{"mqtt tcp://127.0.0.1 {\n client_id x\n}", "no subscribe"},
		{"mqtt tcp://127.0.0.1 {\n password p\n subscribe a\n}", "password without username"},
		{"mqtt tcp://127.0.0.1 {\n tls_cert only-cert.pem\n subscribe a\n}", "wrong argument count"},
		{"mqtt tcp://127.0.0.1 {\n client_id a\n client_id b\n subscribe a\n}", "client_id given twice"},
		{"mqtt tcp://127.0.0.1 {\n subscribe a\n lease 1s\n}", "lease 1s: use 2s to 5m0s"},
		{"mqtt tcp://127.0.0.1 {\n subscribe a\n lease 1h\n}", "lease 1h0m0s: use 2s to 5m0s"},
		{"mqtt tcp://127.0.0.1 {\n subscribe a\n lease soon\n}", "lease:"},
	} {
		_, err := testserver.Adapt(withMQTT(tc.block))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("%q: error %v, want %q with Caddyfile:LINE", tc.block, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: error shows the password: %v", tc.block, err)
		}
	}

	// The line is the offending one.
	_, err := testserver.Adapt(withMQTT("mqtt tcp://127.0.0.1 {\n\t\t\tsubscribe a 1\n\t\t\tsubscribe b 7\n\t\t}"))
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:") {
		t.Fatalf("error %v", err)
	}
	cfgLine := strings.Count(testserver.GlobalOptions+site[:strings.Index(site, "{MQTT}")], "\n") + 3
	if !strings.Contains(err.Error(), fmt.Sprintf("Caddyfile:%d", cfgLine)) {
		t.Errorf("error %v, want line %d", err, cfgLine)
	}

	// Valid blocks adapt: every sub-directive, placeholders in the URL.
	for _, block := range []string{
		"mqtt tcp://127.0.0.1 {\n subscribe a\n}",
		"mqtt {env.MQTT_URL} {\n subscribe a\n}",
		"mqtt ssl://broker.example.com {\n client_id edge-1\n username u\n password {env.P}\n tls_ca ca.pem\n tls_cert c.pem k.pem\n tls_server_name mqtt.example.com\n subscribe a/+/b 0\n subscribe c/# 2\n prefix plant/\n lease 30s\n}",
		"mqtt ws://127.0.0.1:8080/mqtt {\n subscribe a\n}\n\t\tmqtt wss://127.0.0.1/mqtt {\n client_id second\n subscribe b\n}",
	} {
		if _, err := testserver.Adapt(strings.ReplaceAll(withMQTT(block), "{PORT}", "8080")); err != nil {
			t.Errorf("%q: %v", block, err)
		}
	}
}

// Two different mqtt blocks with one client_id on one broker would take
// the session from each other forever: the config is refused. The same
// block on two routes of one hub shares one link.
func TestMQTTOneClientIDPerConfig(t *testing.T) {
	validate := func(site string) error {
		raw, err := testserver.Adapt(strings.ReplaceAll(site, "{PORT}", "8080"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg caddy.Config
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		return caddy.Validate(&cfg)
	}
	two := func(a, b string) string {
		return `
http://127.0.0.1:{PORT} {
	pubsub /a* {
		` + a + `
	}
	pubsub /b* {
		hub other
		` + b + `
	}
}
`
	}
	same := mqttBlock("tcp://127.0.0.1:1883", "twin", "subscribe a 1")
	if err := validate(two(same, mqttBlock("tcp://127.0.0.1:1883", "twin", "subscribe b 1"))); err == nil ||
		!strings.Contains(err.Error(), "give each its own client_id") {
		t.Errorf("one client_id twice: %v", err)
	}
	if err := validate(two(same, mqttBlock("tcp://127.0.0.1:1883", "other-twin", "subscribe b 1"))); err != nil {
		t.Errorf("two client IDs: %v", err)
	}
	shared := strings.Replace(two(same, same), "hub other", "", 1)
	if err := validate(shared); err != nil {
		t.Errorf("one block on two routes of one hub: %v", err)
	}
}

// An mqtt block in a hub of the global pubsub option feeds every endpoint
// of the hub, with the hub's max_message_size; a reload that keeps the
// block keeps the connection, and stopping Caddy closes it.
func TestMQTTOnGlobalHub(t *testing.T) {
	eachBroker(t, func(t *testing.T, newBroker newBrokerFunc) {
		b := newBroker(mqtttest.Options{})
		logs := &caddyLog{path: filepath.Join(t.TempDir(), "pubsub.log")}
		globals := fmt.Sprintf(`	log pubsub {
		output file %s
		format json
		level INFO
		include pubsub
	}
	pubsub {
		hub plant {
			max_message_size 8
			%s
		}
	}`, logs.path, strings.ReplaceAll(mqttBlock(b.URL(), "it-global", "subscribe a/# 1", "prefix mqtt/"), "\n", "\n\t"))
		site := `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub plant
		heartbeat 1s
	}
}
`
		s := testserver.StartWith(t, globals, site)
		ep := s.Base + "/events"
		logs.wait(t, "mqtt connected", 1)
		sse := testserver.Subscribe(t, nil, ep+"?topic=mqtt/%23&format=json", nil)

		b.Publish("a/1", []byte("123456789"), 1, false)
		b.Publish("a/2", []byte("fits"), 1, false)
		if e := envelope(t, sse); e.Topic != "mqtt/a/2" || e.Data != "fits" {
			t.Fatalf("got %+v, want only the message within max_message_size 8", e)
		}

		s.Load(strings.Replace(site, "heartbeat 1s", "heartbeat 2s", 1))
		b.Publish("a/3", []byte("reloaded"), 1, false)
		if e := envelope(t, sse); e.Data != "reloaded" {
			t.Fatalf("after the reload got %+v", e)
		}
		if n := logs.count(t, "mqtt connected"); n != 1 {
			t.Errorf("%d connections after a reload that kept the global hub, want 1", n)
		}

		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		logs.wait(t, "mqtt disconnected", 1)
	})
}
