package limits_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A hub full of subscribers refuses the next one on every transport, over
// every endpoint naming it, with 503 until one leaves; the subscribers it
// holds keep receiving.
func TestSubscribersCapIsHubWide(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /a* {
		hub shared
		limits {
			subscribers 2
		}
	}
	pubsub /b* {
		hub shared
		limits {
			subscribers 2
		}
	}
}
`)
	a, b := s.Base+"/a", s.Base+"/b"
	sse := testserver.Subscribe(t, nil, a+query("x"), nil)
	ws := testserver.DialWS(t, b+query("x"), nil)

	const full = "too many subscribers (limit 2): try again later"
	expectRefused(t, a+query("x"), nil, http.StatusServiceUnavailable, full)
	expectRefused(t, b+query("x"), nil, http.StatusServiceUnavailable, full)

	id := testserver.Publish(t, a, url.Values{"topic": {"x"}, "data": {"still here"}})
	if ev := sse.Next(); ev.ID != id {
		t.Errorf("SSE subscriber got %+v, want %s", ev, id)
	}
	if f := ws.NextOf("message"); f.ID != id {
		t.Errorf("WebSocket subscriber got %s, want %s", f.Raw, id)
	}

	ws.Close()
	testserver.Eventually(t, "a slot is free once the WebSocket closed", func() bool { return admitted(t, a+query("x"), nil) })
	testserver.Subscribe(t, nil, b+query("x"), nil)
	expectRefused(t, a+query("x"), nil, http.StatusServiceUnavailable, full)
}

// per_ip counts each client address's subscribers: Caddy's client_ip, so
// behind a trusted proxy every forwarded client has its own quota, and an
// IPv6 client counts by its /64.
func TestPerIPCap(t *testing.T) {
	ep := startWith(t, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", `limits {
			per_ip 2
		}`)
	u := ep + query("x")
	const over = "too many connections from this address (limit 2): close another stream first"

	direct := testserver.Subscribe(t, nil, u, nil)
	testserver.DialWS(t, u, nil)
	expectRefused(t, u, nil, http.StatusTooManyRequests, over)

	client := forwardedFor("203.0.113.7")
	testserver.Subscribe(t, nil, u, client)
	testserver.Subscribe(t, nil, u, client)
	expectRefused(t, u, client, http.StatusTooManyRequests, over)

	testserver.Subscribe(t, nil, u, forwardedFor("2001:db8::1"))
	testserver.Subscribe(t, nil, u, forwardedFor("2001:db8::2"))
	expectRefused(t, u, forwardedFor("2001:db8::3"), http.StatusTooManyRequests, over)
	testserver.Subscribe(t, nil, u, forwardedFor("2001:db8:0:1::1"))

	direct.Close()
	testserver.Eventually(t, "the direct client's slot is free once its stream closed", func() bool { return admitted(t, u, nil) })
	testserver.Subscribe(t, nil, u, nil)
	expectRefused(t, u, nil, http.StatusTooManyRequests, over)
}

// Without per_ip, one address may hold many subscribers.
func TestPerIPOffByDefault(t *testing.T) {
	u := start(t, "") + query("x")
	for range 6 {
		testserver.Subscribe(t, nil, u, nil)
	}
	testserver.DialWS(t, u, nil)
	if !admitted(t, u, nil) {
		t.Error("a seventh subscriber from one address was refused")
	}
}

// A reload that lowers subscribers refuses new subscribers only: those
// already in stay connected and keep receiving.
func TestReloadLowersSubscribers(t *testing.T) {
	s := testserver.Start(t, site("limits {\n\t\t\tsubscribers 3\n\t\t}"))
	ep := s.Base + "/events"
	one := testserver.Subscribe(t, nil, ep+query("x"), nil)
	two := testserver.Subscribe(t, nil, ep+query("x"), nil)

	s.Load(site("limits {\n\t\t\tsubscribers 1\n\t\t}"))
	expectRefused(t, ep+query("x"), nil, http.StatusServiceUnavailable, "too many subscribers (limit 1): try again later")
	id := testserver.Publish(t, ep, url.Values{"topic": {"x"}, "data": {"after reload"}})
	for _, sub := range []*testserver.SSEStream{one, two} {
		if ev := sub.Next(); ev.ID != id {
			t.Errorf("subscriber from before the reload got %+v, want %s", ev, id)
		}
	}

	one.Close()
	two.Close()
	testserver.Eventually(t, "a slot is free once both streams closed", func() bool { return admitted(t, ep+query("x"), nil) })
}

// topics caps the topics of one subscription: a request's ?topic= list
// (400 before any stream opens), a WebSocket subscribe frame, and a
// WebSocket's topics over all its frames (error frames).
func TestTopicsLimit(t *testing.T) {
	ep := start(t, "limits {\n\t\t\ttopics 3\n\t\t}")
	expectRefused(t, ep+query("a", "b", "c", "d"), nil, http.StatusBadRequest, "too many topics in one request (at most 3)")
	testserver.Subscribe(t, nil, ep+query("a", "b", "c"), nil)

	ws := testserver.DialWS(t, ep, nil)
	if f, _ := ws.Request(map[string]any{"type": "subscribe", "topics": []string{"a", "b", "c", "d"}, "ref": 1}); f.Type != "error" || f.Reason != "too many topics (at most 3)" {
		t.Errorf("subscribe to 4 topics: got %s", f.Raw)
	}
	if f, _ := ws.Request(map[string]any{"type": "subscribe", "topics": []string{"a", "b"}, "ref": 2}); f.Type != "ack" {
		t.Fatalf("subscribe to 2 topics: got %s", f.Raw)
	}
	if f, _ := ws.Request(map[string]any{"type": "subscribe", "topics": []string{"c", "d"}, "ref": 3}); f.Type != "error" || f.Reason != "too many topics on one connection (at most 3)" {
		t.Errorf("subscribe to 2 more topics: got %s", f.Raw)
	}
	if f, _ := ws.Request(map[string]any{"type": "subscribe", "topics": []string{"c"}, "ref": 4}); f.Type != "ack" {
		t.Fatalf("subscribe to a third topic: got %s", f.Raw)
	}
	id := testserver.Publish(t, ep, url.Values{"topic": {"c"}, "data": {"third"}})
	if f := ws.NextOf("message"); f.ID != id {
		t.Errorf("got %s, want message %s", f.Raw, id)
	}
}

// By default a subscription names at most 32 topics.
func TestTopicsDefault(t *testing.T) {
	ep := start(t, "")
	topics := make([]string, 33)
	for i := range topics {
		topics[i] = fmt.Sprint("t", i)
	}
	expectRefused(t, ep+query(topics...), nil, http.StatusBadRequest, "too many topics in one request (at most 32)")
	if !admitted(t, ep+query(topics[:32]...), nil) {
		t.Error("a subscription to 32 topics was refused")
	}
}

// batch caps the messages of one publish, over HTTP and WebSocket.
func TestBatchLimit(t *testing.T) {
	ep := start(t, "limits {\n\t\t\tbatch 3\n\t\t}")
	if got, answer := publishJSON(t, ep, batch("x", 4)); got != http.StatusBadRequest || answer != "JSON array longer than 3 messages\n" {
		t.Errorf("batch of 4: got %d %q", got, answer)
	}
	publishBatch(t, ep, "x", 3)

	ws := testserver.DialWS(t, ep, nil)
	msgs := []map[string]string{{"topic": "x"}, {"topic": "x"}, {"topic": "x"}, {"topic": "x"}}
	if f, _ := ws.Request(map[string]any{"type": "publish", "messages": msgs, "ref": 1}); f.Type != "error" || f.Reason != "more than 3 messages" {
		t.Errorf("WebSocket batch of 4: got %s", f.Raw)
	}
	if f, _ := ws.Request(map[string]any{"type": "publish", "messages": msgs[:3], "ref": 2}); f.Type != "ack" || len(f.IDs) != 3 {
		t.Errorf("WebSocket batch of 3: got %s", f.Raw)
	}
}

// By default a publish carries at most 100 messages.
func TestBatchDefault(t *testing.T) {
	ep := start(t, "")
	if got, answer := publishJSON(t, ep, batch("x", 101)); got != http.StatusBadRequest || answer != "JSON array longer than 100 messages\n" {
		t.Errorf("batch of 101: got %d %q", got, answer)
	}
	publishBatch(t, ep, "x", 100)
}

// poll_batch caps the messages of one long-poll answer; its last_id lets
// the next poll go on, so a client pages through the backlog.
func TestPollBatch(t *testing.T) {
	ep := start(t, "limits {\n\t\t\tpoll_batch 5\n\t\t}")
	ids := publishBatch(t, ep, "x", 12)
	last := "earliest"
	for _, want := range [][]string{ids[:5], ids[5:10], ids[10:]} {
		a := testserver.Poll(t, ep, last, "x")
		var got []string
		for _, m := range a.Messages {
			got = append(got, m.ID)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") || a.LastID != want[len(want)-1] {
			t.Fatalf("poll from %s: got %v last_id %s, want %v", last, got, a.LastID, want)
		}
		last = a.LastID
	}
}

// By default a long-poll answer carries at most 100 messages.
func TestPollBatchDefault(t *testing.T) {
	ep := start(t, "")
	ids := publishBatch(t, ep, "x", 100)
	ids = append(ids, publishBatch(t, ep, "x", 20)...)
	a := testserver.Poll(t, ep, "earliest", "x")
	if len(a.Messages) != 100 || a.LastID != ids[99] {
		t.Errorf("got %d messages, last_id %s; want 100, %s", len(a.Messages), a.LastID, ids[99])
	}
}

// max_message_size bounds a publish body (413) and a WebSocket frame
// (close 1009); topics are bounded to 256 bytes and 16 levels (400).
func TestMessageSizeAndTopicBounds(t *testing.T) {
	ep := start(t, "max_message_size 1KiB")
	form := url.Values{"topic": {"x"}, "data": {strings.Repeat("d", 2048)}}.Encode()
	got, answer, _ := testserver.Request(t, http.MethodPost, ep, "application/x-www-form-urlencoded", form, nil)
	check(t, "publish of 2KiB", got, answer, http.StatusRequestEntityTooLarge, "body larger than max_message_size (1024 bytes)")

	ws := testserver.DialWS(t, ep, nil)
	ws.Send(map[string]string{"type": "publish", "topic": "x", "data": strings.Repeat("d", 2048)})
	_, err := ws.ExpectClose()
	var closed *websocket.CloseError
	if !errors.As(err, &closed) || closed.Code != websocket.CloseMessageTooBig {
		t.Errorf("WebSocket frame of 2KiB: got %v, want close 1009", err)
	}

	long := strings.Repeat("t", 257)
	got, answer, _ = testserver.Request(t, http.MethodPost, ep, "application/x-www-form-urlencoded", url.Values{"topic": {long}}.Encode(), nil)
	check(t, "publish to a 257-byte topic", got, answer, http.StatusBadRequest, "invalid topic: longer than 256 bytes")

	deep := levels(17)
	expectRefused(t, ep+query(deep), nil, http.StatusBadRequest, fmt.Sprintf("invalid topic: %q is deeper than 16 levels", deep))
	if !admitted(t, ep+query(levels(16)), nil) {
		t.Error("a 16-level filter was refused")
	}
}

// Mistakes in a limits block fail `caddy adapt` with the file and line.
func TestLimitsCaddyfileErrors(t *testing.T) {
	cases := []struct{ body, want string }{
		{"topics 0", `limits: topics "0": want a whole number from 1 to 1024`},
		{"topics 1025", `limits: topics "1025": want a whole number from 1 to 1024`},
		{"subscribers lots", `limits: subscribers "lots": want a whole number from 1 to 10000000`},
		{"subscribers 0", `limits: subscribers "0": want a whole number from 1 to 10000000`},
		{"per_ip -1", `limits: per_ip "-1": want a whole number from 0 to 10000000`},
		{"batch 10001", `limits: batch "10001": want a whole number from 1 to 10000`},
		{"poll_batch 0", `limits: poll_batch "0": want a whole number from 1 to 10000`},
		{"colour 3", `unknown limit "colour": use topics, subscribers, per_ip, batch, poll_batch, publish_wait, publish_rate or publish_burst`},
		{"publish_wait 5ms", `limits: publish_wait "5ms": want a duration from 10ms to 1m0s`},
		{"publish_wait soon", `limits: publish_wait "soon": want a duration from 10ms to 1m0s`},
		{"publish_rate 10", `limits: publish_rate "10": want messages a second or a minute, like 10/s or 30/m, up to 1000000/s`},
		{"publish_rate 0/s", `limits: publish_rate "0/s": want messages a second or a minute`},
		{"publish_burst 0", `limits: publish_burst "0": want a whole number from 1 to 1000000`},
		{"publish_rate 10/s 3", "wrong argument count"},
		{"topics", "wrong argument count"},
		{"topics 1 2", "wrong argument count"},
	}
	// The limit is on the fourth line after the global options.
	at := fmt.Sprintf("Caddyfile:%d", strings.Count(testserver.GlobalOptions, "\n")+4)
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			_, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\tlimits {\n\t\t\t" + c.body + "\n\t\t}\n\t}\n}\n")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), at) {
				t.Errorf("got %v, want %q at %s", err, c.want, at)
			}
		})
	}
	for body, want := range map[string]string{
		"limits {\n\t\t\ttopics 3\n\t\t\ttopics 4\n\t\t}": "limits: topics given twice",
		"limits {\n\t\t}\n\t\tlimits {\n\t\t}":            "limits: given twice",
		"limits 3 {\n\t\t}":                               "wrong argument count",
	} {
		_, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\t" + body + "\n\t}\n}\n")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("%q: got %v, want %q with file:line", body, err, want)
		}
	}
}

// Endpoints naming one hub must give it the same hub-wide limits.
func TestHubLimitsMustAgree(t *testing.T) {
	cfg, err := testserver.Adapt(fmt.Sprintf(`
http://127.0.0.1:%d {
	pubsub /a* {
		limits {
			subscribers 10
		}
	}
	pubsub /b* {
		limits {
			per_ip 3
		}
	}
}
`, testserver.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	err = caddy.Load(cfg, true)
	if err == nil {
		_ = caddy.Stop()
		t.Fatal("loaded a config whose endpoints give one hub different limits")
	}
	if !strings.Contains(err.Error(), `hub "default" is defined twice with different settings`) {
		t.Errorf("got %v", err)
	}
}

// A WebSocket publish frame is checked (type, right to publish, batch
// size) before its messages are decoded: a frame of millions of empty
// messages costs the server about its own size, not a decoded message
// each. (Caddy runs in this process: its allocations are the test's.)
func TestHugePublishFrameIsCheckedFirst(t *testing.T) {
	ep := start(t, "max_message_size 8MiB\n\t\tpublish_key k")
	const n = 1_000_000 // 3 MB; decoding each message cost ~280 bytes of garbage
	// A bound well above what reading and checking the frame costs (more
	// under the race detector), far below what decoding it did.
	const perByte = 20
	frame := []byte(`{"type":"publish","ref":1,"messages":[` + strings.Repeat(`{},`, n-1) + `{}]}`)
	for _, tc := range []struct {
		name   string
		header http.Header
		reason string
	}{
		{"not allowed to publish", nil, "missing or wrong publish key"},
		{"allowed, over the batch limit", http.Header{"Authorization": {"Bearer k"}}, "more than 100 messages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := testserver.DialWS(t, ep, &testserver.WSOptions{Header: tc.header})
			allocated, _ := testserver.Measure(t, 1, 1, func() {
				ws.SendRaw(websocket.TextMessage, frame)
				if f := ws.Next(); f.Type != "error" || f.Reason != tc.reason {
					t.Errorf("answer %s, want an error %q", f.Raw, tc.reason)
				}
			})
			t.Logf("one %d-byte frame: %d MiB allocated", len(frame), allocated>>20)
			if limit := uint64(perByte * len(frame)); allocated > limit {
				t.Errorf("answering one %d-byte frame allocated %d MiB, want at most %d MiB", len(frame), allocated>>20, limit>>20)
			}
		})
	}
	// An HTTP batch stops decoding at the first message over the limit.
	body := "[" + strings.Repeat(`{},`, n-1) + "{}]"
	allocated, _ := testserver.Measure(t, 1, 1, func() {
		code, answer, _ := testserver.Request(t, http.MethodPost, ep, "application/json", body, http.Header{"Authorization": {"Bearer k"}})
		if code != http.StatusBadRequest || answer != "JSON array longer than 100 messages\n" {
			t.Errorf("HTTP batch of %d: %d %q", n, code, answer)
		}
	})
	if limit := uint64(perByte * len(body)); allocated > limit {
		t.Errorf("answering one %d-byte batch allocated %d MiB, want at most %d MiB", len(body), allocated>>20, limit>>20)
	}
}
