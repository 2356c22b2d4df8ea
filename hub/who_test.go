package hub

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// subscribeWho subscribes to filters as the connection of sub, with the
// token payload claims.
func subscribeWho(t testing.TB, h *Hub, sub, claims string, filters ...string) *Subscriber {
	t.Helper()
	ctx := WithClient(context.Background(), Client{Transport: "sse"})
	s, _, _, err := h.Subscribe(ctx, filters, "", Subject(sub), Claims([]byte(claims)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Past MaxPresenceIdentities a filter's further identities are counted in
// Total, listed on no page, and the list says it is truncated; pages
// follow their cursor in the order of sub.
func TestPresenceIdentityCap(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4, Presence: true})
	for i := range MaxPresenceIdentities + 5 {
		subscribeWho(t, h, fmt.Sprintf("user%05d", i), "", "room")
	}
	subscribeWho(t, h, "", "", "room")
	seen, after := 0, ""
	for {
		l, err := h.Present(context.Background(), "room", MaxPresencePage/3, after)
		if err != nil {
			t.Fatal(err)
		}
		if l.Total != MaxPresenceIdentities+6 || l.Anonymous != 1 || !l.Truncated {
			t.Fatalf("total %d anonymous %d truncated %v", l.Total, l.Anonymous, l.Truncated)
		}
		for _, e := range l.Subscribers {
			if e.Sub <= after {
				t.Fatalf("%q listed after the cursor %q", e.Sub, after)
			}
			after = e.Sub
			seen++
		}
		if l.Next == "" {
			break
		}
	}
	if seen != MaxPresenceIdentities {
		t.Fatalf("listed %d identities, want %d", seen, MaxPresenceIdentities)
	}
}

// Past MaxPresenceFilters a new filter's subscriptions are counted, not
// listed.
func TestPresenceFilterCap(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4, Presence: true})
	filters := make([]string, MaxPresenceFilters)
	for i := range filters {
		filters[i] = fmt.Sprintf("t/%d", i)
	}
	subscribeWho(t, h, "alice", "", filters...)
	subscribeWho(t, h, "bob", "", "one/more")
	l, err := h.Present(context.Background(), "one/more", 10, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Total != 1 || len(l.Subscribers) != 0 || !l.Truncated {
		t.Fatalf("past the filter cap: %+v", l)
	}
	if l, _ := h.Present(context.Background(), "t/7", 10, ""); len(l.Subscribers) != 1 || l.Subscribers[0].Sub != "alice" {
		t.Fatalf("within the cap: %+v", l)
	}
}

// Only the chosen claims are kept, within MaxPresenceClaims bytes; a
// payload that is not an object gives none.
func TestPresenceChosenClaims(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4, Presence: true, PresenceClaims: []string{"name", "big", "avatar"}})
	big := strings.Repeat("x", MaxPresenceClaims)
	subscribeWho(t, h, "alice", `{"sub":"alice","name":"Alice","email":"a@example.com","big":"`+big+`","avatar":"a.png"}`, "room")
	subscribeWho(t, h, "bob", `[1,2]`, "room")
	l, _ := h.Present(context.Background(), "room", 10, "")
	if len(l.Subscribers) != 2 {
		t.Fatalf("%+v", l)
	}
	if got := string(l.Subscribers[0].Claims); got != `{"name":"Alice","avatar":"a.png"}` {
		t.Fatalf("alice's claims: %s", got)
	}
	if l.Subscribers[1].Claims != nil {
		t.Fatalf("bob's claims: %s", l.Subscribers[1].Claims)
	}
}

// TestPresenceEntryMemory measures the heap one identity's entry in a
// filter's list takes (an 11-byte sub, one chosen claim of 19 bytes): the
// heap the lists of MaxPresenceIdentities identities on 20 filters hold,
// freed by dropping them. Run with -v to read it.
func TestPresenceEntryMemory(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 1, Presence: true, PresenceClaims: []string{"name"}})
	filters := make([]string, 20)
	for i := range filters {
		filters[i] = fmt.Sprintf("room/%d", i)
	}
	subs := make([]*Subscriber, MaxPresenceIdentities)
	for i := range subs {
		subs[i] = subscribeWho(t, h, fmt.Sprintf("user-%06d", i), fmt.Sprintf(`{"name":"User %06d"}`, i), filters...)
	}
	n := len(subs) * len(filters)
	var with, without runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&with)
	h.mu.Lock()
	for _, f := range filters {
		if len(h.obs.present[f].ids) != len(subs) {
			t.Fatalf("%s lists %d", f, len(h.obs.present[f].ids))
		}
		delete(h.obs.present, f)
	}
	h.mu.Unlock()
	runtime.GC()
	runtime.ReadMemStats(&without)
	runtime.KeepAlive(subs)
	per := float64(with.HeapAlloc-without.HeapAlloc) / float64(n)
	t.Logf("presence: %.0f bytes per identity entry (%d entries)", per, n)
	if per <= 0 || per > 1024 {
		t.Fatalf("%.0f bytes per entry", per)
	}
}

// Lists are kept only with presence on; turned on, they list the
// subscriptions that exist already, and turned off they are dropped.
func TestPresenceTurnedOn(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	subscribeWho(t, h, "alice", "", "room", "hall")
	subscribeWho(t, h, "alice", "", "room")
	subscribeWho(t, h, "", "", "room")
	if l, _ := h.Present(context.Background(), "room", 10, ""); len(l.Subscribers) != 0 || l.Total != 3 || !l.Truncated {
		t.Fatalf("presence off: %+v", l)
	}
	h.SetOptions(Options{Queue: 4, Presence: true})
	l, _ := h.Present(context.Background(), "room", 10, "")
	if len(l.Subscribers) != 1 || l.Subscribers[0].Connections != 2 || l.Anonymous != 1 || l.Total != 3 || l.Truncated {
		t.Fatalf("presence turned on: %+v", l)
	}
	h.SetOptions(Options{Queue: 4})
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.obs.present != nil {
		t.Fatalf("presence off keeps %d lists", len(h.obs.present))
	}
}
