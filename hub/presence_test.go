package hub

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"
)

// presenceHub is a hub with presence whose budgets run on a fake clock,
// and a watcher of its presence events.
func presenceHub(t *testing.T) (*Hub, *fakeClock, *Subscriber) {
	t.Helper()
	h, _ := newTestHub(t, Options{Queue: 1024, Retention: Retention{Count: 10}, Presence: true})
	clock := newFakeClock()
	h.mu.Lock()
	h.obs.presence.now = clock.Now
	h.mu.Unlock()
	return h, clock, presenceWatcher(t, h)
}

// expectPresence checks that the next event is on topic about topics.
func expectPresence(t *testing.T, w *Subscriber, what, topic string, topics ...string) PresenceEvent {
	t.Helper()
	got, ev := nextPresence(t, w)
	if got != topic || !slices.Equal(ev.Topics, topics) {
		t.Fatalf("%s: got %s %q, want %s %q", what, got, ev.Topics, topic, topics)
	}
	return ev
}

// One connection that keeps subscribing and unsubscribing (a new
// subscription each time) gets PresenceBurst subscriptions announced, with
// their ends; the ones that begin and end after that, with no token,
// never are; one that stays is announced once a token is back.
func TestPresenceBudgetPerConnection(t *testing.T) {
	h, clock, w := presenceHub(t)
	conn := WithClient(context.Background(), Client{Transport: "ws"})
	for range 200 {
		s, _, _, err := h.Subscribe(conn, []string{"churn"}, "")
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	for i := range PresenceBurst {
		ev := expectPresence(t, w, "churn within the burst", PresenceSubscribe, "churn")
		if end := expectPresence(t, w, "its end", PresenceUnsubscribe, "churn"); end.ID != ev.ID {
			t.Fatalf("subscription %d: began as %s, ended as %s", i, ev.ID, end.ID)
		}
	}
	stays, _, _, err := h.Subscribe(conn, []string{"stays"}, "")
	if err != nil {
		t.Fatal(err)
	}
	other := subscribeAs(t, h, Client{Transport: "sse"}, "other")
	expectPresence(t, w, "another connection, with its own budget", PresenceSubscribe, "other")
	assertNoMessage(t, w)

	clock.Advance(time.Second / PresenceRate)
	expectPresence(t, w, "the subscription that stayed, once a token is back", PresenceSubscribe, "stays")
	stays.Close()
	other.Close()
	expectPresence(t, w, "the end of an announced subscription, at once", PresenceUnsubscribe, "stays")
	expectPresence(t, w, "the other connection's end", PresenceUnsubscribe, "other")
	if st := h.Stats(); st.PresenceDropped != 0 {
		t.Fatalf("%d presence events dropped; coalesced ones are not", st.PresenceDropped)
	}
}

// spend uses up the budget left to s's connection after its subscription
// was announced, adding x1, x2... one at a time, and returns its filters.
func spend(t *testing.T, s *Subscriber, w *Subscriber) []string {
	t.Helper()
	filters := slices.Clone(s.Filters())
	for i := range PresenceBurst - 1 {
		x := "x" + strconv.Itoa(i+1)
		filters = append(filters, x)
		if _, _, err := s.SetFilters(slices.Clone(filters)); err != nil {
			t.Fatal(err)
		}
		expectPresence(t, w, "change within the budget", PresenceSubscribe, x)
	}
	return filters
}

// Filter changes past the budget are coalesced into the net change since
// the last announcement: topics added and dropped in between never show.
func TestPresenceCoalescesNetChange(t *testing.T) {
	h, clock, w := presenceHub(t)
	s := subscribeAs(t, h, Client{Transport: "ws"}, "a", "b")
	expectPresence(t, w, "subscribe", PresenceSubscribe, "a", "b")
	xs := spend(t, s, w)[2:]
	for _, f := range [][]string{{"a", "b", "c"}, {"b", "c"}, {"b", "c", "d", "$pubsub/#"}, {"b", "d", "$pubsub/#"}} {
		if _, _, err := s.SetFilters(append(slices.Clone(xs), f...)); err != nil {
			t.Fatal(err)
		}
	}
	assertNoMessage(t, w)
	clock.Advance(time.Second / PresenceRate)
	expectPresence(t, w, "net change: added", PresenceSubscribe, "d")
	expectPresence(t, w, "net change: removed", PresenceUnsubscribe, "a")
	s.Close()
	expectPresence(t, w, "end", PresenceUnsubscribe, append(slices.Clone(xs), "b", "d")...)
}

// A change undone before a token is back is never announced.
func TestPresenceUndoneChangeIsNotAnnounced(t *testing.T) {
	h, clock, w := presenceHub(t)
	s := subscribeAs(t, h, Client{Transport: "ws"}, "a")
	expectPresence(t, w, "subscribe", PresenceSubscribe, "a")
	filters := spend(t, s, w)
	for _, f := range [][]string{append(slices.Clone(filters), "y"), filters} {
		if _, _, err := s.SetFilters(slices.Clone(f)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Second / PresenceRate)
	if _, _, err := s.SetFilters(append(slices.Clone(filters), "z")); err != nil {
		t.Fatal(err)
	}
	expectPresence(t, w, "the next change, with y never shown", PresenceSubscribe, "z")
	assertNoMessage(t, w)
}
