package handlers

import (
	"testing"
	"time"
)

// waitBeat waits for b's next heartbeat and returns when it came.
func waitBeat(t *testing.T, b *beat) time.Time {
	t.Helper()
	select {
	case <-b.C():
		b.Next()
		return time.Now()
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat within 10s")
	}
	return time.Time{}
}

// TestBeatsComeEveryInterval: a stream's heartbeats come one interval
// apart, the first one interval after it joined (within one tick of the
// wheel), however many streams share the wheel.
func TestBeatsComeEveryInterval(t *testing.T) {
	const interval = 200 * time.Millisecond
	tick := max(interval/maxBeatSlots, minBeatTick)
	others := make([]func(), 0, 100)
	for range 100 {
		_, leave := joinBeats(interval)
		others = append(others, leave)
	}
	defer func() {
		for _, leave := range others {
			leave()
		}
	}()

	joined := time.Now()
	b, leave := joinBeats(interval)
	defer leave()
	prev := joined
	for i := range 3 {
		at := waitBeat(t, b)
		// Not early: a beat never comes sooner than one interval less one
		// tick. (A busy machine may make it late, so no upper bound.)
		if gap := at.Sub(prev); gap < interval-2*tick {
			t.Fatalf("beat %d came %v after the previous one, want about %v", i, gap, interval)
		}
		prev = at
	}
}

// TestWheelIsSharedAndStopsWithItsLastStream: streams with one interval
// share a wheel; the last one to leave stops its goroutine; another
// interval has its own wheel.
func TestWheelIsSharedAndStopsWithItsLastStream(t *testing.T) {
	const interval = 150 * time.Millisecond
	a, leaveA := joinBeats(interval)
	b, leaveB := joinBeats(interval)
	c, leaveC := joinBeats(2 * interval)
	if a.wheel != b.wheel {
		t.Fatal("two streams with one interval got different wheels")
	}
	if a.wheel == c.wheel {
		t.Fatal("streams with different intervals share a wheel")
	}
	w := a.wheel
	leaveA()
	leaveA() // a second call changes nothing
	select {
	case <-w.done:
		t.Fatal("wheel stopped while a stream still uses it")
	default:
	}
	waitBeat(t, b)
	leaveB()
	select {
	case <-w.done:
	default:
		t.Fatal("wheel's goroutine still running after its last stream left")
	}
	wheelsMu.Lock()
	_, kept := wheels[interval]
	wheelsMu.Unlock()
	if kept {
		t.Fatal("stopped wheel still registered")
	}
	// A stream joining later gets a new, running wheel.
	d, leaveD := joinBeats(interval)
	defer leaveD()
	if d.wheel == w {
		t.Fatal("joined a stopped wheel")
	}
	waitBeat(t, d)
	leaveC()
	waitBeatGone(t, c)
}

// waitBeatGone checks that c's wheel has stopped.
func waitBeatGone(t *testing.T, c *beat) {
	t.Helper()
	select {
	case <-c.wheel.done:
	default:
		t.Fatal("wheel still running after its only stream left")
	}
}

// TestBusyStreamKeepsItsBeat: a stream that is busy (not waiting) when its
// slot fires finds the beat on its next wait, late but not lost; a lost
// WebSocket ping would let the client's pong deadline expire.
func TestBusyStreamKeepsItsBeat(t *testing.T) {
	b, leave := joinBeats(100 * time.Millisecond)
	defer leave()
	waiting := b.round
	deadline := time.Now().Add(10 * time.Second)
	for b.wheel.slots[b.slot].Load() == waiting { // the slot fires meanwhile
		if time.Now().After(deadline) {
			t.Fatal("slot did not fire within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-b.C():
	default:
		t.Fatal("the beat that fired while the stream was busy is lost")
	}
	b.Next()
	if b.round == waiting {
		t.Fatal("Next did not move to the next round")
	}
}
