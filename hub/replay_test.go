package hub

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedBroker holds every Since until release is closed, and records how
// many ran at once.
type gatedBroker struct {
	*MemoryBroker
	release       chan struct{}
	entered       chan struct{}
	running, peak atomic.Int32
}

func (b *gatedBroker) Since(ctx context.Context, q Query) (Page, error) {
	n := b.running.Add(1)
	defer b.running.Add(-1)
	for p := b.peak.Load(); n > p && !b.peak.CompareAndSwap(p, n); p = b.peak.Load() {
	}
	b.entered <- struct{}{}
	<-b.release
	return b.MemoryBroker.Since(ctx, q)
}

// However many clients resume at once, only a few history pages are read
// at a time; the others wait for a slot, and give up with their context.
func TestReplaysShareBoundedSlots(t *testing.T) {
	slots := max(2, runtime.GOMAXPROCS(0))
	b := &gatedBroker{MemoryBroker: NewMemoryBroker(Retention{Count: 10}), release: make(chan struct{}), entered: make(chan struct{}, 4*slots)}
	h := New(b, Options{Queue: 4, Retention: Retention{Count: 10}})
	t.Cleanup(func() { _ = h.Close() })
	brokerPublish(t, b, "t", 3)

	var wg sync.WaitGroup
	for range 3 * slots {
		wg.Go(func() {
			if _, err := h.History(context.Background(), Query{After: Earliest}); err != nil {
				t.Errorf("History: %v", err)
			}
		})
	}
	for range slots {
		select {
		case <-b.entered:
		case <-time.After(waitFor):
			t.Fatalf("fewer than %d replays started", slots)
		}
	}
	// One more waits for a slot: with a deadline it gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.History(ctx, Query{After: Earliest}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("History with every slot taken: %v, want the context's deadline", err)
	}
	close(b.release)
	wg.Wait()
	if p := b.peak.Load(); p != int32(slots) {
		t.Fatalf("%d replays read history at once, want %d", p, slots)
	}
}
