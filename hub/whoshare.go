package hub

import (
	"context"
	"encoding/json"
)

// With a broker shared between instances (PresenceSharer) the lists are
// every instance's: each hub hands the broker, in order, from one
// goroutine, its own state of each (filter, identity) as it changes, and
// announces the joins and leaves the broker says crossed zero across
// instances. It starts with the first change while presence is on,
// sharing what the hub holds by then.

// PresenceSharer is implemented by brokers shared between instances, to
// hold the presence lists of all of them.
type PresenceSharer interface {
	// StartPresence is called once, before the first SharePresence. The
	// broker calls left with each identity whose last connections to a
	// filter were on an instance found gone (one instance is told), and
	// resync when this instance was itself taken for gone: the hub then
	// shares all it holds again.
	StartPresence(left func(PresenceChange), resync func()) error

	// SharePresence records this instance's state of a filter and, when
	// s.Sub is set, of that identity in it; it reports whether the
	// identity's connections across instances crossed zero with it
	// (joined, or left when s.Connections is 0): the instance told true,
	// only it, announces it.
	SharePresence(ctx context.Context, s PresenceShare) (crossed bool, err error)

	// PresentAll returns every identity subscribed to filter on any
	// instance (their connections summed), and the sums of the counts.
	PresentAll(ctx context.Context, filter string) (PresenceList, error)
}

// PresenceShare is one instance's state of a filter after a change.
type PresenceShare struct {
	Filter string
	// Sub, when set, is the identity that changed: Connections are its
	// connections to Filter on this instance (0: none left), Claims its
	// chosen claims.
	Sub         string
	Claims      json.RawMessage
	Connections int
	// Anonymous and Total are this instance's counts of Filter.
	Anonymous, Total int
}

// share is a hub's link to its PresenceSharer broker.
type share struct {
	broker  PresenceSharer
	changes chan PresenceShare
	stop    chan struct{}
	done    chan struct{}
}

// sharer returns the broker's link, starting it if presence is on and the
// broker is a PresenceSharer; nil otherwise. A link that starts shares
// all the hub holds. h.mu is held.
func (h *Hub) sharer() *share {
	if h.obs.share != nil || h.obs.presence == nil || h.closed {
		return h.obs.share
	}
	sh, ok := h.broker.(PresenceSharer)
	if !ok {
		return nil
	}
	o := &share{broker: sh, changes: make(chan PresenceShare, occupancyQueue), stop: make(chan struct{}), done: make(chan struct{})}
	if err := sh.StartPresence(h.leftElsewhere, h.resyncPresence); err != nil {
		h.obs.presenceDropped.Add(1)
		return nil
	}
	h.obs.share = o
	go o.run(h)
	h.shareAll()
	return o
}

// shareState queues this hub's state of filter and, when sub is set, of
// that identity in it. h.mu is held.
func (h *Hub) shareState(filter, sub string) {
	o := h.obs.share
	s := PresenceShare{Filter: filter, Sub: sub, Total: h.obs.occupancy[filter]}
	if p := h.obs.present[filter]; p != nil {
		s.Anonymous = p.anonymous
		if e := p.ids[sub]; e != nil {
			s.Claims, s.Connections = e.claims, e.conns
		}
	}
	select {
	case o.changes <- s:
	default:
		h.obs.presenceDropped.Add(1)
	}
}

// shareAll queues the hub's whole state. h.mu is held.
func (h *Hub) shareAll() {
	for f := range h.obs.occupancy {
		h.shareState(f, "")
		if p := h.obs.present[f]; p != nil {
			for sub := range p.ids {
				h.shareState(f, sub)
			}
		}
	}
}

// resyncPresence shares all again, for a broker that took this instance
// for gone.
func (h *Hub) resyncPresence() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.obs.share != nil {
		h.shareAll()
	}
}

// leftElsewhere announces an identity whose last connections were on an
// instance found gone.
func (h *Hub) leftElsewhere(c PresenceChange) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.announceTurn(c, false)
}

// run records the queued states with the broker until stopped.
func (o *share) run(h *Hub) {
	defer close(o.done)
	for {
		select {
		case s := <-o.changes:
			ctx, cancel := context.WithTimeout(context.Background(), occupancyTimeout)
			crossed, err := o.broker.SharePresence(ctx, s)
			cancel()
			if err != nil {
				h.obs.presenceDropped.Add(1)
				continue
			}
			if crossed && s.Sub != "" {
				h.mu.Lock()
				h.announceTurn(PresenceChange{Topic: s.Filter, Sub: s.Sub, Claims: s.Claims}, s.Connections > 0)
				h.mu.Unlock()
			}
		case <-o.stop:
			return
		}
	}
}

// stopShare stops the link's goroutine and waits for it. The caller must
// not hold h.mu.
func (h *Hub) stopShare() {
	h.mu.Lock()
	o := h.obs.share
	h.mu.Unlock()
	if o != nil {
		close(o.stop)
		<-o.done
	}
}
