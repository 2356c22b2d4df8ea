package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Subscriber receives the live messages matching its filters through a
// bounded queue. Its owner (a transport) waits on Ready and takes them with
// Next until Done is closed, then asks Err why.
type Subscriber struct {
	hub     *Hub
	filters []string
	queue   queue
	done    chan struct{}
	head    string

	endOnce sync.Once
	err     error

	// Guarded by hub.mu.
	round   uint64
	removed bool
	after   string // resumed from this ID: live messages up to it are not queued (Sequencer)
	client  Client // who subscribed, for counts and presence (stats.go)
	seq     uint64 // the subscription's number in the hub, for presence
	// announced is what presence last told watchers the subscription
	// holds: its filters but "$" ones (presence.go).
	announced []string

	// allow, when set, keeps out topics the filters match (Allow).
	allow func(topic string) bool
	// subject is who subscribed, as the transport knows them (Subject).
	subject string
	// tag is its owner's value for watchers (Tag, watch.go).
	tag any
	// claims is its token's payload, whose chosen claims presence shows
	// (Claims, who.go).
	claims []byte

	// replay is the history still to send from Subscribe; nil when done.
	// Only the owner uses it.
	replay *Query
	page   int // messages per page of replay; 0 for ReplayPage
}

// Replaying reports whether the history Subscribe began to return goes on:
// the owner sends what it has and calls Replay for the next page.
func (s *Subscriber) Replaying() bool { return s.replay != nil }

// Replay returns the next page of the history the subscription resumes
// with (the first comes from Subscribe), and a Gap if the history moved on
// past where the previous page ended. It returns nothing once Replaying
// is false. Only the owner may call it.
func (s *Subscriber) Replay(ctx context.Context) ([]*Message, *Gap, error) {
	if s.replay == nil {
		return nil, nil, nil
	}
	page, err := s.hub.History(ctx, *s.replay)
	if err != nil {
		return nil, nil, err
	}
	if page.More && len(page.Messages) > 0 {
		s.replay.Next(page)
	} else {
		s.replay = nil
	}
	return page.Messages, page.Gap, nil
}

// Ready returns a channel that holds a value whenever messages are queued,
// and also when the subscription ends: after receiving from it, take the
// messages with Next until it reports none, and check Done. It may hold a
// value when nothing is queued. It is never closed.
func (s *Subscriber) Ready() <-chan struct{} { return s.queue.ready }

// OnReady makes the hub call notify, instead of signalling Ready, whenever
// messages are queued and when the subscription ends; it calls it once at
// once, for what came before. A transport that serves many subscribers
// from a few goroutines uses it to learn which has something, without a
// goroutine waiting on each Ready. notify runs in the hub's fan-out, under
// its lock: it must return at once and must not call the hub. Only the
// owner may call OnReady.
func (s *Subscriber) OnReady(notify func()) {
	s.queue.notify.Store(&notify)
	notify()
}

// Next removes and returns the oldest queued message; ok is false when none
// is queued. The queue keeps what the hub queued before the subscription
// ended, so a transport can still send it.
func (s *Subscriber) Next() (m *Message, ok bool) { return s.queue.pop() }

// Take moves queued messages, oldest first, to dst, up to its capacity, and
// returns it: a transport takes a burst at once.
func (s *Subscriber) Take(dst []*Message) []*Message { return s.queue.take(dst) }

// Queued returns how many messages are queued.
func (s *Subscriber) Queued() int { return s.queue.len() }

// Done is closed when the subscription ends, by Close or by the hub.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Err returns why the subscription ended (nil after Close or while it
// runs).
func (s *Subscriber) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Head returns the ID of the last message the hub delivered before this
// subscription began ("" if none): every later one comes through Messages.
func (s *Subscriber) Head() string { return s.head }

// Filters returns the subscription's filters. Only the subscription's
// owner may call it, as it is the only one that changes them (SetFilters).
func (s *Subscriber) Filters() []string { return s.filters }

// SetFilters replaces the subscription's filters in one step: the hub
// queued the messages up to head (the last it delivered) by the old
// filters and every later one by the new, so a topic kept across the
// change loses and repeats nothing, and a message matching several filters
// is still queued once. queued is how many messages were waiting in the
// queue at that moment: the owner reads those first to know where the new
// filters begin. Options (Allow) replace the ones given before; without
// any, they stay. Only the owner may call it.
func (s *Subscriber) SetFilters(filters []string, opts ...SubscribeOption) (head string, queued int, err error) {
	if len(filters) == 0 {
		return "", 0, fmt.Errorf("%w: no topic", ErrInvalidTopic)
	}
	for _, f := range filters {
		if err := ValidateFilter(f); err != nil {
			return "", 0, err
		}
	}
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.catchUpLocked()
	if s.removed {
		return "", 0, errors.New("subscription ended")
	}
	old := s.filters
	for _, f := range old {
		h.index.remove(f, s)
	}
	for _, f := range filters {
		h.index.add(f, s)
	}
	s.filters = filters
	h.refiltered(s, old)
	for _, o := range opts {
		o(s)
	}
	return h.head, s.queue.len(), nil
}

// Close ends the subscription and removes it from the hub at once.
func (s *Subscriber) Close() {
	s.hub.mu.Lock()
	s.hub.removeLocked(s)
	s.hub.mu.Unlock()
	s.end(nil)
}

func (s *Subscriber) end(reason error) {
	s.endOnce.Do(func() {
		s.err = reason
		close(s.done)
		s.queue.signal()
	})
}

func (s *Subscriber) matches(topic string) bool {
	if s.allow != nil && !s.allow(topic) {
		return false
	}
	for _, f := range s.filters {
		if Match(f, topic) {
			return true
		}
	}
	return false
}

// SubscribeOption adjusts a subscription: see Hub.Subscribe and
// Subscriber.SetFilters.
type SubscribeOption func(*Subscriber)

// ReplayLimit makes Subscribe and Replay return pages of at most n
// messages instead of ReplayPage: a transport that sends at most n at once
// (a long-poll answer) reads no more. It applies to Subscribe only.
func ReplayLimit(n int) SubscribeOption {
	return func(s *Subscriber) { s.page = n }
}

// Subject records who subscribed (a token's sub claim), so that the
// server can end that subject's subscriptions (Hub.DisconnectMatching).
func Subject(sub string) SubscribeOption {
	return func(s *Subscriber) { s.subject = sub }
}

// Allow keeps a subscription to the topics allow accepts, whatever its
// filters match: live messages and the history Subscribe returns. A client
// whose token grants only some topics gets it, so a wildcard filter never
// delivers a topic outside the grant, on any transport. allow runs in the
// hub's fan-out, under its lock: it must be fast and must not call the hub.
// Allow(nil) removes the check.
func Allow(allow func(topic string) bool) SubscribeOption {
	return func(s *Subscriber) { s.allow = allow }
}
