package integration_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A config reload keeps subscribers connected: they get messages published
// after the reload, and history from before it still resumes.
func TestReloadKeepsSubscribersAndHistory(t *testing.T) {
	s := testserver.Start(t, basicSite)
	ep := s.Base + "/events"
	sub := testserver.Subscribe(t, nil, ep+"?topic=k", nil)
	before := testserver.Publish(t, ep, url.Values{"topic": {"k"}, "data": {"before"}})
	if ev := sub.Next(); ev.ID != before {
		t.Fatalf("before reload got %+v", ev)
	}

	// Another heartbeat, history and an extra route: a real config change.
	s.Load(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 2s
		history 50 30m
	}
	respond /health "ok"
}
`)
	if code, body, _ := testserver.Request(t, "GET", s.Base+"/health", "", "", nil); code != 200 || body != "ok" {
		t.Fatalf("new config not live: %d %q", code, body)
	}
	after := testserver.Publish(t, ep, url.Values{"topic": {"k"}, "data": {"after"}})
	if ev := sub.Next(); ev.ID != after || ev.Data != "after" {
		t.Fatalf("subscriber from before the reload got %+v, want %s", ev, after)
	}
	resumed := testserver.Subscribe(t, nil, ep+"?topic=k&last_id=earliest", nil)
	for _, id := range []string{before, after} {
		if ev := resumed.Next(); ev.ID != id {
			t.Fatalf("history across reload: got %+v, want %s", ev, id)
		}
	}
}

// Two sites naming one hub share it; one config defining one hub two ways
// is refused.
func TestHubsAreSharedByName(t *testing.T) {
	port2 := testserver.FreePort(t)
	s := testserver.Start(t, fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub team
	}
}
http://127.0.0.1:%d {
	pubsub /feed* {
		hub team
	}
	pubsub /other* {
		hub private
	}
}
`, port2))
	second := fmt.Sprintf("http://127.0.0.1:%d", port2)
	shared := testserver.Subscribe(t, nil, second+"/feed?topic=t", nil)
	private := testserver.Subscribe(t, nil, second+"/other?topic=t", nil)
	id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"t"}, "data": {"x"}})
	if ev := shared.Next(); ev.ID != id {
		t.Fatalf("shared hub got %+v", ev)
	}
	own := testserver.Publish(t, second+"/other", url.Values{"topic": {"t"}, "data": {"own"}})
	if ev := private.Next(); ev.ID != own {
		t.Fatalf("a separate hub leaked %+v, want only its own %s", ev, own)
	}

	cfg, err := testserver.Adapt(`
http://127.0.0.1:1 {
	pubsub /a* {
		hub team
		history 10
	}
	pubsub /b* {
		hub team
		history 20
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(mustConfig(t, cfg)); err == nil || !strings.Contains(err.Error(), `hub "team" is defined twice`) {
		t.Fatalf("conflicting hub definitions: got %v", err)
	}
}

// A subscriber that goes away is removed at once: its goroutines end.
func TestDisconnectedSubscribersAreReleased(t *testing.T) {
	s := testserver.Start(t, basicSite)
	ep := s.Base + "/events?topic=leak"
	warm := testserver.Subscribe(t, nil, ep, nil)
	warm.Close()
	baseline := runtime.NumGoroutine()

	var subs []*testserver.SSEStream
	for range 50 {
		subs = append(subs, testserver.Subscribe(t, nil, ep, nil))
	}
	testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"leak"}, "data": {"x"}})
	for _, sub := range subs {
		sub.Next()
	}
	if n := runtime.NumGoroutine(); n < baseline+50 {
		t.Fatalf("expected goroutines for 50 streams: %d -> %d", baseline, n)
	}
	for _, sub := range subs {
		sub.Close()
	}
	testserver.Eventually(t, "goroutines back to baseline", func() bool {
		return runtime.NumGoroutine() <= baseline+2
	})
}

// A subscriber that stops reading is disconnected with a reason once its
// queue overflows, and never holds back the others.
func TestSlowConsumerIsDroppedOthersUnaffected(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		queue 8
		max_message_size 256KiB
	}
}
`)
	path := "/events?topic=firehose"
	// The slow client sends its request and then reads nothing: socket
	// buffers fill, the server's writer blocks, the queue overflows.
	slow, err := net.Dial("tcp", s.Base[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n", path)
	fast := testserver.Subscribe(t, nil, s.Base+path, nil)
	// Wait until the slow client's stream is up: it gets the first message.
	payload := strings.Repeat("x", 64<<10)
	publishAndWait := func() {
		id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"firehose"}, "data": {payload}})
		if ev := fast.Next(); ev.ID != id {
			t.Fatalf("fast subscriber got %s, want %s", ev.ID, id)
		}
	}
	for range 400 {
		publishAndWait()
	}
	// Everything the slow client will ever get, then the reason.
	slow.SetReadDeadline(time.Now().Add(testserver.Wait))
	got, _ := io.ReadAll(io.LimitReader(readUntil(slow, "closed: slow consumer"), 64<<20))
	if !strings.Contains(string(got), ": closed: slow consumer") {
		t.Fatalf("slow subscriber's stream ends with %q, want the slow consumer reason", tail(got))
	}
	if n := strings.Count(string(got), "\nid: "); n >= 400 {
		t.Fatalf("slow subscriber got all %d messages: it was never slow", n)
	}
}

// readUntil returns a reader that stops after marker has been read.
func readUntil(r io.Reader, marker string) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		var seen []byte
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Read(buf)
			pw.Write(buf[:n])
			seen = append(seen, buf[:n]...)
			if strings.Contains(string(seen), marker) || err != nil {
				pw.Close()
				return
			}
			// Keep enough to find a marker split across reads.
			seen = seen[max(0, len(seen)-len(marker)):]
		}
	}()
	return pr
}

func tail(b []byte) string {
	if len(b) > 200 {
		b = b[len(b)-200:]
	}
	return string(b)
}

// Every endpoint of a hub reads all of it, history included, so endpoints
// of one hub that decide differently who may subscribe are refused at
// load, naming the hub and both endpoints. Publish-side differences (a
// keyed publish endpoint beside an open one) stay allowed.
func TestEndpointsOfAHubAuthoriseSubscribersAlike(t *testing.T) {
	t.Setenv("PUBSUB_TEST_SECRET", strings.Repeat("s", 32))
	refused := []struct{ name, site string }{
		{"open beside jwt", `
http://127.0.0.1:{PORT} {
	pubsub /public* {
		hub h
	}
	pubsub /private* {
		hub h
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
		}
	}
}
`},
		{"two bare routes share the hub default", `
http://127.0.0.1:{PORT} {
	pubsub /public* {
	}
	pubsub /private* {
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
			cookie token
		}
	}
}
`},
		{"different jwt settings", `
http://127.0.0.1:{PORT} {
	pubsub /public* {
		hub h
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
			audience a
		}
	}
	pubsub /private* {
		hub h
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
		}
	}
}
`},
		{"keys that grant the presence topics", `
http://127.0.0.1:{PORT} {
	pubsub /public* {
		hub h
		presence
	}
	pubsub /private* {
		hub h
		presence
		publish_key k
	}
}
`},
	}
	s := testserver.Start(t, basicSite)
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			var endpoints []string // where the site's pubsub directives are
			for i, line := range strings.Split(tc.site, "\n") {
				if strings.HasPrefix(line, "\tpubsub ") {
					endpoints = append(endpoints, fmt.Sprintf("Caddyfile:%d", strings.Count(testserver.GlobalOptions, "\n")+i+1))
				}
			}
			err := s.TryLoad(tc.site)
			if err == nil || !strings.Contains(err.Error(), "decide differently who may subscribe") ||
				!strings.Contains(err.Error(), "different hub names") ||
				!strings.Contains(err.Error(), endpoints[0]) || !strings.Contains(err.Error(), endpoints[1]) {
				t.Fatalf("loaded, or refused without naming both endpoints %q: %v", endpoints, err)
			}
		})
	}
	s.Load(`
http://127.0.0.1:{PORT} {
	pubsub /publish* {
		hub h
		publish_key k
	}
	pubsub /events* {
		hub h
	}
}
`)
	sub := testserver.Subscribe(t, nil, s.Base+"/events?topic=t", nil)
	code, body, _ := testserver.Request(t, "POST", s.Base+"/publish", "application/x-www-form-urlencoded", "topic=t&data=keyed", http.Header{"Authorization": {"Bearer k"}})
	if code != 200 {
		t.Fatalf("keyed publish beside an open subscribe endpoint: %d %q", code, body)
	}
	if ev := sub.Next(); ev.Data != "keyed" {
		t.Fatalf("subscriber got %+v", ev)
	}
}

// A reload that Caddy refuses changes nothing that runs: the options of
// the refused config (here a shorter durable history, a subscriber cap)
// never reach the live hub.
func TestRefusedReloadChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		broker bolt `+path+`
		history 1000
	}
}
`)
	ep := s.Base + "/events"
	for i := range 50 {
		testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {fmt.Sprint(i)}})
	}
	err := s.TryLoad(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		broker bolt ` + path + `
		history 10
		limits {
			subscribers 1
		}
	}
	pubsub /other* {
		hub default
		broker bolt ` + path + `
		history 20
	}
}
`)
	if err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatalf("conflicting config loaded: %v", err)
	}
	first := testserver.Subscribe(t, nil, ep+"?topic=t&last_id=earliest", nil)
	second := testserver.Subscribe(t, nil, ep+"?topic=t&last_id=earliest", nil)
	for _, sub := range []*testserver.SSEStream{first, second} {
		for i := range 50 {
			if ev := sub.Next(); ev.Data != fmt.Sprint(i) {
				t.Fatalf("history after the refused reload: message %d is %+v", i, ev)
			}
		}
	}
}
