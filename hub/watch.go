package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"time"
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

// Watch adds w to the hub's watchers until stop is called; stop first
// waits (flushWait at most) until the broker shared by instances
// has counted the changes made before it, so that w hears of the filters
// they vacated: a stopping server ends every subscription, then stops its
// watchers. Filters that
// have subscriptions already are not reported to w as occupied, but on a
// broker shared by instances (Occupier) they are counted from now on.
func (h *Hub) Watch(w *Watcher) (stop func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ensureIDPrefix()
	h.obs.watchers = append(h.obs.watchers, w)
	if len(h.obs.occupancy) > 0 {
		// Subscriptions exist, so the broker has started: count them.
		h.startOccupancy()
	}
	return func() {
		h.flushOccupancy()
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
	h.trackPresence(s, added, removed)
	if len(h.obs.watchers) == 0 {
		return
	}
	c := Change{Subscription: h.subscriptionID(s), Transport: s.client.Transport, Subject: s.subject, Tag: s.tag, Added: added, Removed: removed}
	for _, w := range h.obs.watchers {
		if w.Changed != nil {
			w.Changed(c)
		}
	}
	if len(occupied)+len(vacated) == 0 {
		return
	}
	if h.startOccupancy() {
		// It counted every occupied filter, these too.
		return
	}
	if o := h.obs.occ; o != nil {
		for _, f := range occupied {
			o.queue(h, f, true)
		}
		for _, f := range vacated {
			o.queue(h, f, false)
		}
		return
	}
	for _, f := range occupied {
		h.tellOccupancy(f, true)
	}
	for _, f := range vacated {
		h.tellOccupancy(f, false)
	}
}

// tellOccupancy tells the watchers that filter is occupied or vacated
// across the hub's instances. h.mu is held.
func (h *Hub) tellOccupancy(filter string, occupied bool) {
	for _, w := range h.obs.watchers {
		if w.Occupancy != nil {
			w.Occupancy(filter, occupied)
		}
	}
}

// With a broker shared between instances (Occupier), a filter is occupied
// when its first subscription on any instance begins and vacated when its
// last one on any instance ends. The hub hands its own transitions (first
// local subscription in, last out) to the broker, in order, from one
// goroutine, and tells its watchers of those that crossed zero across
// instances. It starts with the first transition a watcher wants to hear
// of, so a hub only provisioned (caddy validate) opens no connection, and
// a hub nobody watches costs the broker nothing.
const (
	// occupancyQueue bounds the transitions waiting for the broker;
	// beyond it they are lost and counted (the broker's count of this
	// instance is then off until the instance resyncs or stops).
	occupancyQueue = 1024
	// occupancyTimeout bounds one broker call.
	occupancyTimeout = 5 * time.Second
	// flushWait bounds how long stopping a watcher waits for the
	// broker (a reload while Redis is out of reach).
	flushWait = 2 * time.Second
)

// occupancy is a hub's link to its Occupier broker.
type occupancy struct {
	broker  Occupier
	changes chan occupancyChange
	stop    chan struct{} // closed by Close: drain, then return
	done    chan struct{}
}

type occupancyChange struct {
	filter   string
	occupied bool
	// flushed, when set, is closed instead: every change queued
	// before it has been recorded (flushOccupancy).
	flushed chan struct{}
}

// startOccupancy starts counting through the broker, if it is an
// Occupier, a watcher wants occupancy and it has not started yet; it
// reports whether it started, having queued every occupied filter. h.mu
// is held.
func (h *Hub) startOccupancy() bool {
	occ, ok := h.broker.(Occupier)
	if !ok || h.obs.occ != nil || h.closed || !slices.ContainsFunc(h.obs.watchers, func(w *Watcher) bool { return w.Occupancy != nil }) {
		return false
	}
	o := &occupancy{broker: occ, changes: make(chan occupancyChange, occupancyQueue), stop: make(chan struct{}), done: make(chan struct{})}
	if err := occ.StartOccupancy(h.vacatedElsewhere, h.resyncOccupancy); err != nil {
		h.obs.occupancyLost.Add(uint64(len(h.obs.occupancy)))
		return false
	}
	h.obs.occ = o
	for f := range h.obs.occupancy {
		o.queue(h, f, true)
	}
	go o.run(h)
	return true
}

// queue hands a transition to the broker's goroutine without blocking.
func (o *occupancy) queue(h *Hub, filter string, occupied bool) {
	select {
	case o.changes <- occupancyChange{filter: filter, occupied: occupied}:
	default:
		h.obs.occupancyLost.Add(1)
	}
}

// run records the queued transitions with the broker until Close. What
// is still queued then is dropped: the broker withdraws the instance as a
// whole when it closes, and a surviving instance tells the vacated
// filters (Occupier), which a closing hub's watchers could not.
func (o *occupancy) run(h *Hub) {
	defer close(o.done)
	for {
		select {
		case c := <-o.changes:
			if c.flushed != nil {
				close(c.flushed)
				continue
			}
			o.record(h, c)
		case <-o.stop:
			return
		}
	}
}

func (o *occupancy) record(h *Hub, c occupancyChange) {
	ctx, cancel := context.WithTimeout(context.Background(), occupancyTimeout)
	defer cancel()
	crossed, err := o.broker.Occupy(ctx, c.filter, c.occupied)
	if err != nil {
		h.obs.occupancyLost.Add(1)
		return
	}
	if crossed {
		h.mu.Lock()
		h.tellOccupancy(c.filter, c.occupied)
		h.mu.Unlock()
	}
}

// vacatedElsewhere tells the watchers of a filter whose last
// subscriptions were on an instance found gone.
func (h *Hub) vacatedElsewhere(filter string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tellOccupancy(filter, false)
}

// resyncOccupancy occupies every locally occupied filter again, for a
// broker that took this instance for gone.
func (h *Hub) resyncOccupancy() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if o := h.obs.occ; o != nil {
		for f := range h.obs.occupancy {
			o.queue(h, f, true)
		}
	}
}

// flushOccupancy waits until the changes queued so far are recorded and
// told, flushWait at most. The caller must not hold h.mu.
func (h *Hub) flushOccupancy() {
	h.mu.Lock()
	o := h.obs.occ
	h.mu.Unlock()
	if o == nil {
		return
	}
	flushed := make(chan struct{})
	select {
	case o.changes <- occupancyChange{flushed: flushed}:
	default:
		return // full: what waits is lost anyway, or soon told
	}
	t := time.NewTimer(flushWait)
	defer t.Stop()
	select {
	case <-flushed:
	case <-o.done:
	case <-t.C:
	}
}

// stopOccupancy stops the goroutine and waits for it. The caller must not
// hold h.mu.
func (h *Hub) stopOccupancy() {
	h.mu.Lock()
	o := h.obs.occ
	h.mu.Unlock()
	if o != nil {
		close(o.stop)
		<-o.done
	}
}

// watched returns filters without the "$" ones: the hub's own topics are
// read by operators, not the application.
func watched(filters []string) []string {
	return slices.DeleteFunc(filters, func(f string) bool { return strings.HasPrefix(f, "$") })
}
