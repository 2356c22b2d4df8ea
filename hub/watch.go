package hub

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
)

// Watchers learn of subscriptions as the hub changes them, for what must
// follow every subscription whatever ends it (a client that closes, one
// that vanishes and is noticed gone, the hub's own disconnects): the
// application's backend hooks. Long-polls (Client.Quiet) are not watched:
// they subscribe anew for every answer, so watching them would report a
// subscription per poll.

// Change is one change of a subscription, as a Watcher is told it.
type Change struct {
	// Subscription names the subscription as presence events do.
	Subscription string
	Transport    string
	Subject      string
	// Tag is what the subscriber was given with Tag, nil without.
	Tag any
	// Added and Removed are the filters the change added and removed,
	// "$" filters left out: all of them when the subscription begins or
	// ends.
	Added, Removed []string
}

// Watcher is told of subscription changes. Both functions run with the
// hub's lock held, on the goroutine that made the change: they must not
// block nor call the hub; they hand the change on (to a bounded queue).
type Watcher struct {
	// Changed, when set, is told each change of a subscription.
	Changed func(Change)
	// Occupancy, when set, is told when a filter, as written, gains its
	// first subscription on this hub (occupied true) or loses its last.
	Occupancy func(filter string, occupied bool)
}

// Tag gives the subscription a value of its owner's, handed to watchers
// with each change (Change.Tag).
func Tag(v any) SubscribeOption {
	return func(s *Subscriber) { s.tag = v }
}

// Watch adds w to the hub's watchers until stop is called. Filters that
// have subscriptions already are not reported to w as occupied.
func (h *Hub) Watch(w *Watcher) (stop func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ensureIDPrefix()
	h.obs.watchers = append(h.obs.watchers, w)
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.obs.watchers = slices.DeleteFunc(h.obs.watchers, func(x *Watcher) bool { return x == w })
	}
}

// ensureIDPrefix draws the hub's random subscription ID prefix once. h.mu
// is held.
func (h *Hub) ensureIDPrefix() {
	if h.obs.idPrefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		h.obs.idPrefix = hex.EncodeToString(b[:])
	}
}

// watchChange counts the filters s added and removed (old are its filters
// before the change, nil when it begins) and tells the watchers. h.mu is
// held.
func (h *Hub) watchChange(s *Subscriber, old []string) {
	if s.client.Quiet {
		return
	}
	now := s.filters
	if s.removed {
		now = nil
	}
	added, removed := watched(missing(now, old)), watched(missing(old, now))
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	if h.obs.occupancy == nil {
		h.obs.occupancy = make(map[string]int)
	}
	var occupied, vacated []string
	for _, f := range added {
		if h.obs.occupancy[f]++; h.obs.occupancy[f] == 1 {
			occupied = append(occupied, f)
		}
	}
	for _, f := range removed {
		if h.obs.occupancy[f]--; h.obs.occupancy[f] <= 0 {
			delete(h.obs.occupancy, f)
			vacated = append(vacated, f)
		}
	}
	if len(h.obs.watchers) == 0 {
		return
	}
	c := Change{Subscription: h.subscriptionID(s), Transport: s.client.Transport, Subject: s.subject, Tag: s.tag, Added: added, Removed: removed}
	for _, w := range h.obs.watchers {
		if w.Changed != nil {
			w.Changed(c)
		}
		if w.Occupancy != nil {
			for _, f := range occupied {
				w.Occupancy(f, true)
			}
			for _, f := range vacated {
				w.Occupancy(f, false)
			}
		}
	}
}

// watched returns filters without the "$" ones: the hub's own topics are
// read by operators, not the application.
func watched(filters []string) []string {
	return slices.DeleteFunc(filters, func(f string) bool { return strings.HasPrefix(f, "$") })
}
