package hub

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a subscription ends, as seen by Subscriber.Err.
var (
	ErrSlowConsumer = errors.New("slow consumer: queue overflow")
	ErrHubClosed    = errors.New("hub closed")
	ErrShutdown     = errors.New("server shutting down")
	// ErrMessagesLost ends the subscriptions of a hub whose broker lost
	// messages (LossReporter): resuming tells each client with a gap.
	ErrMessagesLost = errors.New("the broker lost messages: resume from your last ID")
	// ErrDisconnected ends the subscriptions the server's operator
	// disconnects (DisconnectMatching).
	ErrDisconnected = errors.New("disconnected by the server")
)

// Hub fans the messages of one broker out to local subscribers. Every
// message reaches each subscriber whose filters match it, once, in ID order.
type Hub struct {
	broker Broker
	queue  atomic.Int64 // per-subscriber queue capacity for new subscribers

	startOnce sync.Once
	startErr  error

	mu     sync.Mutex
	index  index
	head   string // ID of the last message delivered
	round  uint64 // fan-out counter, dedupes overlapping filters
	subs   int
	closed bool

	obs observed // counts for stats and metrics; presence (stats.go)

	fan fanout // the fan-out goroutine and the messages waiting for it (fanout.go)

	admission admission // subscriber connections let in (limits.go)

	// publishWait (a time.Duration) and rates hold back publishers when
	// the fan-out falls behind or one publishes too fast (backpressure.go).
	publishWait atomic.Int64
	rates       rates

	once onceCache // idempotency keys, for a broker that is no OncePublisher (once.go)

	// replays holds a slot per history page being read: with one replay
	// at a time per connection, this bounds the CPU and memory resumes
	// take however many clients resume at once.
	replays chan struct{}
}

// Options configure a hub; they can change while it runs (SetOptions).
type Options struct {
	Queue     int // per-subscriber queue capacity, > 0
	Retention Retention
	// Presence sends an event (a signal, not a stored message) to
	// $pubsub/subscribe or $pubsub/unsubscribe when a subscription
	// begins, changes or ends (presence.go).
	Presence bool
	// PresenceClaims names the token claims that presence shows beside
	// an identity's sub (who.go); no other claim is kept.
	PresenceClaims []string
	// MaxSubscribers caps the subscriber connections Admit lets in at
	// once; 0 means no cap (limits.go).
	MaxSubscribers int
	// MaxPerClient caps the subscriber connections Admit lets in at once
	// from one client address; 0 means no cap.
	MaxPerClient int
	// PublishWait bounds the fan-out's backlog by age: once the oldest
	// message waiting for it is older, a publish waits for it to catch
	// up, at most PublishWait, then fails with ErrOverloaded. 0 means
	// DefaultPublishWait; negative, no bound.
	PublishWait time.Duration
	// PublishRate is the messages a second each publisher (WithPublisher)
	// may publish, PublishBurst the most at once (at least 1); over it a
	// publish fails with ErrRateLimited. 0 means no limit.
	PublishRate  float64
	PublishBurst int
}

// New returns a hub on broker. The broker starts with the hub's first
// Start, Publish or Subscribe, so a hub that is only provisioned (as by
// `caddy validate`) opens no connection.
func New(broker Broker, opts Options) *Hub {
	h := &Hub{broker: broker, replays: make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))}
	h.SetOptions(opts)
	return h
}

// Start starts the broker, once; later calls return the first result.
func (h *Hub) Start() error {
	h.startOnce.Do(func() {
		h.startFanOut()
		if lr, ok := h.broker.(LossReporter); ok {
			lr.OnLoss(func() { h.Disconnect(ErrMessagesLost) })
		}
		if err := h.broker.Start(h.deliver); err != nil {
			h.startErr = fmt.Errorf("starting broker: %w", err)
			return
		}
		if sig, ok := h.broker.(Signaler); ok {
			if err := sig.StartSignals(h.signal); err != nil {
				h.startErr = fmt.Errorf("starting broker signals: %w", err)
			}
		}
	})
	return h.startErr
}

// SetOptions applies new options: the queue size to subscribers that come
// after, retention and presence at once.
func (h *Hub) SetOptions(opts Options) {
	h.queue.Store(int64(max(1, opts.Queue)))
	h.broker.SetRetention(opts.Retention)
	h.obs.opts.Store(&opts)
	h.admission.setLimits(opts)
	h.publishWait.Store(int64(publishWaitOf(opts)))
	h.rates.setLimits(opts)
	h.setPresence(opts.Presence)
}

// Publish validates the topics and event names of msgs, publishes them
// atomically in order, and returns their IDs. That the data is UTF-8 is
// for the edge that takes it to check (ValidateMessage), once: brokers
// check it again only on what they read back.
func (h *Hub) Publish(ctx context.Context, msgs ...Message) ([]string, error) {
	return h.publish(ctx, msgs, func() ([]string, bool, error) {
		ids, err := h.broker.Publish(ctx, msgs)
		return ids, true, err
	})
}

// publish checks msgs and the hub, then stores them with store, which
// says whether it stored them or answered a repeated idempotency key.
func (h *Hub) publish(ctx context.Context, msgs []Message, store func() ([]string, bool, error)) ([]string, error) {
	for _, m := range msgs {
		if err := ValidateTopic(m.Topic); err != nil {
			return nil, err
		}
		if err := ValidateEvent(m.Event); err != nil {
			return nil, err
		}
	}
	if h.fan.closed.Load() {
		return nil, ErrHubClosed
	}
	if err := h.Start(); err != nil {
		return nil, err
	}
	if err := h.admitPublish(ctx, len(msgs)); err != nil {
		return nil, err
	}
	ids, stored, err := store()
	if err == nil && stored {
		h.obs.published.Add(uint64(len(ids)))
	}
	return ids, err
}

// Subscribe registers a subscriber for filters. With lastID set it also
// returns the first page of the retained messages after lastID (Earliest:
// all retained) that match the filters, and a Gap when history no longer
// covers lastID; when Subscriber.Replaying says more remain, the transport
// sends this page and asks for the next with Subscriber.Replay. Live
// messages follow on Subscriber.Messages with none lost or repeated between
// the two. Options (Allow) apply to both.
func (h *Hub) Subscribe(ctx context.Context, filters []string, lastID string, opts ...SubscribeOption) (*Subscriber, []*Message, *Gap, error) {
	if len(filters) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: no topic", ErrInvalidTopic)
	}
	for _, f := range filters {
		if err := ValidateFilter(f); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := h.Start(); err != nil {
		return nil, nil, nil, err
	}
	s := &Subscriber{
		hub:     h,
		filters: filters,
		queue:   newQueue(int(h.queue.Load())),
		done:    make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if _, ok := h.broker.(Sequencer); ok && lastID != Earliest {
		s.after = lastID
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, nil, nil, ErrHubClosed
	}
	h.catchUpLocked()
	for _, f := range filters {
		h.index.add(f, s)
	}
	h.subs++
	h.joined(ctx, s)
	upto := h.head
	s.head = upto
	h.mu.Unlock()

	if lastID == "" {
		return s, nil, nil, nil
	}
	s.replay = &Query{After: lastID, Upto: upto, Match: s.matches, Limit: s.page}
	backlog, gap, err := s.Replay(ctx)
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	return s, backlog, gap, nil
}

// History returns a page of the retained messages q asks for (see
// Broker.Since). A transport reads history page by page, each page's last
// ID the next one's After, and sends each before it reads the next.
// Replays wait for one of a bounded number of slots, so however many
// clients resume at once, only a few read history at a time. A page with a
// Gap counts in Stats.Gaps: the caller is to hand it on to a client (a
// query from Earliest never gets one).
func (h *Hub) History(ctx context.Context, q Query) (Page, error) {
	if err := h.Start(); err != nil {
		return Page{}, err
	}
	select {
	case h.replays <- struct{}{}:
	case <-ctx.Done():
		return Page{}, fmt.Errorf("reading history: %w", ctx.Err())
	}
	page, err := h.broker.Since(ctx, q)
	<-h.replays
	if err != nil {
		return Page{}, fmt.Errorf("reading history: %w", err)
	}
	if page.Gap != nil {
		h.obs.gaps.Add(1)
	}
	return page, nil
}

// StoredHead returns the ID of the last message the broker kept from
// before it started delivering (a shared or durable history; "" if none),
// without reading the history: the cursor of a client that starts before
// the hub delivered anything.
func (h *Hub) StoredHead(ctx context.Context) (string, error) {
	if err := h.Start(); err != nil {
		return "", err
	}
	id, err := h.broker.Head(ctx)
	if err != nil {
		return "", fmt.Errorf("reading history: %w", err)
	}
	return id, nil
}

// Head returns the ID of the last message the hub delivered ("" if none
// since it started).
func (h *Hub) Head() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.catchUpLocked()
	return h.head
}

// Subscribers returns the number of current subscribers.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs
}

// Disconnect ends every current subscription with reason; the hub keeps
// running and accepts new ones.
func (h *Hub) Disconnect(reason error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.catchUpLocked() // what was published before goes out first
	h.disconnectLocked(reason)
}

// DisconnectMatching ends with reason every current subscription that a
// message on topic would reach (its filters, and its Allow, accept the
// topic) and that subject made (Subject), and returns how many it ended.
// An empty topic or subject matches every subscription; both empty is an
// error. What was published before goes out first.
func (h *Hub) DisconnectMatching(topic, subject string, reason error) (int, error) {
	if topic == "" && subject == "" {
		return 0, errors.New("name a topic, a subject or both")
	}
	if topic != "" {
		if err := ValidateTopic(topic); err != nil {
			return 0, err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.catchUpLocked()
	var hit []*Subscriber
	seen := make(map[*Subscriber]bool)
	visit := func(s *Subscriber) {
		if !seen[s] && (subject == "" || s.subject == subject) && (topic == "" || s.allow == nil || s.allow(topic)) {
			seen[s] = true
			hit = append(hit, s)
		}
	}
	if topic != "" {
		h.index.match(topic, visit)
	} else {
		h.index.root.walk(visit)
	}
	n := 0
	for _, s := range hit {
		if h.removeLocked(s) {
			s.end(reason)
			n++
		}
	}
	return n, nil
}

// Close ends every subscription with ErrHubClosed and closes the broker.
func (h *Hub) Close() error {
	// A hub closed before it started never starts its broker; one starting
	// now finishes starting first.
	h.startOnce.Do(func() { h.startErr = ErrHubClosed })
	h.fan.closed.Store(true)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.disconnectLocked(ErrHubClosed)
	h.mu.Unlock()
	h.stopFanOut()
	h.stopPresence()
	h.stopOccupancy()
	h.stopShare()
	return h.broker.Close()
}

func (h *Hub) disconnectLocked(reason error) {
	h.endIdle(reason)
	var all []*Subscriber
	h.index.root.walk(func(s *Subscriber) { all = append(all, s) })
	for _, s := range all {
		if h.removeLocked(s) {
			s.end(reason)
		}
	}
}

// removeLocked takes s out of the index; it reports false if s was already
// out.
func (h *Hub) removeLocked(s *Subscriber) bool {
	if s.removed {
		return false
	}
	s.removed = true
	for _, f := range s.filters {
		h.index.remove(f, s)
	}
	h.subs--
	h.left(s)
	return true
}
