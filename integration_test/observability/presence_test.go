package observability_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// presenceEvent is a presence message as a watcher with ?format=json
// reads it: the envelope's topic, and the event in its data.
type presenceEvent struct {
	Topic     string
	ID        string   `json:"id"`
	Transport string   `json:"transport"`
	Topics    []string `json:"topics"`
}

// nextPresence reads the next presence event from a ?format=json watcher.
// It has no message ID: no SSE id line, none in the envelope.
func nextPresence(t *testing.T, w *testserver.SSEStream) presenceEvent {
	t.Helper()
	sse := w.Next()
	var env testserver.Envelope
	if err := json.Unmarshal([]byte(sse.Data), &env); err != nil {
		t.Fatal(err)
	}
	if sse.ID != "" || env.ID != "" || strings.HasPrefix(sse.Data, `{"id"`) {
		t.Fatalf("presence event with a message ID: id line %q, data %s", sse.ID, sse.Data)
	}
	ev := presenceEvent{Topic: env.Topic}
	if err := json.Unmarshal([]byte(env.Data), &ev); err != nil {
		t.Fatalf("presence data %q: %v", env.Data, err)
	}
	return ev
}

// With presence on, an authorised watcher of $pubsub/# sees SSE and
// WebSocket subscriptions begin, change and end, with a subscription ID
// and no address or token; long-polls are not announced; others may not
// watch, and wildcards never see the events.
func TestPresenceEvents(t *testing.T) {
	s := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		presence
		publish_key presence-test-key
		heartbeat 30s
		poll_timeout 1s
	}
}
`)
	ep := s.Base + "/events"
	key := http.Header{"Authorization": {"Bearer presence-test-key"}}
	sseHeader := http.Header{"Accept": {"text/event-stream"}}

	// Without the key: refused on every transport.
	if code, body := get(t, ep+"?topic=$pubsub/%23", sseHeader); code != http.StatusForbidden {
		t.Fatalf("SSE watcher without the key: %d %s", code, body)
	}
	if code, body := get(t, ep+"?topic=$pubsub/subscribe", nil); code != http.StatusForbidden {
		t.Fatalf("long-poll watcher without the key: %d %s", code, body)
	}
	if code, body := testserver.DialWSStatus(t, ep+"?topic=$pubsub/%23", nil); code != http.StatusForbidden {
		t.Fatalf("WebSocket watcher without the key: %d %s", code, body)
	}
	sneaky := testserver.DialWS(t, ep, nil)
	if answer, _ := sneaky.Request(map[string]any{"type": "subscribe", "topics": []string{"$pubsub/#"}, "ref": 1}); answer.Type != "error" {
		t.Fatalf("subscribe frame to $pubsub/# without the key: %s", answer.Raw)
	}
	sneaky.Close()

	watcher := testserver.Subscribe(t, nil, ep+"?topic=$pubsub/%23&format=json", key)
	expect := func(what, topic, transport, id string, topics ...string) string {
		t.Helper()
		ev := nextPresence(t, watcher)
		if ev.Topic != topic || ev.Transport != transport || !slices.Equal(ev.Topics, topics) || ev.ID == "" || (id != "" && ev.ID != id) {
			t.Fatalf("%s: got %+v, want %s %s %q (id %q)", what, ev, topic, transport, topics, id)
		}
		return ev.ID
	}
	everything := testserver.Subscribe(t, nil, ep+"?topic=%23", nil)
	expect("# subscription", "$pubsub/subscribe", "sse", "", "#")

	sse := testserver.Subscribe(t, nil, ep+"?topic=chat/a", nil)
	sseID := expect("SSE subscription", "$pubsub/subscribe", "sse", "", "chat/a")

	ws := testserver.DialWS(t, ep, nil)
	for i, frame := range []map[string]any{
		{"type": "subscribe", "topics": []string{"chat/b"}},
		{"type": "subscribe", "topics": []string{"chat/c"}},
		{"type": "unsubscribe", "topics": []string{"chat/b"}},
	} {
		frame["ref"] = i
		if answer, _ := ws.Request(frame); answer.Type != "ack" {
			t.Fatalf("frame %v: %s", frame, answer.Raw)
		}
	}
	wsID := expect("WebSocket subscribe frame", "$pubsub/subscribe", "ws", "", "chat/b")
	expect("WebSocket adds a topic", "$pubsub/subscribe", "ws", wsID, "chat/c")
	expect("WebSocket drops a topic", "$pubsub/unsubscribe", "ws", wsID, "chat/b")
	if wsID == sseID {
		t.Fatalf("two subscriptions share the ID %s", wsID)
	}

	// A long-poll (answered empty after poll_timeout) is not announced:
	// the next event is the SSE stream leaving.
	if a := testserver.StartPoll(ep, "", "chat/a").Wait(t); len(a.Messages) != 0 {
		t.Fatalf("long-poll: %+v", a)
	}
	sse.Close()
	expect("SSE stream closed", "$pubsub/unsubscribe", "sse", sseID, "chat/a")
	ws.Close()
	expect("WebSocket closed", "$pubsub/unsubscribe", "ws", wsID, "chat/c")

	// "#" saw none of it: its first event is a message published now.
	code, body, _ := testserver.Request(t, http.MethodPost, ep, "application/x-www-form-urlencoded",
		url.Values{"topic": {"chat/x"}, "data": {"marker"}}.Encode(), key)
	if code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	if ev := everything.Next(); ev.Data != "marker" {
		t.Fatalf("# subscriber got %+v before the marker", ev)
	}
}

// `presence` takes no argument; a bare one turns presence on in the JSON
// config.
func TestPresenceDirective(t *testing.T) {
	cfg, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\tpresence\n\t}\n}\n")
	if err != nil || !strings.Contains(string(cfg), `"presence":true`) {
		t.Fatalf("bare presence: %v\n%s", err, cfg)
	}
	_, err = testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\tpresence on\n\t}\n}\n")
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:12") {
		t.Fatalf("presence with an argument: %v", err)
	}
}

// Presence churn cannot push real messages out of history: with history
// 100, one WebSocket's 200 subscribe and unsubscribe frames leave the 100
// messages published before them retained, and a resume from before them
// gets all 100 and no gap.
func TestPresenceChurnKeepsHistory(t *testing.T) {
	s := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		presence
		history 100
		heartbeat 30s
	}
}
`)
	ep := s.Base + "/events"
	before := testserver.Publish(t, ep, url.Values{"topic": {"real"}, "data": {"before"}})
	var want []string
	for i := range 100 {
		data := "m" + strconv.Itoa(i)
		testserver.Publish(t, ep, url.Values{"topic": {"real"}, "data": {data}})
		want = append(want, data)
	}

	watcher := testserver.Subscribe(t, nil, ep+"?topic=$pubsub/%23&format=json", nil)
	ws := testserver.DialWS(t, ep, nil)
	began := time.Now()
	for i := range 200 {
		kind := "subscribe"
		if i%2 == 1 {
			kind = "unsubscribe"
		}
		if answer, _ := ws.Request(map[string]any{"type": kind, "topics": []string{"churn"}, "ref": i}); answer.Type != "ack" {
			t.Fatalf("frame %d (%s): %s", i, kind, answer.Raw)
		}
	}
	// A subscription from another connection is announced after every
	// event of the churn that is announced at all: once the watcher sees
	// it, they are all out.
	barrier := testserver.Subscribe(t, nil, ep+"?topic=barrier", nil)
	churn := 0
	for ev := nextPresence(t, watcher); !slices.Equal(ev.Topics, []string{"barrier"}); ev = nextPresence(t, watcher) {
		churn++
	}
	barrier.Close()
	// The connection's budget: PresenceBurst subscriptions announced at
	// once, then PresenceRate a second, each with its end; the rest began
	// and ended unannounced.
	elapsed := time.Since(began)
	if most := 2 * (hub.PresenceBurst + 1 + int(elapsed.Seconds()*hub.PresenceRate)); churn < 2*hub.PresenceBurst || churn > most {
		t.Fatalf("200 frames in %s announced %d times, want %d to %d", elapsed, churn, 2*hub.PresenceBurst, most)
	}
	t.Logf("200 subscribe/unsubscribe frames in %s: %d presence events", elapsed, churn)

	resumed := testserver.Subscribe(t, nil, ep+"?topic=real", http.Header{"Last-Event-Id": {before}})
	for i, data := range want {
		if ev := resumed.Next(); ev.Event != "" || ev.Data != data {
			t.Fatalf("resume from before the 100 messages, event %d: %+v, want data %q", i, ev, data)
		}
	}
}

// A long-poll watcher gets a presence event while it waits, without an
// ID, and its cursor stays at the last message, so its next poll neither
// skips nor repeats one.
func TestPresenceLongPollWatcher(t *testing.T) {
	s := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		presence
		history 10
		poll_timeout 10s
	}
}
`)
	ep := s.Base + "/events"
	id := testserver.Publish(t, ep, url.Values{"topic": {"real"}, "data": {"m"}})
	poll := testserver.StartPoll(ep, id, "$pubsub/subscribe")
	testserver.Eventually(t, "long-poll waiting", func() bool {
		for _, h := range stats(t, s) {
			if h.Transports["poll"] == 1 {
				return true
			}
		}
		return false
	})
	testserver.Subscribe(t, nil, ep+"?topic=room", nil)
	a := poll.Wait(t)
	if len(a.Messages) != 1 || a.Messages[0].ID != "" || a.Messages[0].Topic != "$pubsub/subscribe" || a.LastID != id || a.Gap {
		t.Fatalf("long-poll answer %+v, want the presence event without an ID and last_id %s", a, id)
	}
}
