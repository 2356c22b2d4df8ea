package hub

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBrokerStartsLazilyOnce(t *testing.T) {
	b := &spyBroker{MemoryBroker: NewMemoryBroker(Retention{})}
	h := New(b, Options{Queue: 4})
	defer h.Close()
	if n := b.starts.Load(); n != 0 {
		t.Fatalf("New started the broker %d times, want it to wait for first use", n)
	}
	s := subscribe(t, h, "t")
	id := publish(t, h, "t", "")
	if m := recv(t, s); m.ID != id {
		t.Fatalf("got %s, want %s", m.ID, id)
	}
	if err := h.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if n := b.starts.Load(); n != 1 {
		t.Fatalf("broker started %d times, want once", n)
	}
}

func TestBrokerStartFailure(t *testing.T) {
	b := &spyBroker{MemoryBroker: NewMemoryBroker(Retention{}), startErr: errSpy}
	h := New(b, Options{Queue: 4})
	defer h.Close()
	if err := h.Start(); !errors.Is(err, errSpy) {
		t.Fatalf("Start = %v, want an error wrapping %v", err, errSpy)
	}
	if _, err := h.Publish(context.Background(), Message{Topic: "t"}); !errors.Is(err, errSpy) {
		t.Fatalf("Publish = %v, want the start error", err)
	}
	if s, _, _, err := h.Subscribe(context.Background(), []string{"t"}, ""); !errors.Is(err, errSpy) || s != nil {
		t.Fatalf("Subscribe = %v, %v; want the start error", s, err)
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d, want 0", n)
	}
	if n := b.starts.Load(); n != 1 {
		t.Fatalf("broker Start called %d times, want once: the first result stands", n)
	}
}

// TestClosedHubNeverStartsBroker: a hub provisioned and then cleaned up
// without use (a config reload that never served a request) must not start
// its broker afterwards, which for a networked broker would open a
// connection nobody closes.
func TestClosedHubNeverStartsBroker(t *testing.T) {
	b := &spyBroker{MemoryBroker: NewMemoryBroker(Retention{})}
	h := New(b, Options{Queue: 4})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(context.Background(), Message{Topic: "t"}); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Publish after Close = %v, want ErrHubClosed", err)
	}
	if _, _, _, err := h.Subscribe(context.Background(), []string{"t"}, ""); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrHubClosed", err)
	}
	if n := b.starts.Load(); n != 0 {
		t.Fatalf("broker started %d times after the hub closed, want never", n)
	}
}

func TestPublishSubscribeInOrder(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 64})
	if head := h.Head(); head != "" {
		t.Fatalf("Head() of a new hub = %q, want empty", head)
	}
	s := subscribe(t, h, "chat/room")
	other := subscribe(t, h, "chat/other")

	var want []string
	for i := range 50 {
		got, err := h.Publish(context.Background(), Message{Topic: "chat/room", Event: "say", Data: strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, got[0])
	}
	for i, id := range want {
		m := recv(t, s)
		if m.ID != id || m.Topic != "chat/room" || m.Event != "say" || m.Data != strconv.Itoa(i) || m.Time.IsZero() {
			t.Fatalf("message %d = %+v, want ID %s, topic chat/room, event say, data %d, a time", i, *m, id, i)
		}
	}
	assertNoMessage(t, s)
	assertNoMessage(t, other)
	if head := h.Head(); head != want[len(want)-1] {
		t.Fatalf("Head() = %q, want the last published ID %q", head, want[len(want)-1])
	}
}

func TestPublishBatchInOrder(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 8})
	s := subscribe(t, h, "#")
	got, err := h.Publish(context.Background(), Message{Topic: "a"}, Message{Topic: "b"}, Message{Topic: "a/c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Publish returned %d IDs, want 3", len(got))
	}
	for i, topic := range []string{"a", "b", "a/c"} {
		if m := recv(t, s); m.ID != got[i] || m.Topic != topic {
			t.Fatalf("message %d = %s on %q, want %s on %q", i, m.ID, m.Topic, got[i], topic)
		}
	}
}

func TestWildcardDelivery(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 16})
	topics := []string{"sport/tennis/score", "sport/golf/score", "sport", "sport/tennis", "news", "$pubsub/subscriptions/x", "sport/tennis/player/1"}
	want := map[string][]string{
		"sport/+/score": {"sport/tennis/score", "sport/golf/score"},
		"sport/#":       {"sport/tennis/score", "sport/golf/score", "sport", "sport/tennis", "sport/tennis/player/1"},
		"sport/+":       {"sport/tennis"},
		"+":             {"sport", "news"},
		"#":             {"sport/tennis/score", "sport/golf/score", "sport", "sport/tennis", "news", "sport/tennis/player/1"},
		"$pubsub/#":     {"$pubsub/subscriptions/x"},
		"+/+/score":     {"sport/tennis/score", "sport/golf/score"},
		"sport/tennis":  {"sport/tennis"},
		"weather/#":     nil,
	}
	subs := make(map[string]*Subscriber)
	for filter := range want {
		subs[filter] = subscribe(t, h, filter)
	}
	for _, topic := range topics {
		publish(t, h, topic, "")
	}
	for filter, wantTopics := range want {
		var got []string
		for range wantTopics {
			got = append(got, recv(t, subs[filter]).Topic)
		}
		assertNoMessage(t, subs[filter])
		if !slices.Equal(got, wantTopics) {
			t.Errorf("filter %q got %q, want %q", filter, got, wantTopics)
		}
	}
}

func TestPublishRejectsInvalidTopics(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 8, Retention: Retention{Count: 10}})
	s := subscribe(t, h, "#")
	for _, msgs := range [][]Message{
		{{Topic: "a/+"}},
		{{Topic: "#"}},
		{{Topic: "a/#"}},
		{{Topic: ""}},
		{{Topic: "ok"}, {Topic: "bad/+"}}, // a batch is all or nothing
	} {
		got, err := h.Publish(context.Background(), msgs...)
		if !errors.Is(err, ErrInvalidTopic) || got != nil {
			t.Fatalf("Publish(%+v) = %v, %v; want ErrInvalidTopic", msgs, got, err)
		}
	}
	assertNoMessage(t, s)
	if head := h.Head(); head != "" {
		t.Fatalf("Head() = %q after rejected publishes, want empty", head)
	}
	if id := publish(t, h, "ok", ""); seqOf(t, id) != 1 {
		t.Fatalf("first accepted publish got %s, want seq 1: rejected publishes used sequence numbers", id)
	}
}

func TestSubscribeRejectsInvalidFilters(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 8})
	for _, filters := range [][]string{nil, {}, {""}, {"a/#/b"}, {"a+"}, {"ok", "#b"}} {
		s, backlog, gap, err := h.Subscribe(context.Background(), filters, Earliest)
		if !errors.Is(err, ErrInvalidTopic) || s != nil || backlog != nil || gap != nil {
			t.Fatalf("Subscribe(%q) = %v, %v, %v, %v; want ErrInvalidTopic", filters, s, backlog, gap, err)
		}
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d after rejected subscriptions, want 0", n)
	}
	assertIndexEmpty(t, h)
}

func TestResume(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 16, Retention: Retention{Count: 6}})
	// a/1 b/1 a/2 b/2 a/3 b/3 a/4 b/4: history keeps the last 6, seq 3-8.
	var published []string
	for i := 1; i <= 4; i++ {
		published = append(published, publish(t, h, "a/"+strconv.Itoa(i), ""), publish(t, h, "b/"+strconv.Itoa(i), ""))
	}
	seq := func(n int) string { return published[n-1] }

	tests := []struct {
		name    string
		filters []string
		lastID  string
		backlog []string
		gap     *Gap
	}{
		{"after a retained ID", []string{"a/#"}, seq(4), []string{seq(5), seq(7)}, nil},
		{"earliest", []string{"a/+"}, Earliest, []string{seq(3), seq(5), seq(7)}, nil},
		{"several filters", []string{"a/3", "b/#"}, seq(3), []string{seq(4), seq(5), seq(6), seq(8)}, nil},
		{"up to date", []string{"#"}, seq(8), nil, nil},
		{"last evicted", []string{"b/+"}, seq(2), []string{seq(4), seq(6), seq(8)}, nil},
		{"evicted", []string{"b/+"}, seq(1), []string{seq(4), seq(6), seq(8)}, &Gap{LastID: seq(1), FirstID: seq(3)}},
		{"unknown", []string{"a/4"}, "nope", []string{seq(7)}, &Gap{LastID: "nope", FirstID: seq(3)}},
		{"nothing matches", []string{"c"}, Earliest, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, backlog, gap, err := h.Subscribe(context.Background(), tt.filters, tt.lastID)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := ids(backlog); !slices.Equal(got, tt.backlog) {
				t.Fatalf("backlog = %v, want %v", got, tt.backlog)
			}
			if !equalGap(gap, tt.gap) {
				t.Fatalf("gap = %+v, want %+v", gap, tt.gap)
			}
			assertNoMessage(t, s)
		})
	}

	// Live messages follow the backlog.
	s, backlog, _, err := h.Subscribe(context.Background(), []string{"a/#"}, seq(6))
	if err != nil {
		t.Fatal(err)
	}
	live := publish(t, h, "a/5", "")
	if got := append(ids(backlog), recv(t, s).ID); !slices.Equal(got, []string{seq(7), live}) {
		t.Fatalf("backlog+live = %v, want [%s %s]", got, seq(7), live)
	}
}

func TestSubscriberHead(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	if head := subscribe(t, h, "t").Head(); head != "" {
		t.Fatalf("Head() before any message = %q, want empty", head)
	}
	first := publish(t, h, "other", "")
	s := subscribe(t, h, "t")
	if head := s.Head(); head != first {
		t.Fatalf("Head() = %q, want the last delivered ID %q even on another topic", head, first)
	}
	next := publish(t, h, "t", "")
	if m := recv(t, s); m.ID != next {
		t.Fatalf("got %s, want %s: every message after Head comes live", m.ID, next)
	}
}

func TestResumeWithoutHistory(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	older := publish(t, h, "t", "")
	latest := publish(t, h, "t", "")
	for _, lastID := range []string{older, "garbage"} {
		s, backlog, gap, err := h.Subscribe(context.Background(), []string{"t"}, lastID)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if len(backlog) != 0 || !equalGap(gap, &Gap{LastID: lastID}) {
			t.Fatalf("resume from %q with no history: backlog %v, gap %+v; want none and a gap", lastID, ids(backlog), gap)
		}
	}
	for _, lastID := range []string{Earliest, latest} {
		s, backlog, gap, err := h.Subscribe(context.Background(), []string{"t"}, lastID)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if len(backlog) != 0 || gap != nil {
			t.Fatalf("resume from %q with no history: backlog %v, gap %+v; want nothing: nothing was missed", lastID, ids(backlog), gap)
		}
	}
}

func TestResumeAfterMessagesAgedOut(t *testing.T) {
	h, b := newTestHub(t, Options{Queue: 4, Retention: Retention{Count: 100, MaxAge: time.Minute}})
	clock := newFakeClock()
	b.now = clock.Now // before first use: no goroutine reads it yet
	old := publish(t, h, "t", "")
	clock.Advance(2 * time.Minute)
	recent := publish(t, h, "t", "")
	s, backlog, gap, err := h.Subscribe(context.Background(), []string{"t"}, old)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// old is the last message dropped, so nothing after it was lost.
	if got := ids(backlog); gap != nil || !slices.Equal(got, []string{recent}) {
		t.Fatalf("backlog %v, gap %+v; want [%s] and no gap", got, gap, recent)
	}
	clock.Advance(2 * time.Minute)
	s2, backlog, gap, err := h.Subscribe(context.Background(), []string{"t"}, old)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(backlog) != 0 || !equalGap(gap, &Gap{LastID: old}) {
		t.Fatalf("backlog %v, gap %+v; want none and a gap: %s aged out unseen", ids(backlog), gap, recent)
	}
}

func TestSubscribeHistoryError(t *testing.T) {
	b := &spyBroker{MemoryBroker: NewMemoryBroker(Retention{Count: 10}), sinceErr: errSpy}
	h := New(b, Options{Queue: 4, Retention: Retention{Count: 10}})
	defer h.Close()
	s, _, _, err := h.Subscribe(context.Background(), []string{"a"}, Earliest)
	if !errors.Is(err, errSpy) || s != nil {
		t.Fatalf("Subscribe = %v, %v; want an error wrapping %v", s, err, errSpy)
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d after a failed resume, want 0", n)
	}
	assertIndexEmpty(t, h)
}

// TestResumeUnderConcurrentPublishers subscribes with a lastID while
// publishers run: backlog followed by live messages must be every message
// of the topic after lastID, each once, in order.
func TestResumeUnderConcurrentPublishers(t *testing.T) {
	const (
		publishers   = 4
		perPublisher = 800
		resumers     = 32
		prefix       = 64
	)
	h, _ := newTestHub(t, Options{Queue: 1 << 16, Retention: Retention{Count: 1 << 20}})
	ctx := context.Background()

	type sent struct {
		id, topic string
	}
	var mu sync.Mutex
	var all []sent
	record := func(published []string, msgs []Message) {
		mu.Lock()
		defer mu.Unlock()
		for i, id := range published {
			all = append(all, sent{id, msgs[i].Topic})
		}
	}
	pub := func(msgs ...Message) error {
		got, err := h.Publish(ctx, msgs...)
		if err == nil {
			record(got, msgs)
		}
		return err
	}

	// Resumers start from IDs of the topic published before the race.
	var startIDs []string
	for i := range prefix {
		topic := []string{"t", "u/x"}[i%2]
		id := publish(t, h, topic, "")
		record([]string{id}, []Message{{Topic: topic}})
		if topic == "t" {
			startIDs = append(startIDs, id)
		}
	}

	// Publisher 0 announces its progress so that resumers subscribe at
	// different points of the race.
	milestones := make([]chan struct{}, resumers)
	for i := range milestones {
		milestones[i] = make(chan struct{})
	}
	var pubWG sync.WaitGroup
	pubErrs := make(chan error, publishers)
	for p := range publishers {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			next := 0 // publisher 0's next milestone
			for i := 0; i < perPublisher; {
				var err error
				if i%5 == 0 { // a batch now and then
					err = pub(Message{Topic: "t"}, Message{Topic: "u/x"}, Message{Topic: "t"})
					i += 3
				} else {
					err = pub(Message{Topic: []string{"t", "u/x"}[i%2]})
					i++
				}
				if err != nil {
					pubErrs <- err
					return
				}
				for p == 0 && next < resumers && i >= next*(perPublisher/resumers) {
					close(milestones[next])
					next++
				}
			}
		}()
	}

	type result struct {
		lastID  string
		got     []string
		gap     *Gap
		err     error
		backlog int
	}
	results := make([]result, resumers)
	// The sentinel is the last message on "t"; endID is set before end is
	// closed.
	end := make(chan struct{})
	var endID string
	var resWG sync.WaitGroup
	for r := range resumers {
		resWG.Add(1)
		go func() {
			defer resWG.Done()
			res := &results[r]
			res.lastID = startIDs[(r*7)%len(startIDs)]
			if r == 0 {
				res.lastID = Earliest
			}
			filters := []string{"t"}
			if r%2 == 1 {
				filters = []string{"t", "+"} // overlapping filters
			}
			select {
			case <-milestones[r]:
			case <-time.After(waitFor):
				res.err = fmt.Errorf("milestone %d never reached", r)
				return
			}
			s, backlog, gap, err := h.Subscribe(ctx, filters, res.lastID)
			if err != nil {
				res.err = err
				return
			}
			defer s.Close()
			res.gap, res.got = gap, ids(backlog)
			// Page by page, as a transport does.
			for s.Replaying() {
				page, gap, err := s.Replay(ctx)
				if err != nil || gap != nil {
					res.err = fmt.Errorf("replay: %v, gap %+v", err, gap)
					return
				}
				res.got = append(res.got, ids(page)...)
			}
			res.backlog = len(res.got)
			end := end
			for end != nil || len(res.got) == 0 || res.got[len(res.got)-1] != endID {
				if m, ok := s.Next(); ok {
					res.got = append(res.got, m.ID)
					continue
				}
				select {
				case <-s.Ready():
				case <-end:
					end = nil
				case <-s.Done():
					res.err = fmt.Errorf("subscription ended: %w", s.Err())
					return
				case <-time.After(waitFor):
					res.err = fmt.Errorf("no message within %v after %d", waitFor, len(res.got))
					return
				}
			}
		}()
	}

	pubWG.Wait()
	close(pubErrs)
	for err := range pubErrs {
		t.Fatalf("publisher: %v", err)
	}
	// The sentinel marks the end of the stream on "t", for resumers that
	// subscribed during the race and any that come late alike.
	endID = publish(t, h, "t", "end")
	record([]string{endID}, []Message{{Topic: "t"}})
	close(end)
	resWG.Wait()

	var onT []string
	for _, s := range all {
		if s.topic == "t" {
			onT = append(onT, s.id)
		}
	}
	slices.SortFunc(onT, func(a, b string) int { return cmp.Compare(seqOf(t, a), seqOf(t, b)) })
	for r, res := range results {
		if res.err != nil {
			t.Fatalf("resumer %d: %v", r, res.err)
		}
		if res.gap != nil {
			t.Fatalf("resumer %d: gap %+v with unbounded history", r, *res.gap)
		}
		var want []string
		for _, id := range onT {
			if res.lastID == Earliest || seqOf(t, id) > seqOf(t, res.lastID) {
				want = append(want, id)
			}
		}
		for i := 1; i < len(res.got); i++ {
			if seqOf(t, res.got[i]) <= seqOf(t, res.got[i-1]) {
				t.Fatalf("resumer %d (from %s): %s follows %s (backlog had %d): not strictly increasing",
					r, res.lastID, res.got[i], res.got[i-1], res.backlog)
			}
		}
		if !slices.Equal(res.got, want) {
			t.Fatalf("resumer %d (from %s): got %d messages (backlog %d), want %d: lost or repeated across the backlog/live seam\ngot  %s\nwant %s",
				r, res.lastID, len(res.got), res.backlog, len(want), abbreviate(res.got), abbreviate(want))
		}
	}
}

func TestSlowConsumerIsDropped(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	slow := subscribe(t, h, "t")
	fast := subscribe(t, h, "t")
	if n := h.Subscribers(); n != 2 {
		t.Fatalf("Subscribers() = %d, want 2", n)
	}

	var published []string
	for i := range 10 {
		id := publish(t, h, "t", strconv.Itoa(i))
		published = append(published, id)
		if m := recv(t, fast); m.ID != id {
			t.Fatalf("fast subscriber got %s, want %s", m.ID, id)
		}
		if i == 3 {
			select {
			case <-slow.Done():
				t.Fatalf("slow subscriber ended with a full but not overflowing queue: %v", slow.Err())
			default:
			}
		}
	}
	if err := waitDone(t, slow); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("slow subscriber ended with %v, want ErrSlowConsumer", err)
	}
	if n := h.Subscribers(); n != 1 {
		t.Fatalf("Subscribers() = %d, want 1 after the slow subscriber was dropped", n)
	}
	// The slow subscriber keeps what fitted, and nothing after.
	var queued []string
	for m, ok := slow.Next(); ok; m, ok = slow.Next() {
		queued = append(queued, m.ID)
	}
	if !slices.Equal(queued, published[:4]) {
		t.Fatalf("slow subscriber's queue = %v, want the first 4 %v", queued, published[:4])
	}
	// Closing it later neither changes its error nor the count.
	slow.Close()
	if err := slow.Err(); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Err() after Close = %v, want ErrSlowConsumer still", err)
	}
	if n := h.Subscribers(); n != 1 {
		t.Fatalf("Subscribers() = %d after closing a dropped subscriber, want 1", n)
	}
	fast.Close()
	assertIndexEmpty(t, h)
}

func TestSlowConsumerWithOverlappingFilters(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 1})
	s := subscribe(t, h, "a/#", "a/b", "#")
	publish(t, h, "a/b", "") // fills the queue once, not three times
	select {
	case <-s.Done():
		t.Fatalf("overlapping filters overflowed a queue of 1 with one message: %v", s.Err())
	default:
	}
	publish(t, h, "a/b", "")
	if err := waitDone(t, s); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Err() = %v, want ErrSlowConsumer", err)
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d, want 0", n)
	}
	assertIndexEmpty(t, h)
}

func TestSetOptions(t *testing.T) {
	h, b := newTestHub(t, Options{Queue: 2, Retention: Retention{Count: 10}})
	before := subscribe(t, h, "t")
	published := make([]string, 0, 10)
	for range 10 {
		published = append(published, publish(t, h, "x", ""))
	}

	h.SetOptions(Options{Queue: 8, Retention: Retention{Count: 3}})
	after := subscribe(t, h, "t")
	if c := before.queue.limit; c != 2 {
		t.Fatalf("existing subscriber's queue = %d, want unchanged 2", c)
	}
	if c := after.queue.limit; c != 8 {
		t.Fatalf("new subscriber's queue = %d, want 8", c)
	}
	msgs, _ := since(t, b, Earliest, h.Head())
	if got := ids(msgs); !slices.Equal(got, published[7:]) {
		t.Fatalf("history after shrinking retention = %v, want %v", got, published[7:])
	}

	h.SetOptions(Options{Queue: 0})
	if c := subscribe(t, h, "t").queue.limit; c != 1 {
		t.Fatalf("queue with Options.Queue 0 = %d, want the minimum 1", c)
	}
}

func TestHubClose(t *testing.T) {
	b := &spyBroker{MemoryBroker: NewMemoryBroker(Retention{Count: 10})}
	h := New(b, Options{Queue: 4, Retention: Retention{Count: 10}})
	subs := []*Subscriber{subscribe(t, h, "a"), subscribe(t, h, "#"), subscribe(t, h, "a", "a/#")}
	publish(t, h, "a", "")

	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, s := range subs {
		if err := waitDone(t, s); !errors.Is(err, ErrHubClosed) {
			t.Fatalf("subscriber %q ended with %v, want ErrHubClosed", s.Filters(), err)
		}
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d after Close, want 0", n)
	}
	assertIndexEmpty(t, h)
	if _, err := h.Publish(context.Background(), Message{Topic: "a"}); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Publish after Close = %v, want ErrHubClosed", err)
	}
	for _, lastID := range []string{"", Earliest} {
		if s, _, _, err := h.Subscribe(context.Background(), []string{"a"}, lastID); !errors.Is(err, ErrHubClosed) || s != nil {
			t.Fatalf("Subscribe(lastID %q) after Close = %v, %v; want ErrHubClosed", lastID, s, err)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := b.closes.Load(); n != 1 {
		t.Fatalf("broker closed %d times, want once", n)
	}
	for _, s := range subs {
		s.Close() // a transport closing late must not panic or go negative
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d, want 0", n)
	}
}

func TestDisconnect(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	subs := []*Subscriber{subscribe(t, h, "a"), subscribe(t, h, "+", "#")}
	h.Disconnect(ErrShutdown)
	for _, s := range subs {
		if err := waitDone(t, s); !errors.Is(err, ErrShutdown) {
			t.Fatalf("subscriber %q ended with %v, want ErrShutdown", s.Filters(), err)
		}
	}
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d after Disconnect, want 0", n)
	}
	assertIndexEmpty(t, h)

	// The hub goes on.
	s := subscribe(t, h, "a")
	id := publish(t, h, "a", "")
	if m := recv(t, s); m.ID != id {
		t.Fatalf("got %s, want %s", m.ID, id)
	}
	for _, old := range subs {
		assertNoMessage(t, old)
	}
	if n := h.Subscribers(); n != 1 {
		t.Fatalf("Subscribers() = %d, want 1", n)
	}
}

func TestSubscriberClose(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	a := subscribe(t, h, "t")
	b := subscribe(t, h, "t")
	if a.Err() != nil {
		t.Fatalf("Err() of a running subscriber = %v, want nil", a.Err())
	}
	a.Close()
	if n := h.Subscribers(); n != 1 {
		t.Fatalf("Subscribers() right after Close = %d, want 1", n)
	}
	if err := waitDone(t, a); err != nil {
		t.Fatalf("Err() after Close = %v, want nil", err)
	}
	publish(t, h, "t", "")
	assertNoMessage(t, a)
	recv(t, b)
	a.Close() // twice is fine
	if n := h.Subscribers(); n != 1 {
		t.Fatalf("Subscribers() after a second Close = %d, want 1", n)
	}
	b.Close()
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d, want 0", n)
	}
}

// TestConcurrentSubscribeClosePublish is for the race detector: subscribers
// come and go while messages flow.
func TestConcurrentSubscribeClosePublish(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 8, Retention: Retention{Count: 50}})
	ctx := context.Background()
	stop := make(chan struct{})
	var pubWG, subWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := h.Publish(ctx, Message{Topic: "a/" + strconv.Itoa(i%3)}); err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
		}
	}()
	for g := range 4 {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			for i := range 100 {
				s, _, _, err := h.Subscribe(ctx, []string{"a/+", "a/" + strconv.Itoa(g%3)}, Earliest)
				if err != nil {
					t.Errorf("Subscribe: %v", err)
					return
				}
				if i%2 == 0 {
					select {
					case <-s.Ready():
					case <-time.After(waitFor):
						t.Error("no message and no end")
					}
				}
				s.Close()
			}
		}()
	}
	subWG.Wait()
	close(stop)
	pubWG.Wait()
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d after everyone closed, want 0", n)
	}
	assertIndexEmpty(t, h)
}

func TestFrameOncePerKind(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	subs := make([]*Subscriber, 100)
	for i := range subs {
		subs[i] = subscribe(t, h, "t")
	}
	publish(t, h, "t", "hello")

	kinds := []FrameKind{frameTest, frameOther}
	calls := make([]atomic.Int32, len(kinds))
	encoder := func(i int) func(*Message) []byte {
		return func(m *Message) []byte {
			calls[i].Add(1)
			return []byte(fmt.Sprintf("%d:%s:%s", kinds[i], m.ID, m.Data))
		}
	}
	first := make([][]byte, len(kinds))
	for i, s := range subs {
		m := recv(t, s)
		for kind := range kinds {
			b := m.Frame(kinds[kind], encoder(kind))
			if i == 0 {
				first[kind] = b
			} else if &b[0] != &first[kind][0] {
				t.Fatalf("subscriber %d got its own copy of frame kind %d: not shared", i, kind)
			}
		}
	}
	for kind := range kinds {
		if n := calls[kind].Load(); n != 1 {
			t.Fatalf("frame kind %d encoded %d times for 100 subscribers, want once", kind, n)
		}
	}
}

func TestFrameWithoutCache(t *testing.T) {
	var calls int
	encode := func(*Message) []byte { calls++; return []byte("x") }

	// A message that did not go through the hub's fan-out has no cache.
	m := &Message{Topic: "t"}
	m.Frame(frameTest, encode)
	m.Frame(frameTest, encode)
	if calls != 2 {
		t.Fatalf("encode called %d times for an uncached message, want 2", calls)
	}

	// Unknown kinds are encoded every time rather than panicking.
	h, _ := newTestHub(t, Options{Queue: 4})
	s := subscribe(t, h, "t")
	publish(t, h, "t", "")
	delivered := recv(t, s)
	calls = 0
	unknown := FrameKind(frameKinds.Load()) // registered by no one yet
	for _, kind := range []FrameKind{-1, unknown, unknown, 99} {
		delivered.Frame(kind, encode)
	}
	if calls != 4 {
		t.Fatalf("encode called %d times for unknown kinds, want 4", calls)
	}
}

// TestFrameOnceUnderConcurrentReaders is the realistic case: one writer
// goroutine per subscriber, all woken by the same message.
func TestFrameOnceUnderConcurrentReaders(t *testing.T) {
	const readers = 100
	h, _ := newTestHub(t, Options{Queue: 4})
	subs := make([]*Subscriber, readers)
	for i := range subs {
		subs[i] = subscribe(t, h, "t")
	}
	var calls atomic.Int32
	encode := func(m *Message) []byte {
		calls.Add(1)
		return []byte(m.ID)
	}
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-s.Ready():
				if m, ok := s.Next(); ok {
					m.Frame(frameTest, encode)
				}
			case <-time.After(waitFor):
				t.Error("no message")
			}
		}()
	}
	publish(t, h, "t", "")
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("encode ran %d times for %d concurrent readers, want once", n, readers)
	}
}

// TestFrameConcurrentFirstCallsEncodeOnce pins the race down
// deterministically: a second reader arrives while the first is encoding.
func TestFrameConcurrentFirstCallsEncodeOnce(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	s := subscribe(t, h, "t")
	publish(t, h, "t", "")
	m := recv(t, s)

	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	slow := func(m *Message) []byte {
		calls.Add(1)
		close(entered)
		<-release
		return []byte("first")
	}
	second := func(m *Message) []byte {
		calls.Add(1)
		return []byte("second")
	}
	results := make(chan string, 2)
	go func() { results <- string(m.Frame(frameTest, slow)) }()
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatal("first encode never started")
	}
	go func() { results <- string(m.Frame(frameTest, second)) }()
	// A correct Frame makes the second reader wait for the first encode;
	// give it a moment to run encode if it is going to.
	select {
	case r := <-results:
		close(release)
		<-results
		t.Fatalf("second reader returned %q while the first was still encoding: encode ran %d times", r, calls.Load())
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	for range 2 {
		select {
		case r := <-results:
			if r != "first" {
				t.Fatalf("a reader got %q, want the first encoding", r)
			}
		case <-time.After(waitFor):
			t.Fatal("Frame did not return")
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("encode ran %d times, want once", n)
	}
}

// TestRepublishedMessageGetsItsOwnFrames: a transport or bridge that
// republishes a message it received (say, to another topic) must not get
// the original's cached frames, which carry the original ID and topic.
func TestRepublishedMessageGetsItsOwnFrames(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	a := subscribe(t, h, "a")
	b := subscribe(t, h, "b")
	encode := func(m *Message) []byte { return []byte(m.ID + " " + m.Topic) }

	publish(t, h, "a", "x")
	orig := recv(t, a)
	orig.Frame(frameTest, encode) // a writer encoded it

	copied := *orig
	copied.Topic = "b"
	got, err := h.Publish(context.Background(), copied)
	if err != nil {
		t.Fatal(err)
	}
	re := recv(t, b)
	if frame, want := string(re.Frame(frameTest, encode)), got[0]+" b"; frame != want {
		t.Fatalf("republished message's frame = %q, want %q", frame, want)
	}
}

// BenchmarkFanOut measures one publish reaching every subscriber, each
// drained by its own goroutine as a transport's writer would.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h, _ := newTestHub(b, Options{Queue: 16})
			var received sync.WaitGroup
			subs := make([]*Subscriber, n)
			for i := range subs {
				subs[i] = subscribe(b, h, "room/+/messages")
			}
			stop := drainAll(subs, received.Done)
			for range n { // filters the fan-out has to skip
				subscribe(b, h, "room/other/messages")
			}
			ctx := context.Background()
			msg := Message{Topic: "room/42/messages", Data: "hello"}
			b.ReportAllocs()
			for b.Loop() {
				received.Add(n)
				if _, err := h.Publish(ctx, msg); err != nil {
					b.Fatal(err)
				}
				received.Wait()
			}
			b.StopTimer()
			if h.Subscribers() != 2*n {
				b.Fatalf("subscribers overflowed: %d left of %d", h.Subscribers(), 2*n)
			}
			stop()
		})
	}
}

// BenchmarkResume measures Subscribe with a lastID over a 1000-message
// history, half of which matches the filter.
func BenchmarkResume(b *testing.B) {
	h, _ := newTestHub(b, Options{Queue: 16, Retention: Retention{Count: 1000}})
	for i := range 1000 {
		publish(b, h, []string{"a/x", "b/x"}[i%2], "")
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s, backlog, _, err := h.Subscribe(ctx, []string{"a/+"}, Earliest)
		if err != nil || len(backlog) != 500 {
			b.Fatalf("Subscribe: %d messages, %v", len(backlog), err)
		}
		s.Close()
	}
}
