package hub

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestQueueGrowsOnDemandUpToItsLimit: an idle subscriber holds no ring; a
// burst grows it by doubling, never past the limit; once drained, a large
// ring is released and a small one kept.
func TestQueueGrowsOnDemandUpToItsLimit(t *testing.T) {
	const limit = 100
	h, _ := newTestHub(t, Options{Queue: limit})
	s := subscribe(t, h, "t")
	if n := len(s.queue.ring); n != 0 {
		t.Fatalf("idle subscriber holds a ring of %d slots, want none", n)
	}

	publish(t, h, "t", "")
	h.Head()
	if n := len(s.queue.ring); n != queueFirstRing {
		t.Fatalf("after one message: ring of %d slots, want %d", n, queueFirstRing)
	}
	recv(t, s)
	if n := len(s.queue.ring); n != queueFirstRing {
		t.Fatalf("drained small ring: %d slots, want it kept (%d)", n, queueFirstRing)
	}

	var published []string
	for range limit {
		published = append(published, publish(t, h, "t", ""))
		h.Head()
		if n := len(s.queue.ring); n > limit || n < s.Queued() {
			t.Fatalf("%d queued in a ring of %d slots (limit %d)", s.Queued(), n, limit)
		}
	}
	if n := len(s.queue.ring); n != limit {
		t.Fatalf("full queue: ring of %d slots, want the limit %d", n, limit)
	}
	var got []string
	for range limit {
		got = append(got, recv(t, s).ID)
	}
	if !slices.Equal(got, published) {
		t.Fatalf("queue order: got %v, want %v", got, published)
	}
	if n := len(s.queue.ring); n != 0 {
		t.Fatalf("drained large ring: %d slots, want it released", n)
	}
}

// TestQueueOrderAcrossWrapAndGrowth pushes and pops in uneven steps, so the
// ring wraps around and grows while wrapped.
func TestQueueOrderAcrossWrapAndGrowth(t *testing.T) {
	q := newQueue(1000)
	var next, want int
	msg := func(i int) *Message { return &Message{ID: strconv.Itoa(i)} }
	for round := range 60 {
		for range round%7 + 3 {
			if !q.push(msg(next)) {
				t.Fatalf("push %d refused with %d queued", next, q.len())
			}
			next++
		}
		for range round%5 + 1 {
			m, ok := q.pop()
			if !ok {
				break
			}
			if m.ID != strconv.Itoa(want) {
				t.Fatalf("popped %s, want %d", m.ID, want)
			}
			want++
		}
	}
	for m, ok := q.pop(); ok; m, ok = q.pop() {
		if m.ID != strconv.Itoa(want) {
			t.Fatalf("popped %s, want %d", m.ID, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("popped %d messages, pushed %d", want, next)
	}
}

// TestQueueReadyStaysSignalledWhileMessagesWait: a transport that takes
// one message per wake-up still finds Ready signalled for the rest.
func TestQueueReadyStaysSignalledWhileMessagesWait(t *testing.T) {
	q := newQueue(10)
	for i := range 3 {
		q.push(&Message{ID: strconv.Itoa(i)})
	}
	for i := range 3 {
		select {
		case <-q.ready:
		default:
			t.Fatalf("Ready not signalled with %d queued", 3-i)
		}
		if _, ok := q.pop(); !ok {
			t.Fatalf("pop %d: empty", i)
		}
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop from a drained queue returned a message")
	}
}

// TestSlowConsumerAfterGrowth: a queue that grew to its limit still ends
// its subscriber on the first message that does not fit, and keeps what
// did fit.
func TestSlowConsumerAfterGrowth(t *testing.T) {
	const limit = 300 // not a power of two: the last growth stops at it
	h, _ := newTestHub(t, Options{Queue: limit})
	slow := subscribe(t, h, "t")
	for range limit {
		publish(t, h, "t", "")
	}
	if err := slow.Err(); err != nil {
		t.Fatalf("subscriber with a full queue ended: %v", err)
	}
	publish(t, h, "t", "")
	if err := waitDone(t, slow); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Err() = %v, want ErrSlowConsumer", err)
	}
	if n := slow.Queued(); n != limit {
		t.Fatalf("slow subscriber kept %d messages, want %d", n, limit)
	}
	if st := h.Stats(); st.Dropped != limit+1 || st.SlowConsumers != 1 {
		t.Fatalf("Stats: dropped %d, slow consumers %d; want %d, 1", st.Dropped, st.SlowConsumers, limit+1)
	}
}

// stallFanOut makes the fan-out of topic "stall" wait until the returned
// release is called: Allow runs in the fan-out. It adds subscribers to
// "stall" enough for its fan-out to run on the hub's goroutine, not
// inline.
func stallFanOut(t *testing.T, h *Hub) (entered <-chan struct{}, release func()) {
	t.Helper()
	for range inlineFanOut {
		subscribe(t, h, "stall")
	}
	in, out := make(chan struct{}), make(chan struct{})
	var released bool
	allow := func(string) bool {
		select {
		case in <- struct{}{}:
			<-out
		case <-out:
		}
		return true
	}
	s, _, _, err := h.Subscribe(context.Background(), []string{"stall"}, "", Allow(allow))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	release = func() {
		if !released {
			released = true
			close(out)
		}
	}
	t.Cleanup(release)
	return in, release
}

// TestPublishDoesNotWaitForFanOut: Publish returns while the fan-out of
// its message is still under way, and the message still arrives.
func TestPublishDoesNotWaitForFanOut(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 10})
	entered, release := stallFanOut(t, h)
	id := publish(t, h, "stall", "")
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatal("the fan-out never started")
	}
	second := publish(t, h, "stall", "") // returns while the first is stuck
	release()
	s := subscribe(t, h, "other")
	if head := h.Head(); head != second {
		t.Fatalf("Head() = %s, want %s (after %s)", head, second, id)
	}
	assertNoMessage(t, s)
}

// TestPendingBoundSlowsPublishers: with the fan-out stuck, at most
// maxPending messages wait for it; the next publish waits for room. The
// age bound (PublishWait) is off: this is the count bound, which holds
// whatever the clock says.
func TestPendingBoundSlowsPublishers(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 10, PublishWait: -1})
	entered, release := stallFanOut(t, h)
	publish(t, h, "stall", "")
	<-entered
	for range maxPending {
		publish(t, h, "x", "")
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := h.Publish(context.Background(), Message{Topic: "x"})
		blocked <- err
	}()
	h.fan.mu.Lock()
	n := len(h.fan.pending) - h.fan.first
	h.fan.mu.Unlock()
	if n != maxPending {
		t.Fatalf("%d messages pending, want the bound %d", n, maxPending)
	}
	// The fan-out is stuck: the extra publish cannot have returned, now or
	// later, until it resumes.
	select {
	case err := <-blocked:
		t.Fatalf("publish returned (%v) with %d messages pending and the fan-out stuck", err, n)
	default:
	}
	release()
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("publish still waiting after the fan-out resumed")
	}
}

// TestSubscribeAfterPublishGetsOnlyLaterMessages: however far behind the
// fan-out is, a subscription begun after a publish returned never gets
// that message live, and gets the next one.
func TestSubscribeAfterPublishGetsOnlyLaterMessages(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 1000})
	for range 100 {
		subscribe(t, h, "t") // fan-out work to fall behind on
	}
	for i := range 100 {
		before := publish(t, h, "t", strconv.Itoa(i))
		s := subscribe(t, h, "t")
		if head := s.Head(); head != before {
			t.Fatalf("subscription %d: head %s, want %s", i, head, before)
		}
		after := publish(t, h, "t", "")
		if got := recv(t, s).ID; got != after {
			t.Fatalf("subscription %d: first message %s, want %s (published before: %s)", i, got, after, before)
		}
		s.Close()
	}
}

// TestOrderAcrossInlineAndQueuedFanOut: while the subscriptions to the
// topic cross inlineFanOut back and forth, messages are fanned out now on the
// publisher's goroutine, now on the hub's, and still arrive once each, in
// order.
func TestOrderAcrossInlineAndQueuedFanOut(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 1000})
	watcher := subscribe(t, h, "t")
	stop := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		var idle []*Subscriber
		for {
			select {
			case <-stop:
				for _, s := range idle {
					s.Close()
				}
				return
			default:
			}
			if len(idle) < inlineFanOut+8 {
				s, _, _, err := h.Subscribe(context.Background(), []string{"t"}, "")
				if err != nil {
					t.Error(err)
					return
				}
				idle = append(idle, s)
			} else {
				for _, s := range idle {
					s.Close()
				}
				idle = idle[:0]
			}
		}
	}()
	var published []string
	for i := range 500 {
		published = append(published, publish(t, h, "t", strconv.Itoa(i)))
	}
	close(stop)
	<-churned
	for i, id := range published {
		if got := recv(t, watcher).ID; got != id {
			t.Fatalf("message %d: got %s, want %s", i, got, id)
		}
	}
	assertNoMessage(t, watcher)
}

// TestFewMatchesFanOutInline: in a hub of many subscribers, each on a
// topic of its own, a publish is fanned out on the publisher's goroutine,
// not handed to the hub's: what decides is the subscriptions its topic
// matches, not the hub's size. Allow runs in the fan-out and says where.
func TestFewMatchesFanOutInline(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 10})
	for i := range 4 * inlineFanOut {
		subscribe(t, h, "user/"+strconv.Itoa(i))
	}
	var onHubGoroutine []bool
	allow := func(string) bool {
		pcs := make([]uintptr, 64)
		frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
		hubs := false
		for f, more := frames.Next(); more; f, more = frames.Next() {
			hubs = hubs || strings.HasSuffix(f.Function, ".(*Hub).runFanOut")
		}
		onHubGoroutine = append(onHubGoroutine, hubs)
		return true
	}
	s, _, _, err := h.Subscribe(context.Background(), []string{"user/me"}, "", Allow(allow))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	publish(t, h, "user/me", "hello")
	if m := recv(t, s); m.Data != "hello" {
		t.Fatalf("got %q, want hello", m.Data)
	}
	if !slices.Equal(onHubGoroutine, []bool{false}) {
		t.Fatalf("fanned out on the hub's goroutine: %v, want only on the publisher's", onHubGoroutine)
	}
}

// TestOnReadyNotifiesInsteadOfReady: a subscriber whose owner set OnReady
// is notified once at once, then on every queued message and when it ends,
// and its Ready channel stays empty.
func TestOnReadyNotifiesInsteadOfReady(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 10})
	s := subscribe(t, h, "t")
	notified := make(chan struct{}, 10)
	s.OnReady(func() { notified <- struct{}{} })
	expect := func(what string) {
		t.Helper()
		select {
		case <-notified:
		case <-time.After(5 * time.Second):
			t.Fatalf("no notification %s", what)
		}
	}
	expect("when OnReady was set")
	publish(t, h, "t", "one")
	expect("for a queued message")
	if m, ok := s.Next(); !ok || m.Data != "one" {
		t.Fatalf("Next() = %v, %v; want the message", m, ok)
	}
	h.Disconnect(ErrShutdown)
	expect("when the subscription ended")
	select {
	case <-s.Ready():
		t.Fatal("Ready signalled though OnReady was set")
	default:
	}
}
