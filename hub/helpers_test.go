package hub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor bounds every wait on an event, so a broken hub fails a test
// instead of hanging it.
const waitFor = 5 * time.Second

// newTestHub starts a hub on a fresh memory broker and closes it when the
// test ends.
func newTestHub(t testing.TB, opts Options) (*Hub, *MemoryBroker) {
	t.Helper()
	b := NewMemoryBroker(opts.Retention)
	h := New(b, opts)
	t.Cleanup(func() { _ = h.Close() })
	return h, b
}

// subscribe subscribes to filters without resuming.
func subscribe(t testing.TB, h *Hub, filters ...string) *Subscriber {
	t.Helper()
	s, backlog, gap, err := h.Subscribe(context.Background(), filters, "")
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", filters, err)
	}
	if backlog != nil || gap != nil {
		t.Fatalf("Subscribe(%q) without lastID: backlog %v, gap %+v; want none", filters, backlog, gap)
	}
	return s
}

// publish publishes one message and returns its ID.
func publish(t testing.TB, h *Hub, topic, data string) string {
	t.Helper()
	got, err := h.Publish(context.Background(), Message{Topic: topic, Data: data})
	if err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
	if len(got) != 1 {
		t.Fatalf("Publish(%q) returned %d IDs, want 1", topic, len(got))
	}
	return got[0]
}

// recv returns the next live message of s.
func recv(t testing.TB, s *Subscriber) *Message {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		if m, ok := s.Next(); ok {
			return m
		}
		select {
		case <-s.Ready():
		case <-s.Done():
			t.Fatalf("subscriber %q ended (%v) while waiting for a message", s.Filters(), s.Err())
		case <-timeout:
			t.Fatalf("subscriber %q: no message within %v", s.Filters(), waitFor)
		}
	}
}

// assertNoMessage checks that s has nothing queued. The memory broker
// hands a message to the hub before Publish returns, and Head fans out
// what the hub was handed, so after a Publish and a Head "nothing queued"
// means "nothing delivered": no need to wait.
func assertNoMessage(t testing.TB, s *Subscriber) {
	t.Helper()
	s.hub.Head()
	if m, ok := s.Next(); ok {
		t.Fatalf("subscriber %q got unexpected message %s on %q", s.Filters(), m.ID, m.Topic)
	}
}

// waitDone waits for s to end and returns why.
func waitDone(t testing.TB, s *Subscriber) error {
	t.Helper()
	select {
	case <-s.Done():
		return s.Err()
	case <-time.After(waitFor):
		t.Fatalf("subscriber %q still running after %v", s.Filters(), waitFor)
	}
	return nil
}

// seqOf returns the SEQ part of a memory broker ID.
func seqOf(t testing.TB, id string) uint64 {
	t.Helper()
	_, num, ok := strings.Cut(id, "-")
	if !ok {
		t.Fatalf("ID %q is not EPOCH-SEQ", id)
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		t.Fatalf("ID %q: %v", id, err)
	}
	return seq
}

// ids lists the IDs of msgs, for failure messages and comparisons.
func ids(msgs []*Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// fakeClock is a settable clock for the memory broker's now field.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// brokerPublish publishes n messages on topic straight to a broker and
// returns their IDs.
func brokerPublish(t testing.TB, b Broker, topic string, n int) []string {
	t.Helper()
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Topic: topic, Data: strconv.Itoa(i)}
	}
	got, err := b.Publish(context.Background(), msgs)
	if err != nil {
		t.Fatalf("broker Publish: %v", err)
	}
	return got
}

// spyBroker wraps a memory broker to fail on demand and to count Start
// and Close calls.
type spyBroker struct {
	*MemoryBroker
	startErr error
	sinceErr error
	starts   atomic.Int32
	closes   atomic.Int32
}

func (b *spyBroker) Start(deliver func(*Message)) error {
	b.starts.Add(1)
	if b.startErr != nil {
		return b.startErr
	}
	return b.MemoryBroker.Start(deliver)
}

func (b *spyBroker) Since(ctx context.Context, q Query) (Page, error) {
	if b.sinceErr != nil {
		return Page{}, b.sinceErr
	}
	return b.MemoryBroker.Since(ctx, q)
}

func (b *spyBroker) Close() error {
	b.closes.Add(1)
	return b.MemoryBroker.Close()
}

var errSpy = errors.New("spy failure")

// levels joins n copies of level with "/".
func levels(level string, n int) string {
	return strings.TrimSuffix(strings.Repeat(level+"/", n), "/")
}

// randomTopic returns a topic of one to four levels drawn from a small
// alphabet, so that random filters often match it. Empty levels and a
// "$" first level are included on purpose.
func randomTopic(r *rand.Rand) string {
	alphabet := []string{"a", "b", "c", "", "$x"}
	for {
		lv := make([]string, 1+r.IntN(4))
		for i := range lv {
			lv[i] = alphabet[r.IntN(len(alphabet))]
		}
		if topic := strings.Join(lv, "/"); topic != "" {
			return topic
		}
	}
}

// randomFilter returns a valid filter over the same alphabet as randomTopic
// plus "+" levels and, sometimes, a trailing "#".
func randomFilter(r *rand.Rand) string {
	alphabet := []string{"a", "b", "", "$x", "+", "+"}
	for {
		n := r.IntN(4)
		lv := make([]string, n, n+1)
		for i := range lv {
			lv[i] = alphabet[r.IntN(len(alphabet))]
		}
		if n == 0 || r.IntN(3) == 0 {
			lv = append(lv, "#")
		}
		if filter := strings.Join(lv, "/"); filter != "" {
			return filter
		}
	}
}

// assertIndexEmpty checks that removals pruned the subscriber trie back to
// a bare root.
func assertIndexEmpty(t *testing.T, h *Hub) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.index.root.children); n != 0 {
		t.Fatalf("index root still has %d children: %q", n, slices.Sorted(maps.Keys(h.index.root.children)))
	}
	if n := len(h.index.root.subs); n != 0 {
		t.Fatalf("index root still has %d subscribers", n)
	}
}

// since calls b.Since for all of the range in one page, with a background
// context, and fails on error.
func since(t testing.TB, b *MemoryBroker, lastID, upto string) ([]*Message, *Gap) {
	t.Helper()
	page, err := b.Since(context.Background(), all(lastID, upto))
	if err != nil {
		t.Fatalf("Since(%q, %q): %v", lastID, upto, err)
	}
	return page.Messages, page.Gap
}

// all asks for the whole range in one page.
func all(lastID, upto string) Query { return Query{After: lastID, Upto: upto, Limit: math.MaxInt} }

// assertRange checks that msgs are exactly published[from-1 : to] (1-based
// sequences, inclusive), in order.
func assertRange(t *testing.T, msgs []*Message, published []string, from, to int) {
	t.Helper()
	var want []string
	if from <= to {
		want = published[from-1 : to]
	}
	if got := ids(msgs); !slices.Equal(got, want) {
		t.Fatalf("got %d messages %v, want seq %d..%d (%d messages)", len(got), abbreviate(got), from, to, len(want))
	}
}

// abbreviate keeps failure messages about long histories readable.
func abbreviate(list []string) string {
	if len(list) <= 6 {
		return fmt.Sprint(list)
	}
	return fmt.Sprintf("[%s %s %s ... %s]", list[0], list[1], list[2], list[len(list)-1])
}

// equalGap compares gaps by value; nil equals only nil.
func equalGap(a, b *Gap) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// The frame kinds the tests encode messages in, as transports register
// their own.
var (
	frameTest  = NewFrameKind()
	frameOther = NewFrameKind()
)
