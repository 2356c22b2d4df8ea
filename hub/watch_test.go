package hub

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// occupancyLog records what a watcher is told, in order.
type occupancyLog struct {
	mu     sync.Mutex
	events []string
	more   chan struct{}
}

func newOccupancyLog() *occupancyLog { return &occupancyLog{more: make(chan struct{}, 1000)} }

func (l *occupancyLog) watcher() *Watcher {
	return &Watcher{
		Changed: func(c Change) {
			l.add(fmt.Sprintf("change %v+%v-%v", c.Tag, c.Added, c.Removed))
		},
		Occupancy: func(f string, occupied bool) {
			if occupied {
				l.add("occupied " + f)
			} else {
				l.add("vacated " + f)
			}
		},
	}
}

func (l *occupancyLog) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	l.more <- struct{}{}
}

// expect waits for the events to come, in order, and nothing else.
func (l *occupancyLog) expect(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		l.mu.Lock()
		got := slices.Clone(l.events)
		l.mu.Unlock()
		if len(got) >= len(want) {
			if !slices.Equal(got, want) {
				t.Fatalf("watcher told\n%q\nwant\n%q", got, want)
			}
			l.mu.Lock()
			l.events = nil
			l.mu.Unlock()
			return
		}
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("watcher told %q, want %q", got, want)
		}
	}
}

// A filter is occupied by its first subscription and vacated by its last,
// through subscribe, SetFilters and Close alike; long-polls (Quiet) and
// "$" filters are not watched.
func TestWatchFirstInLastOut(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 8})
	log := newOccupancyLog()
	stop := h.Watch(log.watcher())

	one, _, _, err := h.Subscribe(context.Background(), []string{"a", "b"}, "", Tag("one"))
	if err != nil {
		t.Fatal(err)
	}
	log.expect(t, "change one+[a b]-[]", "occupied a", "occupied b")
	two := subscribe(t, h, "a", "$pubsub/#")
	log.expect(t, "change <nil>+[a]-[]")
	quiet, _, _, err := h.Subscribe(WithClient(context.Background(), Client{Transport: "poll", Quiet: true}), []string{"q"}, "")
	if err != nil {
		t.Fatal(err)
	}
	quiet.Close()
	if _, _, err := one.SetFilters([]string{"c", "a"}); err != nil {
		t.Fatal(err)
	}
	log.expect(t, "change one+[c]-[b]", "occupied c", "vacated b")
	one.Close()
	log.expect(t, "change one+[]-[c a]", "vacated c")
	stop()
	two.Close()
	if _, _, _, err := h.Subscribe(context.Background(), []string{"d"}, "", Tag("three")); err != nil {
		t.Fatal(err)
	}
	log.expect(t)
}

// sharedOccupier is an Occupier of several hubs, standing for the count a
// Redis keeps for the instances sharing it.
type sharedOccupier struct {
	mu    sync.Mutex
	count map[string]int
}

type instance struct {
	*MemoryBroker
	shared *sharedOccupier
	held   map[string]bool
}

func (b *instance) StartOccupancy(func(string), func()) error { return nil }

func (b *instance) Occupy(_ context.Context, f string, occupied bool) (bool, error) {
	s := b.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.held[f] == occupied {
		return false, nil
	}
	b.held[f] = occupied
	if occupied {
		s.count[f]++
		return s.count[f] == 1, nil
	}
	s.count[f]--
	return s.count[f] == 0, nil
}

// With an Occupier broker, each hub tells its watchers only of the
// transitions that cross zero across the hubs sharing it, and a hub that
// starts counting late counts what it already has.
func TestWatchAcrossInstances(t *testing.T) {
	shared := &sharedOccupier{count: map[string]int{}}
	hubs := make([]*Hub, 2)
	logs := make([]*occupancyLog, 2)
	for i := range hubs {
		hubs[i] = New(&instance{MemoryBroker: NewMemoryBroker(Retention{}), shared: shared, held: map[string]bool{}}, Options{Queue: 8})
		t.Cleanup(func() { _ = hubs[i].Close() })
		logs[i] = newOccupancyLog()
	}
	early := subscribe(t, hubs[0], "a")
	stops := make([]func(), 2)
	for i := range hubs {
		stops[i] = hubs[i].Watch(&Watcher{Occupancy: logs[i].watcher().Occupancy})
	}
	logs[0].expect(t, "occupied a")
	s1 := subscribe(t, hubs[1], "a", "b")
	hubs[1].flushOccupancy() // both counted, in whichever order
	logs[1].expect(t, "occupied b")
	early.Close()
	// Stopping a watcher waits until its hub has counted what came
	// before: the first hub's end of "a" is in before the second's.
	stops[0]()
	s1.Close()
	logs[1].expect(t, "vacated a", "vacated b")
	logs[0].expect(t)
}
