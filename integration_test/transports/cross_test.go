package transports_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// One message published over WebSocket and one over HTTP reach a
// WebSocket, an SSE and a long-poll subscriber alike: same IDs, topics,
// event names and data.
func TestEveryTransportGetsEveryPublish(t *testing.T) {
	_, ep := start(t, site)

	// A first poll without last_id gets the hub's position to poll from.
	cursor := testserver.Poll(t, ep, "", "chat/#")
	if len(cursor.Messages) != 0 || cursor.LastID == "" {
		t.Fatalf("first poll: %+v, want no messages and a cursor", cursor)
	}
	sse := testserver.Subscribe(t, nil, ep+query("", "chat/#")+"&format=json", nil)
	ws := testserver.DialWS(t, ep+query("", "chat/#"), nil)
	publisher := testserver.DialWS(t, ep, nil)

	ack, _ := publisher.Request(map[string]any{"type": "publish", "ref": 1, "topic": "chat/a", "event": "reading", "data": map[string]float64{"temp": 21.5}})
	if ack.Type != "ack" || ack.ID == "" {
		t.Fatalf("WebSocket publish answered %s", ack.Raw)
	}
	fromWS := ack.ID
	fromHTTP := publish(t, ep, "chat/b", "line1\nline2")

	want := []testserver.Envelope{
		{ID: fromWS, Topic: "chat/a", Event: "reading", Data: `{"temp":21.5}`},
		{ID: fromHTTP, Topic: "chat/b", Data: "line1\nline2"},
	}
	same := func(via string, got testserver.Envelope, i int) {
		t.Helper()
		w := want[i]
		if got.ID != w.ID || got.Topic != w.Topic || got.Event != w.Event || got.Data != w.Data || got.Time.IsZero() {
			t.Errorf("%s message %d: got %+v, want %+v", via, i, got, w)
		}
	}
	for i := range want {
		f := ws.NextOf("message")
		same("WebSocket", testserver.Envelope{ID: f.ID, Topic: f.Topic, Event: f.Event, Data: f.Data, Time: f.Time}, i)

		ev := sse.Next()
		var env testserver.Envelope
		if err := json.Unmarshal([]byte(ev.Data), &env); err != nil {
			t.Fatalf("SSE data %q: %v", ev.Data, err)
		}
		same("SSE", env, i)
	}
	polled := testserver.Poll(t, ep, cursor.LastID, "chat/#")
	if len(polled.Messages) != len(want) || polled.Gap || polled.LastID != fromHTTP {
		t.Fatalf("poll: %+v, want both messages, last_id %s", polled, fromHTTP)
	}
	for i, m := range polled.Messages {
		same("long-poll", m, i)
	}
}

// A client reads on SSE, switches to WebSocket, then to long-poll and
// back, resuming each time from the last ID it saw: it gets every message
// once, in order, including those published while it switched.
func TestSwitchingTransportsLosesNothing(t *testing.T) {
	_, ep := start(t, site)
	var got, want []string
	lastSeen := func() string { return got[len(got)-1][:strings.IndexByte(got[len(got)-1], ' ')] }
	pub := func(data string) {
		want = append(want, publish(t, ep, "room", data)+" "+data)
	}

	sse := testserver.Subscribe(t, nil, ep+query("", "room"), nil)
	pub("m1")
	pub("m2")
	for range 2 {
		ev := sse.Next()
		got = append(got, ev.ID+" "+ev.Data)
	}
	sse.Close()

	pub("m3") // while no transport is connected
	ws := testserver.DialWS(t, ep+query(lastSeen(), "room"), nil)
	pub("m4")
	got = append(got, nextMessages(t, ws, 2)...)
	ws.Close()

	pub("m5")
	polled := testserver.Poll(t, ep, lastSeen(), "room")
	for _, m := range polled.Messages {
		got = append(got, m.ID+" "+m.Data)
	}

	pub("m6")
	sse2 := testserver.Subscribe(t, nil, ep+query("", "room"), http.Header{"Last-Event-Id": {polled.LastID}})
	ev := sse2.Next()
	got = append(got, ev.ID+" "+ev.Data)

	expectEqual(t, "messages across transports", got, want)
}
