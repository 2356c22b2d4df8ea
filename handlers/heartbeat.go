package handlers

import (
	"sync"
	"sync/atomic"
	"time"
)

// Heartbeats (SSE comments, WebSocket pings) come from a wheel shared by
// every stream with the same interval, instead of a time.Ticker per
// stream: a ticker costs each stream a runtime timer and a channel, and
// each tick a timer-heap update. A wheel has up to maxBeatSlots slots and
// one goroutine that, every interval/slots, wakes the streams of the next
// slot by closing its channel. A stream joins the slot that fires one full
// interval later, so its beats come every interval, and the streams' beats
// are spread over the interval rather than all at once.
const (
	maxBeatSlots = 64
	minBeatTick  = 10 * time.Millisecond
)

// beatWheel is the wheel of one interval. Its goroutine runs while streams
// use it: the first stream to join starts it, the last to leave stops it.
type beatWheel struct {
	slots []atomic.Pointer[beatSlot]
	next  atomic.Int64 // the slot that fires next
	users int          // guarded by wheelsMu
	stop  chan struct{}
	done  chan struct{}
}

// beatSlot is one round of a slot: closed when the slot fires, then
// replaced by the next round.
type beatSlot struct{ c chan struct{} }

var (
	wheelsMu sync.Mutex
	wheels   = map[time.Duration]*beatWheel{}
)

// beat is a stream's place on a wheel. Only its stream uses it.
type beat struct {
	wheel *beatWheel
	slot  int
	round *beatSlot // the round the stream waits for
}

// C returns a channel closed at the stream's next heartbeat: after it is
// closed, call Next. A stream busy when its slot fires finds the channel
// closed on its next wait: late, its heartbeat is never lost.
func (b *beat) C() <-chan struct{} { return b.round.c }

// Next moves the stream to its slot's next round, after a heartbeat.
func (b *beat) Next() { b.round = b.wheel.slots[b.slot].Load() }

// joinBeats returns the heartbeat of a new stream, and leave, which the
// stream calls once when it ends.
func joinBeats(interval time.Duration) (*beat, func()) {
	wheelsMu.Lock()
	defer wheelsMu.Unlock()
	w := wheels[interval]
	if w == nil {
		w = startWheel(interval)
		wheels[interval] = w
	}
	w.users++
	n := int64(len(w.slots))
	slot := int((w.next.Load() + n - 1) % n) // just fired: next fires in one interval
	var once sync.Once
	b := &beat{wheel: w, slot: slot}
	b.Next()
	return b, func() { once.Do(func() { w.leave(interval) }) }
}

func (w *beatWheel) leave(interval time.Duration) {
	wheelsMu.Lock()
	w.users--
	last := w.users == 0
	if last {
		delete(wheels, interval)
	}
	wheelsMu.Unlock()
	if last {
		close(w.stop)
		<-w.done
	}
}

func startWheel(interval time.Duration) *beatWheel {
	n := int(min(maxBeatSlots, max(1, interval/minBeatTick)))
	w := &beatWheel{
		slots: make([]atomic.Pointer[beatSlot], n),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	for i := range w.slots {
		w.slots[i].Store(&beatSlot{c: make(chan struct{})})
	}
	go w.run(interval / time.Duration(n))
	return w
}

func (w *beatWheel) run(tick time.Duration) {
	defer close(w.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		i := w.next.Load()
		old := w.slots[i].Swap(&beatSlot{c: make(chan struct{})})
		w.next.Store((i + 1) % int64(len(w.slots)))
		close(old.c)
	}
}
