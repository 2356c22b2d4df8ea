package hub

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// Presence topics: with Options.Presence the hub sends an event to them
// whenever a subscription begins, grows, shrinks or ends. Being "$" topics,
// no first-level wildcard matches them: watchers subscribe to them by name
// ("$pubsub/#").
//
// Presence events are signals, not stored messages: they have no ID, take
// no room in history and are never replayed, so no amount of subscription
// churn can push a published message out of history. A hub on a broker
// that implements Signaler sends them through it, to every instance.
const (
	PresenceSubscribe   = "$pubsub/subscribe"
	PresenceUnsubscribe = "$pubsub/unsubscribe"
)

const (
	// presenceQueue bounds the events waiting to be sent; beyond it they
	// are dropped (and counted), never slowing subscribers down.
	presenceQueue = 1024
	// presenceBatch caps the events sent in one broker call.
	presenceBatch = 100
	// presenceTimeout bounds one send of events.
	presenceTimeout = 5 * time.Second

	// PresenceBurst and PresenceRate bound what one connection makes the
	// hub announce: a token bucket of PresenceBurst announcements,
	// refilled at PresenceRate per second. A change beyond it is not
	// dropped but coalesced: the subscription's net change since its last
	// announcement goes out once the connection has a token again (within
	// presenceTick of it), so watchers always end up with the right view
	// and a subscription that begins and ends in between is never
	// announced. The end of an announced subscription is always announced
	// at once: it costs no token, as it follows an announcement that did.
	PresenceBurst = 10
	PresenceRate  = 2
	// presenceTick is how often the hub looks for coalesced changes whose
	// connection has a token again, while there are any.
	presenceTick = 100 * time.Millisecond
)

// PresenceEvent is the data of a presence event, as JSON.
type PresenceEvent struct {
	// ID names the subscription (one connection's subscription: a
	// WebSocket that drops all its topics and subscribes again gets a new
	// one). It carries no address or token.
	ID        string   `json:"id"`
	Transport string   `json:"transport"`
	Topics    []string `json:"topics"`
	// Sub and Claims are the subscriber's identity (who.go), when it has
	// a token.
	Sub    string          `json:"sub,omitempty"`
	Claims json.RawMessage `json:"claims,omitempty"`
}

// presence sends a hub's presence events from its own goroutine: the hub
// queues them with its lock held, where it cannot send (delivery takes
// that same lock).
type presence struct {
	events chan Message
	// deferred holds the subscriptions whose changes wait for their
	// connection's budget; guarded by Hub.mu.
	deferred map[*Subscriber]struct{}
	kick     chan struct{}    // a token when deferred gained a subscription
	now      func() time.Time // the budgets' clock; tests replace it
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
}

// presenceBudget is one connection's token bucket for announcements
// (PresenceBurst, PresenceRate). Every subscription made with one
// WithClient context shares it, so a WebSocket that keeps dropping its
// topics and subscribing again (a new subscription each time) is bounded
// too.
type presenceBudget struct {
	// mu: a context could reach more than one hub, each with its own lock.
	mu     sync.Mutex
	tokens float64
	last   time.Time // when tokens was last brought up to date; zero: full
}

// take spends a token if the bucket holds one at now.
func (b *presenceBudget) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = PresenceBurst
	} else {
		b.tokens = min(PresenceBurst, b.tokens+now.Sub(b.last).Seconds()*PresenceRate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// setPresence starts or stops sending presence events.
func (h *Hub) setPresence(on bool) {
	h.mu.Lock()
	old := h.obs.presence
	if on == (old != nil) || (on && h.closed) {
		h.mu.Unlock()
		return
	}
	h.obs.presence = nil
	if on {
		h.ensureIDPrefix()
		ctx, cancel := context.WithCancel(context.Background())
		p := &presence{
			events:   make(chan Message, presenceQueue),
			deferred: make(map[*Subscriber]struct{}),
			kick:     make(chan struct{}, 1),
			now:      time.Now,
			ctx:      ctx,
			cancel:   cancel,
			done:     make(chan struct{}),
		}
		h.obs.presence = p
		go p.run(h)
	}
	h.rebuildPresence()
	h.mu.Unlock()
	old.stop()
}

// stopPresence stops sending presence events; called by Close.
func (h *Hub) stopPresence() {
	h.mu.Lock()
	p := h.obs.presence
	h.obs.presence = nil
	h.mu.Unlock()
	p.stop()
}

// stop ends the goroutine and waits for it; events still queued are
// dropped. The caller must not hold the hub's lock.
func (p *presence) stop() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
}

// presenceChanged announces a change of s's filters, or its end, now or,
// past its connection's budget, coalesced with later ones. h.mu is held.
func (h *Hub) presenceChanged(s *Subscriber) {
	p := h.obs.presence
	if p == nil || s.client.Quiet {
		return
	}
	if s.removed {
		delete(p.deferred, s)
		h.announce(s)
		return
	}
	if _, waiting := p.deferred[s]; waiting || !s.presenceDue() {
		return
	}
	if s.client.budget.take(p.now()) {
		h.announce(s)
		return
	}
	p.deferred[s] = struct{}{}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// announcedFilters returns the filters of s that presence announces: all but
// "$" filters (watchers do not announce themselves); none once s ended.
func (s *Subscriber) announcedFilters() []string {
	if s.removed {
		return nil
	}
	var topics []string
	for _, f := range s.filters {
		if !strings.HasPrefix(f, "$") {
			topics = append(topics, f)
		}
	}
	return topics
}

// presenceDue reports whether s's filters differ from what watchers were
// told. h.mu is held.
func (s *Subscriber) presenceDue() bool {
	now := s.announcedFilters()
	return len(missing(now, s.announced)) > 0 || len(missing(s.announced, now)) > 0
}

// announce queues the events that bring watchers from what they were told
// about s to its filters now: the topics added, then those removed. h.mu
// is held.
func (h *Hub) announce(s *Subscriber) {
	now := s.announcedFilters()
	h.queuePresence(s, PresenceSubscribe, missing(now, s.announced))
	h.queuePresence(s, PresenceUnsubscribe, missing(s.announced, now))
	s.announced = now
}

// queuePresence queues one event for s about topics, if any. h.mu is held.
func (h *Hub) queuePresence(s *Subscriber, topic string, topics []string) {
	if len(topics) == 0 {
		return
	}
	data, _ := json.Marshal(PresenceEvent{ID: h.subscriptionID(s), Transport: s.client.Transport, Topics: topics, Sub: s.subject, Claims: h.chosenClaims(s.claims)})
	select {
	case h.obs.presence.events <- Message{Topic: topic, Data: string(data), Time: time.Now()}:
	default:
		h.obs.presenceDropped.Add(1)
	}
}

// flushDeferred announces the deferred changes whose connection has a
// token again, and reports whether any still wait.
func (p *presence) flushDeferred(h *Hub) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.obs.presence != p {
		return false // turned off: its events are no longer sent
	}
	now := p.now()
	for s := range p.deferred {
		if !s.presenceDue() || s.client.budget.take(now) {
			delete(p.deferred, s)
			h.announce(s)
		}
	}
	return len(p.deferred) > 0
}

// run sends queued events, in order, in batches, and flushes deferred
// changes while there are any, until stopped.
func (p *presence) run(h *Hub) {
	defer close(p.done)
	batch := make([]Message, 0, presenceBatch)
	var tick *time.Ticker
	var ticks <-chan time.Time // nil while nothing is deferred
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		batch = batch[:0]
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
			if tick == nil {
				tick = time.NewTicker(presenceTick)
				ticks = tick.C
			}
			continue
		case <-ticks:
			if !p.flushDeferred(h) {
				tick.Stop()
				tick, ticks = nil, nil
			}
			continue
		case m := <-p.events:
			batch = append(batch, m)
		}
	more:
		for len(batch) < presenceBatch {
			select {
			case m := <-p.events:
				batch = append(batch, m)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(p.ctx, presenceTimeout)
		if err := h.sendSignals(ctx, batch); err != nil {
			h.obs.presenceDropped.Add(uint64(len(batch)))
		}
		cancel()
	}
}

// sendSignals sends msgs as signals: through the broker to every instance
// when it is a Signaler, else to this hub's subscribers.
func (h *Hub) sendSignals(ctx context.Context, msgs []Message) error {
	if err := h.Start(); err != nil {
		return err
	}
	if sig, ok := h.broker.(Signaler); ok {
		return sig.Signal(ctx, msgs)
	}
	for _, m := range msgs {
		h.signal(&m)
	}
	return nil
}

// signal hands a signal (a message without an ID) to the fan-out; it is
// the function Signaler brokers are started with.
func (h *Hub) signal(m *Message) {
	m.ID = ""
	h.deliver(m)
}
