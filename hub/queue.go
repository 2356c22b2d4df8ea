package hub

import (
	"sync"
	"sync/atomic"
)

// Ring sizes of a subscriber's queue: the first message allocates
// queueFirstRing slots; the ring doubles as needed up to the queue's limit;
// once drained, a ring larger than queueKeepRing is released. An idle
// subscriber holds no ring at all, one that gets a message now and then a
// small one, and only a subscriber that falls behind a burst holds up to
// its limit, for as long as it is behind.
const (
	queueFirstRing = 8
	queueKeepRing  = 64
)

// queue is a subscriber's bounded FIFO of live messages, filled by the
// hub's fan-out and drained by the subscriber's transport.
type queue struct {
	mu    sync.Mutex
	ring  []*Message
	head  int // index of the oldest message in ring
	n     int // messages queued
	limit int // most messages queued at once

	// ready holds a token whenever messages are queued (and may hold a
	// stale one when none are): a transport waits on it instead of on a
	// channel of messages, which would need its full capacity allocated
	// up front.
	ready chan struct{}
	// notify, when set (Subscriber.OnReady), is called instead of
	// leaving a token in ready.
	notify atomic.Pointer[func()]
}

func newQueue(limit int) queue {
	return queue{limit: max(1, limit), ready: make(chan struct{}, 1)}
}

// push appends m; it reports false, changing nothing, when limit messages
// are already queued.
func (q *queue) push(m *Message) bool {
	q.mu.Lock()
	if q.n >= q.limit {
		q.mu.Unlock()
		return false
	}
	if q.n == len(q.ring) {
		q.grow()
	}
	i := q.head + q.n
	if i >= len(q.ring) {
		i -= len(q.ring)
	}
	q.ring[i] = m
	q.n++
	q.mu.Unlock()
	q.signal()
	return true
}

func (q *queue) grow() {
	size := min(q.limit, max(queueFirstRing, 2*len(q.ring)))
	ring := make([]*Message, size)
	for i := range q.n {
		j := q.head + i
		if j >= len(q.ring) {
			j -= len(q.ring)
		}
		ring[i] = q.ring[j]
	}
	q.ring, q.head = ring, 0
}

// pop removes and returns the oldest message, if any.
func (q *queue) pop() (*Message, bool) {
	var one [1]*Message
	if got := q.take(one[:0]); len(got) == 1 {
		return got[0], true
	}
	return nil, false
}

// take moves queued messages, oldest first, to dst, up to its capacity,
// in one hold of the lock.
func (q *queue) take(dst []*Message) []*Message {
	q.mu.Lock()
	for q.n > 0 && len(dst) < cap(dst) {
		dst = append(dst, q.ring[q.head])
		q.ring[q.head] = nil
		q.head++
		if q.head == len(q.ring) {
			q.head = 0
		}
		q.n--
	}
	more := q.n > 0
	if !more {
		q.head = 0
		if len(q.ring) > queueKeepRing {
			q.ring = nil
		}
	}
	q.mu.Unlock()
	if more {
		// A transport that takes fewer than all still finds a token.
		q.signal()
	}
	return dst
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// signal calls notify, or else leaves a token in ready, if there is none.
func (q *queue) signal() {
	if f := q.notify.Load(); f != nil {
		(*f)()
		return
	}
	select {
	case q.ready <- struct{}{}:
	default:
	}
}
