package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"testing"
	"time"
)

// subscribeAs subscribes to filters as a client of transport.
func subscribeAs(t testing.TB, h *Hub, c Client, filters ...string) *Subscriber {
	t.Helper()
	s, _, _, err := h.Subscribe(WithClient(context.Background(), c), filters, "")
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", filters, err)
	}
	return s
}

// Counters, subscribers by transport and per-filter counts follow a
// scripted sequence exactly.
func TestStatsCountTheFanOut(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 2, Retention: Retention{Count: 3}})
	sse := subscribeAs(t, h, Client{Transport: "sse"}, "news/#")
	ws := subscribeAs(t, h, Client{Transport: "ws"}, "news/#", "alerts")
	poll := subscribeAs(t, h, Client{Transport: "poll"}, "alerts")
	plain := subscribe(t, h, "other")

	st := h.Stats()
	if st.Subscribers != 4 || !maps.Equal(st.Transports, map[string]int{"sse": 1, "ws": 1, "poll": 1, "other": 1}) {
		t.Fatalf("after subscribing: %d subscribers, transports %v", st.Subscribers, st.Transports)
	}
	filters, total := h.Filters(0)
	want := []FilterCount{{"alerts", 2}, {"news/#", 2}, {"other", 1}}
	if total != 3 || !slices.Equal(filters, want) {
		t.Fatalf("Filters = %v (%d), want %v", filters, total, want)
	}
	if top, total := h.Filters(1); total != 3 || len(top) != 1 || top[0] != want[0] {
		t.Fatalf("Filters(1) = %v (%d)", top, total)
	}

	publish(t, h, "news/a", "1") // sse, ws
	publish(t, h, "alerts", "2") // ws, poll
	recv(t, sse)
	recv(t, ws)
	recv(t, ws)
	recv(t, poll)
	poll.Close()
	// sse reads nothing more: its queue of 2 overflows at the third.
	for range 3 {
		publish(t, h, "news/b", "x")
		recv(t, ws)
	}
	if err := waitDone(t, sse); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("sse ended with %v, want slow consumer", err)
	}

	st = h.Stats()
	if st.Published != 5 || st.SlowConsumers != 1 || st.Dropped != 3 {
		t.Fatalf("published %d, slow %d, dropped %d; want 5, 1, 3", st.Published, st.SlowConsumers, st.Dropped)
	}
	// 1 and 2 reached two subscribers each; the three news/b reached ws,
	// and two of them sse before it overflowed.
	if st.Delivered != 4+3+2 {
		t.Fatalf("delivered %d, want 9", st.Delivered)
	}
	if st.Subscribers != 2 || !maps.Equal(st.Transports, map[string]int{"ws": 1, "other": 1}) {
		t.Fatalf("after leaving: %d subscribers, transports %v", st.Subscribers, st.Transports)
	}
	if st.Options.Queue != 2 || st.Options.Retention.Count != 3 || st.Head == "" {
		t.Fatalf("options %+v, head %q", st.Options, st.Head)
	}
	r, ok := h.Retained()
	if !ok || r.Messages != 3 || r.LastID != st.Head || r.FirstID == "" {
		t.Fatalf("Retained = %+v, %v; want 3 messages ending at %s", r, ok, st.Head)
	}
	if _, ok := h.BrokerLink(); ok {
		t.Fatal("the memory broker has no link to report")
	}
	ws.Close()
	plain.Close()
	if filters, total := h.Filters(0); total != 0 || len(filters) != 0 {
		t.Fatalf("Filters after all left = %v", filters)
	}
}

// presenceWatcher subscribes to the presence topics.
func presenceWatcher(t testing.TB, h *Hub) *Subscriber {
	t.Helper()
	return subscribe(t, h, "$pubsub/#")
}

// nextPresence returns the next presence event w receives.
func nextPresence(t testing.TB, w *Subscriber) (string, PresenceEvent) {
	t.Helper()
	m := recv(t, w)
	var ev PresenceEvent
	if err := json.Unmarshal([]byte(m.Data), &ev); err != nil {
		t.Fatalf("presence data %q: %v", m.Data, err)
	}
	return m.Topic, ev
}

func TestPresenceAnnouncesSubscriptions(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 16, Retention: Retention{Count: 100}, Presence: true})
	w := presenceWatcher(t, h)

	s := subscribeAs(t, h, Client{Transport: "ws"}, "chat/a", "$pubsub/subscribe")
	topic, ev := nextPresence(t, w)
	if topic != PresenceSubscribe || ev.Transport != "ws" || !slices.Equal(ev.Topics, []string{"chat/a"}) || ev.ID == "" {
		t.Fatalf("subscribe event %s %+v", topic, ev)
	}
	id := ev.ID

	if _, _, err := s.SetFilters([]string{"chat/b", "$pubsub/subscribe"}); err != nil {
		t.Fatal(err)
	}
	if topic, ev := nextPresence(t, w); topic != PresenceSubscribe || ev.ID != id || !slices.Equal(ev.Topics, []string{"chat/b"}) {
		t.Fatalf("added filter: %s %+v", topic, ev)
	}
	if topic, ev := nextPresence(t, w); topic != PresenceUnsubscribe || ev.ID != id || !slices.Equal(ev.Topics, []string{"chat/a"}) {
		t.Fatalf("removed filter: %s %+v", topic, ev)
	}

	// Quiet subscriptions (long-polls) and watchers are not announced.
	q := subscribeAs(t, h, Client{Transport: "poll", Quiet: true}, "chat/a")
	q.Close()
	other := subscribeAs(t, h, Client{Transport: "sse"}, "chat/c")
	if topic, ev := nextPresence(t, w); topic != PresenceSubscribe || ev.Transport != "sse" || ev.ID == id {
		t.Fatalf("want only the sse subscription, got %s %+v", topic, ev)
	}
	s.Close()
	if topic, ev := nextPresence(t, w); topic != PresenceUnsubscribe || ev.ID != id || !slices.Equal(ev.Topics, []string{"chat/b"}) {
		t.Fatalf("close: %s %+v", topic, ev)
	}
	other.Close()
	nextPresence(t, w)

	// Wildcards in the first level never see presence.
	all := subscribe(t, h, "#")
	x := subscribeAs(t, h, Client{Transport: "sse"}, "x")
	nextPresence(t, w)
	publish(t, h, "x", "hello")
	if m := recv(t, all); m.Topic != "x" {
		t.Fatalf("# got %s", m.Topic)
	}
	assertNoMessage(t, all)
	x.Close()
	nextPresence(t, w)
	if st := h.Stats(); st.PresenceDropped != 0 {
		t.Fatalf("%d presence events dropped", st.PresenceDropped)
	}
}

// Presence follows SetOptions, and its goroutine ends with the hub.
func TestPresenceGoroutineStops(t *testing.T) {
	before := runtime.NumGoroutine()
	h := New(NewMemoryBroker(Retention{Count: 10}), Options{Queue: 4, Presence: true})
	w := presenceWatcher(t, h)
	subscribeAs(t, h, Client{Transport: "sse"}, "a").Close()
	nextPresence(t, w)
	nextPresence(t, w)

	h.SetOptions(Options{Queue: 4, Retention: Retention{Count: 10}})
	h.mu.Lock()
	off := h.obs.presence == nil
	h.mu.Unlock()
	if !off {
		t.Fatal("presence still on after SetOptions without it")
	}
	h.SetOptions(Options{Queue: 4, Retention: Retention{Count: 10}, Presence: true})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h.SetOptions(Options{Queue: 4, Presence: true}) // closed: stays off
	deadline := time.Now().Add(waitFor)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after Close", before, runtime.NumGoroutine())
		}
		time.Sleep(time.Millisecond)
	}
}

// Ended fires, with the reason, at the next Disconnect; after Close it is
// closed at once.
func TestEndedFiresWithTheSubscribers(t *testing.T) {
	h := New(NewMemoryBroker(Retention{}), Options{Queue: 4})
	ch, why := h.Ended()
	again, _ := h.Ended()
	if ch != again {
		t.Fatal("Ended handed out two channels for one end")
	}
	s := subscribe(t, h, "a")
	h.Disconnect(ErrShutdown)
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatal("Ended did not fire on Disconnect")
	}
	if !errors.Is(why(), ErrShutdown) || !errors.Is(waitDone(t, s), ErrShutdown) {
		t.Fatalf("reason %v, subscriber %v", why(), s.Err())
	}
	next, why := h.Ended()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, next)
	if !errors.Is(why(), ErrHubClosed) {
		t.Fatalf("reason after Close: %v", why())
	}
	closed, why := h.Ended()
	assertClosed(t, closed)
	if !errors.Is(why(), ErrHubClosed) {
		t.Fatalf("Ended after Close: %v", why())
	}
}

// assertClosed checks that ch is closed already.
func assertClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	default:
		t.Fatal("channel still open")
	}
}

// Every page of history handed out with a gap counts once; resumes that
// history covers, and reads of everything retained, do not.
func TestStatsCountGaps(t *testing.T) {
	h, _ := newTestHub(t, Options{Retention: Retention{Count: 3}})
	var ids []string
	for i := range 6 {
		ids = append(ids, publish(t, h, "t", fmt.Sprint(i)))
	}
	ctx := context.Background()
	covered, _, gap, err := h.Subscribe(ctx, []string{"t"}, ids[2])
	if err != nil || gap != nil {
		t.Fatalf("resume inside history: gap %v, %v", gap, err)
	}
	covered.Close()
	if _, err := h.History(ctx, Query{After: Earliest}); err != nil {
		t.Fatal(err)
	}
	if n := h.Stats().Gaps; n != 0 {
		t.Fatalf("gaps = %d before any resume missed a message, want 0", n)
	}
	missed, _, gap, err := h.Subscribe(ctx, []string{"t"}, ids[0])
	if err != nil || gap == nil {
		t.Fatalf("resume before history: gap %v, %v", gap, err)
	}
	missed.Close()
	if page, err := h.History(ctx, Query{After: ids[1]}); err != nil || page.Gap == nil {
		t.Fatalf("history after a dropped message: %+v, %v", page, err)
	}
	if n := h.Stats().Gaps; n != 2 {
		t.Fatalf("gaps = %d after two, want 2", n)
	}
}
