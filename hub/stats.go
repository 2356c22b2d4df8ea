package hub

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Client describes who subscribes, for the hub's counts and presence. The
// HTTP edge puts it on the context given to Subscribe (WithClient).
type Client struct {
	// Transport names how the subscriber is served ("sse", "ws", "poll"):
	// Stats counts subscribers by it.
	Transport string
	// Quiet keeps presence from announcing the subscription: a long-poll
	// subscribes and unsubscribes at every poll.
	Quiet bool

	// budget bounds the presence announcements of every subscription made
	// with one WithClient context: one connection (presence.go).
	budget *presenceBudget
}

type clientKey struct{}

// WithClient returns ctx carrying c, for Subscribe. The subscriptions made
// with ctx count as one connection's: they share one presence budget
// (PresenceBurst, PresenceRate).
func WithClient(ctx context.Context, c Client) context.Context {
	c.budget = new(presenceBudget)
	return context.WithValue(ctx, clientKey{}, c)
}

// clientOf returns the Client ctx carries; without one, a subscription has
// a presence budget of its own.
func clientOf(ctx context.Context) Client {
	c, _ := ctx.Value(clientKey{}).(Client)
	if c.Transport == "" {
		c.Transport = "other"
	}
	if c.budget == nil {
		c.budget = new(presenceBudget)
	}
	return c
}

// observed is what the hub counts for stats and metrics. The counters are
// plain atomics, read when scraped, so fan-out pays one atomic add per
// message.
type observed struct {
	published, delivered, dropped, slow atomic.Uint64
	presenceDropped                     atomic.Uint64
	overloaded, rateLimited             atomic.Uint64 // messages refused (backpressure.go)
	gaps                                atomic.Uint64 // pages of history handed out with a Gap
	opts                                atomic.Pointer[Options]

	// Guarded by Hub.mu.
	transports map[string]int
	seq        uint64 // last subscription number
	presence   *presence
	idPrefix   string  // random per hub, starts subscription IDs
	ending     *ending // handed out by Ended (ended.go)
	watchers   []*Watcher
	occupancy  map[string]int      // non-quiet subscriptions by filter (watch.go)
	occ        *occupancy          // counting across instances, once started (watch.go)
	present    map[string]*present // identities by filter (who.go)
	share      *share              // sharing them across instances, once started (whoshare.go)

	occupancyLost atomic.Uint64
}

// Stats is a snapshot of a hub's counters.
type Stats struct {
	Subscribers int
	Transports  map[string]int // subscribers by Client.Transport
	// Published counts the messages published into the hub from this
	// process (brokers shared by several instances deliver more).
	Published uint64
	// Delivered counts the messages the fan-out queued for subscribers
	// (one per subscriber; replays from history are not counted).
	Delivered uint64
	// Dropped counts the messages slow consumers never got: the one that
	// overflowed their queue and those still queued when they were ended.
	Dropped uint64
	// SlowConsumers counts subscribers ended with ErrSlowConsumer.
	SlowConsumers uint64
	// PresenceDropped counts presence events lost: their queue was full or
	// the broker did not take them. Changes coalesced by the per-connection
	// budget are not lost, and not counted.
	PresenceDropped uint64
	// OccupancyLost counts the occupancy transitions the broker shared
	// by instances did not record: their queue was full or the broker
	// failed.
	OccupancyLost uint64
	// Overloaded and RateLimited count the messages of publishes refused
	// for back-pressure: ErrOverloaded and ErrRateLimited.
	Overloaded, RateLimited uint64
	// Gaps counts the gaps handed to subscribers: pages of history
	// (History, Subscribe, Replay) that told a resume it missed messages
	// the history no longer holds.
	Gaps    uint64
	Head    string // ID of the last message delivered
	Options Options
}

// Stats returns the hub's current counts.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	h.catchUpLocked()
	st := Stats{
		Subscribers: h.subs,
		Transports:  make(map[string]int, len(h.obs.transports)),
		Head:        h.head,
	}
	for t, n := range h.obs.transports {
		if n > 0 {
			st.Transports[t] = n
		}
	}
	h.mu.Unlock()
	st.Published = h.obs.published.Load()
	st.Delivered = h.obs.delivered.Load()
	st.Dropped = h.obs.dropped.Load()
	st.SlowConsumers = h.obs.slow.Load()
	st.PresenceDropped = h.obs.presenceDropped.Load()
	st.OccupancyLost = h.obs.occupancyLost.Load()
	st.Overloaded = h.obs.overloaded.Load()
	st.RateLimited = h.obs.rateLimited.Load()
	st.Gaps = h.obs.gaps.Load()
	if o := h.obs.opts.Load(); o != nil {
		st.Options = *o
	}
	return st
}

// FilterCount is how many subscribers hold one filter.
type FilterCount struct {
	Filter      string
	Subscribers int
}

// Filters returns the subscribed filters with their subscriber counts,
// most subscribed first, at most limit of them (all if limit <= 0), and the
// number of distinct filters.
func (h *Hub) Filters(limit int) ([]FilterCount, int) {
	var out []FilterCount
	h.mu.Lock()
	h.index.root.count("", true, &out)
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b FilterCount) int {
		return cmp.Or(cmp.Compare(b.Subscribers, a.Subscribers), cmp.Compare(a.Filter, b.Filter))
	})
	total := len(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, total
}

// count appends the filter of every node holding subscribers under n,
// whose filter is path.
func (n *node) count(path string, root bool, out *[]FilterCount) {
	if len(n.subs) > 0 && !root {
		*out = append(*out, FilterCount{Filter: path, Subscribers: len(n.subs)})
	}
	for level, child := range n.children {
		p := level
		if !root {
			p = path + "/" + level
		}
		child.count(p, false, out)
	}
}

// Retained describes a hub's history.
type Retained struct {
	Messages        int
	FirstID, LastID string // "" when empty
}

// RetainedReporter is implemented by brokers that can tell the size of
// their history cheaply (without reading it), for metrics.
type RetainedReporter interface {
	Retained() Retained
}

// Retained reports the hub's history when its broker can tell it cheaply.
func (h *Hub) Retained() (Retained, bool) {
	r, ok := h.broker.(RetainedReporter)
	if !ok {
		return Retained{}, false
	}
	return r.Retained(), true
}

// Retained implements RetainedReporter.
func (m *MemoryBroker) Retained() Retained {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trim(m.now())
	r := Retained{Messages: m.live}
	if first := m.first(); first != nil {
		r.FirstID = first.ID
		for i := len(m.log) - 1; r.LastID == ""; i-- {
			if msg := m.log[i].msg; msg != nil {
				r.LastID = msg.ID
			}
		}
	}
	return r
}

// LinkState is where a connection to an outside server stands: a broker's
// connection to Redis, an upstream MQTT link. Metrics and stats read it.
type LinkState struct {
	Kind       string // "redis", "mqtt"
	Name       string // which server or session: an address, a client ID
	Status     string // as the link names it: "connected", "reconnecting"…
	Up         bool   // connected and working
	Since      time.Time
	Reconnects uint64 // connections made after the first
	// Losses counts the times the server was found to have lost messages
	// it had acknowledged (a failover to a replica that lagged, a restart
	// without persistence); clients were told with a gap.
	Losses uint64
	// Failovers counts the times the server holding the data became
	// another one (Sentinel promoted a replica, a cluster slot moved to a
	// new master): unlike a reconnect to the same server, after one the
	// data is only as complete as replication made it.
	Failovers uint64
	// Server is the server the link last found holding the data (for a
	// broker behind Sentinel or a cluster, the current master), "" until
	// known.
	Server    string
	LastError string
}

// LinkReporter is implemented by brokers (and upstream links) that hold a
// connection, so its state shows in metrics and stats.
type LinkReporter interface {
	LinkState() LinkState
}

// BrokerLink reports the state of the broker's connection, for brokers
// that have one and implement LinkReporter.
func (h *Hub) BrokerLink() (LinkState, bool) {
	r, ok := h.broker.(LinkReporter)
	if !ok {
		return LinkState{}, false
	}
	return r.LinkState(), true
}

// Hooks the Hub calls; each runs with h.mu held.

// joined counts a new subscriber and announces it.
func (h *Hub) joined(ctx context.Context, s *Subscriber) {
	s.client = clientOf(ctx)
	if h.obs.transports == nil {
		h.obs.transports = make(map[string]int)
	}
	h.obs.transports[s.client.Transport]++
	h.obs.seq++
	s.seq = h.obs.seq
	h.presenceChanged(s)
	h.watchChange(s, nil)
}

// left uncounts a removed subscriber and announces it.
func (h *Hub) left(s *Subscriber) {
	h.obs.transports[s.client.Transport]--
	h.presenceChanged(s)
	h.watchChange(s, s.filters)
}

// refiltered announces the filters a subscriber added and removed; s has
// its new filters, old were its filters before.
func (h *Hub) refiltered(s *Subscriber, old []string) {
	h.presenceChanged(s)
	h.watchChange(s, old)
}

// missing returns the filters of a that b lacks.
func missing(a, b []string) []string {
	var out []string
	for _, f := range a {
		if !slices.Contains(b, f) {
			out = append(out, f)
		}
	}
	return out
}

// overflowed counts a subscriber ended as a slow consumer, with the message
// that did not fit and those left in its queue.
func (h *Hub) overflowed(s *Subscriber) {
	h.obs.slow.Add(1)
	h.obs.dropped.Add(1 + uint64(s.queue.len()))
}

// subscriptionID names s in presence events: no address, no token.
func (h *Hub) subscriptionID(s *Subscriber) string {
	return h.obs.idPrefix + "-" + strconv.FormatUint(s.seq, 10)
}

// CarryClient returns ctx carrying the Client that from carries (see
// WithClient), presence budget and all: a transport whose connection
// outlives its request's context keeps counting as one connection.
func CarryClient(ctx, from context.Context) context.Context {
	if c, ok := from.Value(clientKey{}).(Client); ok {
		return context.WithValue(ctx, clientKey{}, c)
	}
	return ctx
}
