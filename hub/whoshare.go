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

// share is a hub's link to its PresenceSharer broker. What waits for it
// is the set of (filter, sub) whose state changed; the state is read when
// it is sent, so the broker always gets the latest, nothing is lost
// however fast subscriptions change, the memory is bounded by the lists'
// own bounds, and a connection that comes and goes in between makes no
// join or leave.
type share struct {
	broker PresenceSharer
	// pending holds what changed since it was last sent; guarded by
	// Hub.mu.
	pending map[shareKey]struct{}
	kick    chan struct{} // a token when pending gained a state
	stop    chan struct{}
	done    chan struct{}
}

type shareKey struct{ filter, sub string }

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
	o := &share{broker: sh, pending: make(map[shareKey]struct{}), kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if err := sh.StartPresence(h.leftElsewhere, h.resyncPresence); err != nil {
		h.obs.presenceDropped.Add(1)
		return nil
	}
	h.obs.share = o
	go o.run(h)
	h.shareAll()
	return o
}

// shareState marks this hub's state of filter and, when sub is set, of
// that identity in it, to be sent. h.mu is held.
func (h *Hub) shareState(filter, sub string) {
	o := h.obs.share
	o.pending[shareKey{filter, sub}] = struct{}{}
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// stateOf returns this hub's state of a filter and of a sub in it. h.mu
// is held.
func (h *Hub) stateOf(k shareKey) PresenceShare {
	s := PresenceShare{Filter: k.filter, Sub: k.sub, Total: h.obs.occupancy[k.filter]}
	if p := h.obs.present[k.filter]; p != nil {
		s.Anonymous = p.anonymous
		if e := p.ids[k.sub]; e != nil {
			s.Claims, s.Connections = e.claims, e.conns
		}
	}
	return s
}

// shareAll records the hub's whole state, to be sent. h.mu is held.
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

// run records the pending states with the broker until stopped.
func (o *share) run(h *Hub) {
	defer close(o.done)
	for {
		select {
		case <-o.kick:
		case <-o.stop:
			return
		}
		h.mu.Lock()
		states := make([]PresenceShare, 0, len(o.pending))
		for k := range o.pending {
			states = append(states, h.stateOf(k))
		}
		clear(o.pending)
		h.mu.Unlock()
		for _, s := range states {
			select {
			case <-o.stop:
				return
			default:
			}
			o.record(h, s)
		}
	}
}

// record sends one state and announces the join or leave it crossed.
func (o *share) record(h *Hub, s PresenceShare) {
	ctx, cancel := context.WithTimeout(context.Background(), occupancyTimeout)
	crossed, err := o.broker.SharePresence(ctx, s)
	cancel()
	if err != nil {
		// The broker's view of this state stays behind until it changes
		// again or the instance is reaped and shares all anew.
		h.obs.presenceDropped.Add(1)
		return
	}
	if crossed && s.Sub != "" {
		h.mu.Lock()
		h.announceTurn(PresenceChange{Topic: s.Filter, Sub: s.Sub, Claims: s.Claims}, s.Connections > 0)
		h.mu.Unlock()
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
