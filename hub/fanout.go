package hub

import (
	"sync"
	"sync/atomic"
	"time"
)

// The hub fans messages out on its own goroutine, so a publish returns once
// the broker has stored the message, instead of after it was queued for
// every subscriber (milliseconds with ten thousand of them, longer when the
// woken subscribers' goroutines get the CPU first). A message for few
// subscribers, with nothing pending, is fanned out on the publisher's
// goroutine, which is cheaper than the hand-over: what counts is the
// subscriptions its topic matches, not the hub's size, so that with
// thousands of topics of a few subscribers each no publish wakes the
// fan-out goroutine.
//
// Order and the resume guarantees do not change: the broker hands over
// messages in ID order; they wait in pending, and are taken from it and
// fanned out only with h.mu held, so in that order. Every hub call that
// reads or changes the subscriptions (Subscribe, SetFilters, Head, Stats,
// Disconnect) first fans out what is pending, so to it the hub looks as if
// delivery happened inside the broker's Publish: a subscription begun
// after a publish returned never gets that message live, and its head
// covers it.
const (
	// maxPending bounds the messages handed over and not yet fanned out;
	// past it the broker's deliver call waits, which slows publishers
	// down to the pace of the fan-out. It is the last resort: the bound
	// on the backlog's age (Options.PublishWait, backpressure.go) holds
	// publishers back first, before they store anything, unless a burst
	// hands over this many messages within PublishWait.
	maxPending = 4096
	// fanOutWork bounds the deliveries made per hold of h.mu (at least one
	// message is fanned out), so a Subscribe or a Close waits for a few
	// messages with few subscribers, or one with many, not a backlog.
	fanOutWork = 1024
	// inlineFanOut: a message whose topic matches at most this many
	// subscriptions, with nothing pending, is fanned out on the
	// publisher's goroutine: it takes microseconds, less than handing it
	// to the fan-out goroutine.
	inlineFanOut = 64
)

// fanout is the hub's fan-out goroutine and the messages waiting for it.
type fanout struct {
	// closed is set by Close, before it takes h.mu: Publish checks it
	// without waiting for the fan-out, which holds h.mu.
	closed atomic.Bool

	mu      sync.Mutex
	space   sync.Cond  // pending shrank or the fan-out stopped
	pending []*Message // pending[first:] wait, oldest first
	first   int
	stopped bool
	// room, when a publish waits for the backlog (waitBacklog), is closed
	// once the oldest pending message is young enough again, or the
	// fan-out stopped.
	room chan struct{}

	wake chan struct{} // a token when pending may hold messages
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the goroutine has returned; nil if never started
}

// startFanOut starts the fan-out goroutine; Start calls it once.
func (h *Hub) startFanOut() {
	f := &h.fan
	f.mu.Lock()
	defer f.mu.Unlock()
	f.space.L = &f.mu
	f.wake = make(chan struct{}, 1)
	f.stop = make(chan struct{})
	f.done = make(chan struct{})
	go h.runFanOut()
}

// stopFanOut stops the goroutine, waits for it, and drops what is
// pending; deliver drops every later message. Close calls it.
func (h *Hub) stopFanOut() {
	f := &h.fan
	f.mu.Lock()
	f.stopped = true
	f.pending, f.first = nil, 0
	f.openRoom()
	if f.space.L != nil {
		f.space.Broadcast()
	}
	done := f.done
	f.mu.Unlock()
	if done != nil {
		close(f.stop)
		<-done
	}
}

// deliver is the broker's callback: it hands m to the fan-out and returns,
// unless maxPending messages already wait. Signals (signal) come through
// it too, from another goroutine: messages handed over by one goroutine
// keep their order.
func (h *Hub) deliver(m *Message) {
	if m.frames == nil {
		m.frames = newFrames()
	}
	f := &h.fan
	f.mu.Lock()
	// With nothing pending and h.mu free, no earlier message is waiting
	// or being fanned out: m may go now, in order.
	if f.first == len(f.pending) && !f.stopped && h.mu.TryLock() {
		if h.subs <= inlineFanOut || h.index.count(m.Topic) <= inlineFanOut {
			f.mu.Unlock()
			h.fanOutLocked(m)
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
	}
	for len(f.pending)-f.first >= maxPending && !f.stopped {
		f.space.Wait()
	}
	if f.stopped {
		f.mu.Unlock()
		return
	}
	m.queued = clock()
	f.pending = append(f.pending, m)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (h *Hub) runFanOut() {
	f := &h.fan
	defer close(f.done)
	for {
		select {
		case <-f.wake:
		case <-f.stop:
			return
		}
		for more := true; more; {
			h.mu.Lock()
			for work := 0; work < fanOutWork; {
				var m *Message
				if m, more = h.takePending(); m == nil {
					break
				}
				work += 1 + h.fanOutLocked(m)
			}
			h.mu.Unlock()
		}
	}
}

// takePending removes and returns the oldest pending message (nil if none),
// and reports whether more wait. h.mu is held: messages are taken and
// fanned out in one hold of it, so in order.
func (h *Hub) takePending() (m *Message, more bool) {
	f := &h.fan
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.first == len(f.pending) {
		return nil, false
	}
	m = f.pending[f.first]
	f.pending[f.first] = nil
	f.first++
	switch {
	case f.first == len(f.pending):
		f.pending, f.first = f.pending[:0], 0
	case f.first >= maxPending:
		// Never drained while publishers keep up: move the rest to the
		// front, so the array stays within twice maxPending.
		n := copy(f.pending, f.pending[f.first:])
		clear(f.pending[n:])
		f.pending, f.first = f.pending[:n], 0
	}
	f.space.Broadcast()
	if f.room != nil && f.backlogAge(clock()) <= time.Duration(h.publishWait.Load()) {
		f.openRoom()
	}
	return m, f.first < len(f.pending)
}

// backlogAge is how long the oldest pending message has waited at now; 0
// when none waits. f.mu is held.
func (f *fanout) backlogAge(now time.Duration) time.Duration {
	if f.first == len(f.pending) {
		return 0
	}
	return now - f.pending[f.first].queued
}

// openRoom wakes the publishes waiting for the backlog. f.mu is held.
func (f *fanout) openRoom() {
	if f.room != nil {
		close(f.room)
		f.room = nil
	}
}

// catchUpLocked fans out the messages pending when it is called, not those
// that publishers add meanwhile (they come after the caller's view, and
// must not keep it waiting); h.mu is held.
func (h *Hub) catchUpLocked() {
	h.fan.mu.Lock()
	n := len(h.fan.pending) - h.fan.first
	h.fan.mu.Unlock()
	for range n {
		m, _ := h.takePending()
		if m == nil {
			return // Close dropped them
		}
		h.fanOutLocked(m)
	}
}

// fanOutLocked queues m for every matching subscriber without ever
// blocking on one, and returns how many it was queued for. A subscriber
// whose queue is full is ended with ErrSlowConsumer. A signal (no ID) is
// outside the ID order: it moves neither the head nor a subscriber's
// resume position. h.mu is held.
func (h *Hub) fanOutLocked(m *Message) int {
	signal := m.ID == ""
	if !signal {
		h.head = m.ID
	}
	h.round++
	var slow []*Subscriber
	var queued uint64
	h.index.match(m.Topic, func(s *Subscriber) {
		if s.round == h.round {
			return
		}
		s.round = h.round
		if s.allow != nil && !s.allow(m.Topic) {
			return
		}
		if s.after != "" && !signal {
			if !h.broker.(Sequencer).After(m.ID, s.after) {
				return // the subscriber resumed from a later ID: it has this one
			}
			s.after = ""
		}
		if s.queue.push(m) {
			queued++
		} else {
			slow = append(slow, s)
		}
	})
	h.obs.delivered.Add(queued)
	for _, s := range slow {
		h.overflowed(s)
		h.removeLocked(s)
		s.end(ErrSlowConsumer)
	}
	return int(queued)
}
