package fanout_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Streams opened one after another share one heartbeat wheel: each SSE
// stream gets its comment every second, not sooner, and each WebSocket its
// ping.
func TestHeartbeatsReachEveryStream(t *testing.T) {
	s := testserver.Start(t, site)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	streams := make([]*testserver.SSEStream, 10)
	for i := range streams {
		streams[i] = testserver.Subscribe(t, client, s.Base+"/events?topic=quiet", nil)
	}
	ws := []*testserver.WSConn{
		testserver.DialWS(t, s.Base+"/events?topic=quiet", nil),
		testserver.DialWS(t, s.Base+"/events", nil), // no topic yet
	}
	errs := make(chan error, len(streams))
	for i, st := range streams {
		go func() {
			first, err := nextComment(st)
			if err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
				return
			}
			second, err := nextComment(st)
			// A busy machine may deliver late, but the wheel never fires
			// a stream's slot twice within one interval.
			if gap := second.Sub(first); err == nil && gap < 500*time.Millisecond {
				err = fmt.Errorf("heartbeats %v apart, want about 1s", gap)
			}
			if err != nil {
				err = fmt.Errorf("stream %d: %w", i, err)
			}
			errs <- err
		}()
	}
	for range streams {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range ws {
		testserver.Eventually(t, fmt.Sprintf("WebSocket %d pinged twice", i), func() bool { return w.Pings() >= 2 })
	}
}

// A burst of 200 messages, published as two JSON arrays, reaches an SSE
// stream, a WebSocket and a long-poller complete and in order: the queues
// grow to hold it and the transports take it in batches.
func TestBurstArrivesInOrderOverEveryTransport(t *testing.T) {
	s := testserver.Start(t, site)
	ep := s.Base + "/events"
	start := testserver.Publish(t, ep, map[string][]string{"topic": {"burst"}, "data": {"start"}})
	sse := testserver.Subscribe(t, nil, ep+"?topic=burst&last_id="+start, nil)
	ws := testserver.DialWS(t, ep+"?topic=burst&last_id="+start, nil)

	var want []string
	for round := range 2 {
		batch := make([]map[string]string, 100)
		for i := range batch {
			batch[i] = map[string]string{"topic": "burst", "data": fmt.Sprint(round*100 + i)}
		}
		body, _ := json.Marshal(batch)
		code, answer, _ := testserver.Request(t, http.MethodPost, ep, "application/json", string(body), nil)
		if code != http.StatusOK {
			t.Fatalf("publishing a batch: %d %s", code, answer)
		}
		var ids struct{ IDs []string }
		if err := json.Unmarshal([]byte(answer), &ids); err != nil || len(ids.IDs) != len(batch) {
			t.Fatalf("publish answer %s: %v", answer, err)
		}
		want = append(want, ids.IDs...)
	}

	for i, id := range want {
		if ev := sse.Next(); ev.ID != id || ev.Data != fmt.Sprint(i) {
			t.Fatalf("SSE message %d: got %s %q, want %s %q", i, ev.ID, ev.Data, id, fmt.Sprint(i))
		}
		if f := ws.NextOf("message"); f.ID != id || f.Data != fmt.Sprint(i) {
			t.Fatalf("WebSocket message %d: got %s %q, want %s %q", i, f.ID, f.Data, id, fmt.Sprint(i))
		}
	}
	var got []string
	for cursor := start; len(got) < len(want); {
		a := testserver.Poll(t, ep, cursor, "burst")
		if len(a.Messages) == 0 {
			t.Fatalf("long-poll from %s answered nothing after %d of %d", cursor, len(got), len(want))
		}
		for _, m := range a.Messages {
			got = append(got, m.ID)
		}
		cursor = a.LastID
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("long-poll got %v, want %v", got, want)
	}
}
