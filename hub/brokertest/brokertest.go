// Package brokertest is the contract every hub.Broker keeps, written as a
// test suite: the memory, bolt and Redis brokers each run it from their own
// tests, so IDs, ordering, resume, gaps and retention mean the same on all.
package brokertest

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Wait bounds every wait for a delivery or a state change.
const Wait = 10 * time.Second

// NewBroker returns a new, unstarted broker with retention r and an empty
// history of its own (a fresh file, a fresh stream). The suite starts it and
// closes it.
type NewBroker func(t *testing.T, r hub.Retention) hub.Broker

// Run runs the contract against brokers made by newBroker, one subtest per
// clause. The subtests run one at a time: one of them counts goroutines.
// The clauses of an optional interface run for brokers that implement it;
// a broker that does not is held to what the hub does without it.
func Run(t *testing.T, newBroker func(t *testing.T, r hub.Retention) hub.Broker) {
	probe := newBroker(t, hub.Retention{})
	_, signaler := probe.(hub.Signaler)
	if err := probe.Close(); err != nil {
		t.Fatalf("closing an unstarted broker: %v", err)
	}
	type clause struct {
		name string
		run  func(*testing.T, NewBroker)
	}
	cases := []clause{
		{"PublishAssignsIDsAndDeliversInOrder", testPublishDelivers},
		{"FieldsSurviveStorage", testFields},
		{"SinceReturnsRangeAfterLastIDUptoHead", testSinceRange},
		{"ForeignOrMalformedIDIsGap", testForeignIDs},
		{"CountRetentionKeepsSuffixAndReportsGap", testCountRetention},
		{"AgeRetentionDropsOldMessages", testAgeRetention},
		{"NoRetentionKeepsNothing", testNoRetention},
		{"SetRetentionAppliesNewBounds", testSetRetention},
		{"ConcurrentPublishersGetOneOrder", testConcurrentPublish},
		{"SinceFiltersAndPages", testSinceFilters},
		{"HeadIsWhereDeliveryStarts", testHead},
		{"HubResumeLosesAndRepeatsNothing", testHubResume},
		{"HubResumeAcrossPagesLosesAndRepeatsNothing", testHubResumePages},
		{"SignalsAreLiveOnly", testSignalsLiveOnly},
		{"CloseStopsEveryGoroutine", testClose},
	}
	if signaler {
		cases = append(cases, clause{"SignalerCarriesSignalsUnstored", testSignaler})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, NewBroker(newBroker)) })
	}
}

// recorder is a deliver function that keeps what it was handed and checks
// that it is never called concurrently.
type recorder struct {
	t      *testing.T
	busy   atomic.Bool
	mu     sync.Mutex
	got    []*hub.Message
	notify chan struct{}
}

func newRecorder(t *testing.T) *recorder {
	return &recorder{t: t, notify: make(chan struct{}, 1)}
}

func (r *recorder) deliver(m *hub.Message) {
	if !r.busy.CompareAndSwap(false, true) {
		r.t.Error("deliver called concurrently")
	}
	r.mu.Lock()
	r.got = append(r.got, m)
	r.mu.Unlock()
	r.busy.Store(false)
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// wait returns the first n delivered messages once they have arrived.
func (r *recorder) wait(n int) []*hub.Message {
	r.t.Helper()
	deadline := time.After(Wait)
	for {
		r.mu.Lock()
		got := slices.Clone(r.got)
		r.mu.Unlock()
		if len(got) >= n {
			if len(got) > n {
				r.t.Fatalf("delivered %d messages, want %d: %v", len(got), n, abbreviate(idsOf(got)))
			}
			return got
		}
		select {
		case <-r.notify:
		case <-deadline:
			r.t.Fatalf("delivered %d messages within %s, want %d", len(got), Wait, n)
		}
	}
}

// start makes and starts a broker that is closed when the test ends.
func start(t *testing.T, newBroker NewBroker, r hub.Retention) (hub.Broker, *recorder) {
	t.Helper()
	b := newBroker(t, r)
	rec := newRecorder(t)
	if err := b.Start(rec.deliver); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, rec
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), Wait)
	t.Cleanup(cancel)
	return c
}

// publish publishes msgs in one call and checks the IDs it gets back.
func publish(t *testing.T, b hub.Broker, msgs ...hub.Message) []string {
	t.Helper()
	ids, err := b.Publish(ctx(t), msgs)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(ids) != len(msgs) {
		t.Fatalf("Publish of %d messages returned %d IDs", len(msgs), len(ids))
	}
	for _, id := range ids {
		if id == "" || id == hub.Earliest {
			t.Fatalf("Publish returned ID %q", id)
		}
	}
	return ids
}

// publishN publishes n messages on topic t, in batches of batch, and
// returns their IDs.
func publishN(t *testing.T, b hub.Broker, n, batch int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		k := min(batch, n-len(ids))
		msgs := make([]hub.Message, k)
		for i := range msgs {
			msgs[i] = hub.Message{Topic: "t", Data: strconv.Itoa(len(ids) + i)}
		}
		ids = append(ids, publish(t, b, msgs...)...)
	}
	return ids
}

// sincePage is the page size since reads with: small, so every clause
// also checks that pages join up.
const sincePage = 7

// since reads all the history after lastID up to upto, page by page, each
// page after the last message of the one before, and checks that only the
// first reports a gap.
func since(t *testing.T, b hub.Broker, lastID, upto string) ([]*hub.Message, *hub.Gap) {
	t.Helper()
	return sinceMatching(t, b, lastID, upto, nil)
}

func sinceMatching(t *testing.T, b hub.Broker, lastID, upto string, match func(string) bool) ([]*hub.Message, *hub.Gap) {
	t.Helper()
	q := hub.Query{After: lastID, Upto: upto, Match: match, Limit: sincePage}
	var msgs []*hub.Message
	var gap *hub.Gap
	for i := 0; ; i++ {
		page, err := b.Since(ctx(t), q)
		if err != nil {
			t.Fatalf("Since(%.40q, %q), page %d: %v", q.After, upto, i, err)
		}
		switch {
		case len(page.Messages) > sincePage:
			t.Fatalf("Since(%.40q, %q) page %d: %d messages, limit %d", q.After, upto, i, len(page.Messages), sincePage)
		case page.More && len(page.Messages) < sincePage:
			t.Fatalf("Since(%.40q, %q) page %d: More with %d messages, limit %d", q.After, upto, i, len(page.Messages), sincePage)
		case i == 0:
			gap = page.Gap
		case page.Gap != nil:
			t.Fatalf("Since(%.40q, %q) page %d continues the one before, yet reports gap %+v", q.After, upto, i, page.Gap)
		}
		msgs = append(msgs, page.Messages...)
		if !page.More {
			return msgs, gap
		}
		q.After = page.Messages[len(page.Messages)-1].ID
	}
}

func idsOf(msgs []*hub.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// abbreviate keeps failure messages about long histories readable.
func abbreviate(ids []string) string {
	if len(ids) <= 8 {
		return fmt.Sprint(ids)
	}
	return fmt.Sprintf("%v … %v (%d)", ids[:3], ids[len(ids)-3:], len(ids))
}

// sameMessages checks that got and want carry the same IDs, fields and
// times, in order.
func sameMessages(t *testing.T, what string, got, want []*hub.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages %s, want %d %s", what, len(got), abbreviate(idsOf(got)), len(want), abbreviate(idsOf(want)))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Topic != w.Topic || g.Event != w.Event || g.Data != w.Data || !g.Time.Equal(w.Time) {
			t.Fatalf("%s: message %d is {%s %q %q %.40q %v}, want {%s %q %q %.40q %v}", what, i,
				g.ID, g.Topic, g.Event, g.Data, g.Time, w.ID, w.Topic, w.Event, w.Data, w.Time)
		}
	}
}

// checkIDs checks that got lists exactly want.
func checkIDs(t *testing.T, what string, got []*hub.Message, want []string) {
	t.Helper()
	if ids := idsOf(got); !slices.Equal(ids, want) {
		t.Fatalf("%s: got %s, want %s", what, abbreviate(ids), abbreviate(want))
	}
}

func checkGap(t *testing.T, what string, got, want *hub.Gap) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil || *got != *want:
		t.Fatalf("%s: gap %+v, want %+v", what, got, want)
	}
}

func testPublishDelivers(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	before := time.Now()
	ids := publish(t, b, hub.Message{Topic: "a", Data: "one"})
	ids = append(ids, publish(t, b,
		hub.Message{Topic: "b", Data: "two", Event: "e"},
		hub.Message{Topic: "a/b", Data: "three"},
		hub.Message{Topic: "a", Data: "four"},
	)...)
	after := time.Now()
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatalf("IDs are not distinct: %v", ids)
	}

	got := rec.wait(4)
	checkIDs(t, "delivered", got, ids)
	for i, want := range []struct{ topic, event, data string }{
		{"a", "", "one"}, {"b", "e", "two"}, {"a/b", "", "three"}, {"a", "", "four"},
	} {
		m := got[i]
		if m.Topic != want.topic || m.Event != want.event || m.Data != want.data {
			t.Fatalf("delivered %d: {%q %q %q}, want %v", i, m.Topic, m.Event, m.Data, want)
		}
		// The broker's clock may be another machine's; allow some skew.
		if m.Time.Before(before.Add(-time.Minute)) || m.Time.After(after.Add(time.Minute)) {
			t.Fatalf("delivered %d: time %v, not near the publish at %v", i, m.Time, before)
		}
	}
	retained, gap := since(t, b, hub.Earliest, ids[3])
	checkGap(t, "Since(earliest)", gap, nil)
	sameMessages(t, "Since(earliest)", retained, got)
}

func testFields(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	msgs := []hub.Message{
		{Topic: "lines", Data: "a\nb\r\nc\rd\n"},
		{Topic: "unicode/héllo", Event: "ünï", Data: "✓ 日本 \U0001F600"},
		{Topic: "empty", Data: ""},
		{Topic: "json", Event: "reading", Data: `{"temp":21.5,"tags":["a","b"]}`},
		{Topic: "$pubsub/stats", Data: "reserved topics are stored like any other"},
		{Topic: "big", Data: strings.Repeat("0123456789abcdef", 4096)},
	}
	ids := publish(t, b, msgs...)
	got := rec.wait(len(msgs))
	checkIDs(t, "delivered", got, ids)
	for i, m := range got {
		if m.Topic != msgs[i].Topic || m.Event != msgs[i].Event || m.Data != msgs[i].Data {
			t.Fatalf("message %d came back as {%q %q %.40q}, want {%q %q %.40q}",
				i, m.Topic, m.Event, m.Data, msgs[i].Topic, msgs[i].Event, msgs[i].Data)
		}
	}
	retained, _ := since(t, b, hub.Earliest, ids[len(ids)-1])
	sameMessages(t, "Since(earliest)", retained, got)
}

func testSinceRange(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	if msgs, gap := since(t, b, hub.Earliest, ""); len(msgs) != 0 || gap != nil {
		t.Fatalf("Since(earliest, \"\") on an empty broker: %v, gap %+v", idsOf(msgs), gap)
	}
	ids := publishN(t, b, 12, 5)
	rec.wait(len(ids))

	froms := append([]string{hub.Earliest}, ids...)
	for i, from := range froms {
		first := i // index in ids of the first message after from
		if msgs, gap := since(t, b, from, ""); len(msgs) != 0 || gap != nil {
			t.Fatalf("Since(%q, \"\") before anything was delivered to the hub: %v, gap %+v", from, idsOf(msgs), gap)
		}
		for j, upto := range ids {
			msgs, gap := since(t, b, from, upto)
			checkGap(t, fmt.Sprintf("Since(%q, %q)", from, upto), gap, nil)
			var want []string
			if first <= j {
				want = ids[first : j+1]
			}
			checkIDs(t, fmt.Sprintf("Since(%q, %q)", from, upto), msgs, want)
		}
	}
}

func testForeignIDs(t *testing.T, newBroker NewBroker) {
	other, otherRec := start(t, newBroker, hub.Retention{Count: 100})
	foreign := publish(t, other, hub.Message{Topic: "t", Data: "elsewhere"})[0]
	otherRec.wait(1)

	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	ids := publishN(t, b, 3, 3)
	rec.wait(3)
	for _, lastID := range []string{
		foreign, "garbage", "-", "--", "0", "0-0", "00000000-1", "ffffffff-1-0", "a-b-c", "1-1-1-1",
		"earliest2", "EARLIEST", " " + ids[0], ids[0] + "x", "\x00", "-" + ids[0],
		strings.Repeat("9", 300), strings.Repeat("9", 30) + "-" + strings.Repeat("9", 30),
	} {
		msgs, gap := since(t, b, lastID, ids[2])
		checkGap(t, fmt.Sprintf("Since(%.40q)", lastID), gap, &hub.Gap{LastID: lastID, FirstID: ids[0]})
		checkIDs(t, fmt.Sprintf("Since(%.40q)", lastID), msgs, ids)
	}
}

func testCountRetention(t *testing.T, newBroker NewBroker) {
	const count, n = 5, 250
	b, rec := start(t, newBroker, hub.Retention{Count: count})
	ids := publishN(t, b, n, 10)
	rec.wait(n)
	last := ids[n-1]

	// A broker may trim lazily or approximately (Redis streams do), so it
	// may keep more than count; never fewer, and never everything here.
	retained, gap := since(t, b, hub.Earliest, last)
	checkGap(t, "Since(earliest)", gap, nil)
	kept := len(retained)
	if kept < count || kept >= n {
		t.Fatalf("Since(earliest) returned %d messages; want at least %d and fewer than all %d", kept, count, n)
	}
	firstIdx := n - kept
	checkIDs(t, "Since(earliest)", retained, ids[firstIdx:])

	// Resume from around the retention edge, and from long before it.
	froms := []int{0, 1, 2}
	for k := max(0, firstIdx-3); k < n; k++ {
		froms = append(froms, k)
	}
	for _, k := range froms {
		msgs, gap := since(t, b, ids[k], last)
		what := fmt.Sprintf("Since(message %d of %d, retained from %d)", k, n, firstIdx)
		if k >= firstIdx-1 {
			checkGap(t, what, gap, nil)
			checkIDs(t, what, msgs, ids[k+1:])
		} else {
			checkGap(t, what, gap, &hub.Gap{LastID: ids[k], FirstID: ids[firstIdx]})
			checkIDs(t, what, msgs, ids[firstIdx:])
		}
	}
	// upto bounds the answer even when more is retained.
	msgs, _ := since(t, b, ids[n-3], ids[n-2])
	checkIDs(t, "Since(n-3, n-2)", msgs, ids[n-2:n-1])
}

func testAgeRetention(t *testing.T, newBroker NewBroker) {
	const age = 300 * time.Millisecond
	b, rec := start(t, newBroker, hub.Retention{Count: 100, MaxAge: age})
	old := publish(t, b, hub.Message{Topic: "t", Data: "0"}, hub.Message{Topic: "t", Data: "1"})
	rec.wait(2)
	if msgs, _ := since(t, b, hub.Earliest, old[1]); len(msgs) != 2 {
		t.Fatalf("fresh messages: Since(earliest) returned %v, want both", idsOf(msgs))
	}
	eventually(t, "messages older than max age are dropped", func() bool {
		msgs, _ := since(t, b, hub.Earliest, old[1])
		return len(msgs) == 0
	})
	fresh := publish(t, b, hub.Message{Topic: "t", Data: "2"})[0]
	rec.wait(3)

	msgs, gap := since(t, b, hub.Earliest, fresh)
	checkGap(t, "Since(earliest)", gap, nil)
	checkIDs(t, "Since(earliest)", msgs, []string{fresh})

	// The client saw the last dropped message: it missed nothing.
	msgs, gap = since(t, b, old[1], fresh)
	checkGap(t, "Since(last dropped)", gap, nil)
	checkIDs(t, "Since(last dropped)", msgs, []string{fresh})

	// The client saw only the first: the second was dropped unseen.
	msgs, gap = since(t, b, old[0], fresh)
	checkGap(t, "Since(first dropped)", gap, &hub.Gap{LastID: old[0], FirstID: fresh})
	checkIDs(t, "Since(first dropped)", msgs, []string{fresh})
}

// testNoRetention: count 0 keeps nothing, with or without an age bound.
func testNoRetention(t *testing.T, newBroker NewBroker) {
	for _, r := range []hub.Retention{{}, {MaxAge: time.Hour}} {
		t.Run(fmt.Sprintf("age %s", r.MaxAge), func(t *testing.T) { testRetainsNothing(t, newBroker, r) })
	}
}

func testRetainsNothing(t *testing.T, newBroker NewBroker, r hub.Retention) {
	b, rec := start(t, newBroker, r)
	var ids []string
	for range 3 {
		ids = append(ids, publishN(t, b, 1, 1)...)
	}
	checkIDs(t, "delivered", rec.wait(3), ids)

	msgs, gap := since(t, b, hub.Earliest, ids[2])
	checkGap(t, "Since(earliest)", gap, nil)
	checkIDs(t, "Since(earliest)", msgs, nil)

	msgs, gap = since(t, b, ids[2], ids[2])
	checkGap(t, "Since(latest)", gap, nil)
	checkIDs(t, "Since(latest)", msgs, nil)

	msgs, gap = since(t, b, ids[0], ids[2])
	checkGap(t, "Since(first)", gap, &hub.Gap{LastID: ids[0]})
	checkIDs(t, "Since(first)", msgs, nil)
}

func testSetRetention(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	ids := publishN(t, b, 20, 4)
	b.SetRetention(hub.Retention{Count: 5})
	ids = append(ids, publishN(t, b, 1, 1)...)
	rec.wait(len(ids))
	last := ids[len(ids)-1]

	msgs, _ := since(t, b, hub.Earliest, last)
	if len(msgs) < 5 {
		t.Fatalf("after SetRetention(5): %d retained, want at least 5", len(msgs))
	}
	checkIDs(t, "after SetRetention(5)", msgs, ids[len(ids)-len(msgs):])

	b.SetRetention(hub.Retention{MaxAge: time.Hour})
	msgs, gap := since(t, b, hub.Earliest, last)
	checkGap(t, "after SetRetention(none)", gap, nil)
	checkIDs(t, "after SetRetention(none)", msgs, nil)
	msgs, gap = since(t, b, last, last)
	checkGap(t, "after SetRetention(none), from the latest", gap, nil)
	checkIDs(t, "after SetRetention(none), from the latest", msgs, nil)

	b.SetRetention(hub.Retention{Count: 100})
	more := publishN(t, b, 2, 2)
	rec.wait(len(ids) + 2)
	msgs, _ = since(t, b, hub.Earliest, more[1])
	if len(msgs) < 2 || !slices.Equal(idsOf(msgs[len(msgs)-2:]), more) {
		t.Fatalf("after SetRetention(100) and 2 publishes: retained %s, want them to end with %v", abbreviate(idsOf(msgs)), more)
	}
	msgs, gap = since(t, b, last, more[1])
	checkGap(t, "after SetRetention(100), from before the publishes", gap, nil)
	checkIDs(t, "after SetRetention(100), from before the publishes", msgs, more)
}

func testConcurrentPublish(t *testing.T, newBroker NewBroker) {
	const publishers, rounds = 4, 25
	b, rec := start(t, newBroker, hub.Retention{Count: 1000})
	batches := make([][][]string, publishers) // per publisher, the IDs of each call
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			for r := range rounds {
				msgs := make([]hub.Message, 1+r%2)
				for i := range msgs {
					msgs[i] = hub.Message{Topic: fmt.Sprintf("p/%d", p), Data: fmt.Sprintf("%d.%d", r, i)}
				}
				ids, err := b.Publish(context.Background(), msgs)
				if err != nil {
					errs <- err
					return
				}
				batches[p] = append(batches[p], ids)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}

	total := 0
	for _, calls := range batches {
		for _, ids := range calls {
			total += len(ids)
		}
	}
	got := rec.wait(total)
	pos := make(map[string]int, total)
	for i, m := range got {
		if _, dup := pos[m.ID]; dup {
			t.Fatalf("ID %s delivered twice", m.ID)
		}
		pos[m.ID] = i
	}
	for p, calls := range batches {
		prev := -1
		for _, ids := range calls {
			for i, id := range ids {
				at, ok := pos[id]
				switch {
				case !ok:
					t.Fatalf("publisher %d: ID %s never delivered", p, id)
				case at <= prev:
					t.Fatalf("publisher %d: ID %s delivered out of publish order", p, id)
				case i > 0 && at != prev+1:
					t.Fatalf("publisher %d: batch %v not delivered contiguously", p, ids)
				}
				prev = at
			}
		}
	}
	retained, _ := since(t, b, hub.Earliest, got[len(got)-1].ID)
	sameMessages(t, "Since(earliest) after concurrent publishes", retained, got)
}

// testHubResume runs the broker under a Hub: subscribers that resume while
// messages keep coming get each message after their last ID exactly once,
// whether it comes from history or live.
func testHubResume(t *testing.T, newBroker NewBroker) {
	const n = 150
	h := hub.New(newBroker(t, hub.Retention{Count: 1000}), hub.Options{Queue: 2 * n, Retention: hub.Retention{Count: 1000}})
	t.Cleanup(func() { _ = h.Close() })
	if err := h.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	fromStart := resume(t, h, hub.Earliest)

	var ids []string
	var resumed []*resumer
	for i := range n {
		got, err := h.Publish(ctx(t), hub.Message{Topic: "t", Data: strconv.Itoa(i)})
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
		ids = append(ids, got...)
		if i%25 == 10 {
			resumed = append(resumed, resume(t, h, ids[i-7]))
		}
	}
	fromStart.expect(t, ids)
	for _, r := range resumed {
		k := slices.Index(ids, r.lastID)
		r.expect(t, ids[k+1:])
	}
}

// testSinceFilters: Since returns only what Match accepts, pages of at
// most Limit of them, and More only when the limit cut the page short.
func testSinceFilters(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 1000})
	var msgs []hub.Message
	for i := range 60 {
		topic := "other"
		if i%3 == 0 {
			topic = "wanted"
		}
		msgs = append(msgs, hub.Message{Topic: topic, Data: strconv.Itoa(i)})
	}
	ids := publish(t, b, msgs...)
	rec.wait(len(ids))
	last := ids[len(ids)-1]
	var want []string
	for i, id := range ids {
		if i%3 == 0 {
			want = append(want, id)
		}
	}
	wanted := func(topic string) bool { return topic == "wanted" }

	got, gap := sinceMatching(t, b, hub.Earliest, last, wanted)
	checkGap(t, "Since(earliest, wanted)", gap, nil)
	checkIDs(t, "Since(earliest, wanted)", got, want)
	got, gap = sinceMatching(t, b, ids[10], last, wanted)
	checkGap(t, "Since(message 10, wanted)", gap, nil)
	checkIDs(t, "Since(message 10, wanted)", got, want[4:])
	got, gap = sinceMatching(t, b, "foreign", last, wanted)
	checkGap(t, "Since(foreign, wanted)", gap, &hub.Gap{LastID: "foreign", FirstID: ids[0]})
	checkIDs(t, "Since(foreign, wanted)", got, want)
	got, _ = sinceMatching(t, b, hub.Earliest, last, func(string) bool { return false })
	checkIDs(t, "Since(earliest, nothing)", got, nil)

	// A page that ends exactly at the last match says there is no more
	// only if none follows.
	page, err := b.Since(ctx(t), hub.Query{After: hub.Earliest, Upto: last, Match: wanted, Limit: len(want)})
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "Since(earliest, wanted, limit all)", page.Messages, want)
	if page.More {
		t.Fatal("Since with a limit of exactly all matches says More")
	}
	page, err = b.Since(ctx(t), hub.Query{After: hub.Earliest, Upto: last, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if checkIDs(t, "Since(earliest, limit 1)", page.Messages, ids[:1]); !page.More {
		t.Fatal("Since with limit 1 of 60: no More")
	}
}

// testHead: Head names the last message Since(…, "") reads up to, and is
// empty for a broker with no history of its own yet.
func testHead(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	head, err := b.Head(ctx(t))
	if err != nil || head != "" {
		t.Fatalf("Head of a new broker: %q, %v; want none", head, err)
	}
	ids := publishN(t, b, 5, 5)
	rec.wait(len(ids))
	msgs, _ := since(t, b, hub.Earliest, "")
	if head, err = b.Head(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if len(msgs) > 0 && msgs[len(msgs)-1].ID != head || len(msgs) == 0 && head != "" {
		t.Fatalf("Head %q, but Since(earliest, \"\") returns %v", head, idsOf(msgs))
	}
}

// testHubResumePages resumes over more history than one page holds while
// messages keep coming: the pages and the live messages together are each
// message after the resume point exactly once.
func testHubResumePages(t *testing.T, newBroker NewBroker) {
	const before, during = 3*hub.ReplayPage + 5, 50
	h := hub.New(newBroker(t, hub.Retention{Count: 2000}), hub.Options{Queue: 4 * during, Retention: hub.Retention{Count: 2000}})
	t.Cleanup(func() { _ = h.Close() })
	if err := h.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var ids []string
	for i := 0; i < before; i += 50 {
		msgs := make([]hub.Message, min(50, before-i))
		for j := range msgs {
			msgs[j] = hub.Message{Topic: fmt.Sprintf("t/%d", (i+j)%2), Data: strconv.Itoa(i + j)}
		}
		got, err := h.Publish(ctx(t), msgs...)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		ids = append(ids, got...)
	}
	// Wait for the hub to have delivered them all: Subscribe replays up to
	// what it delivered.
	probe := resume(t, h, ids[len(ids)-2])
	probe.expect(t, ids[len(ids)-1:])

	sub, backlog, gap, err := h.Subscribe(ctx(t), []string{"t/0"}, ids[2])
	if err != nil || gap != nil {
		t.Fatalf("Subscribe: %v, gap %+v", err, gap)
	}
	t.Cleanup(sub.Close)
	if len(backlog) != hub.ReplayPage || !sub.Replaying() {
		t.Fatalf("first page: %d messages, replaying %v; want %d and more to come", len(backlog), sub.Replaying(), hub.ReplayPage)
	}
	published := make(chan []string, 1)
	go func() {
		var more []string
		for i := range during {
			got, err := h.Publish(context.Background(), hub.Message{Topic: "t/0", Data: "live " + strconv.Itoa(i)})
			if err != nil {
				t.Errorf("Publish: %v", err)
				break
			}
			more = append(more, got...)
		}
		published <- more
	}()
	got := idsOf(backlog)
	for sub.Replaying() {
		page, gap, err := sub.Replay(ctx(t))
		if err != nil || gap != nil {
			t.Fatalf("Replay: %v, gap %+v", err, gap)
		}
		got = append(got, idsOf(page)...)
	}
	var want []string
	for i, id := range ids[3:] {
		if (i+3)%2 == 0 {
			want = append(want, id)
		}
	}
	want = append(want, <-published...)
	r := &resumer{lastID: ids[2], sub: sub}
	r.backlog = make([]*hub.Message, len(got))
	for i, id := range got {
		r.backlog[i] = &hub.Message{ID: id}
	}
	r.expect(t, want)
}

type resumer struct {
	lastID  string
	sub     *hub.Subscriber
	backlog []*hub.Message
}

func resume(t *testing.T, h *hub.Hub, lastID string) *resumer {
	t.Helper()
	sub, backlog, gap, err := h.Subscribe(ctx(t), []string{"#"}, lastID)
	if err != nil {
		t.Fatalf("Subscribe from %q: %v", lastID, err)
	}
	if gap != nil {
		t.Fatalf("Subscribe from %q: unexpected gap %+v", lastID, gap)
	}
	t.Cleanup(sub.Close)
	return &resumer{lastID: lastID, sub: sub, backlog: backlog}
}

// expect checks that backlog and live messages together are exactly want.
func (r *resumer) expect(t *testing.T, want []string) {
	t.Helper()
	got := idsOf(r.backlog)
	deadline := time.After(Wait)
	for len(got) < len(want) {
		if m, ok := r.sub.Next(); ok {
			got = append(got, m.ID)
			continue
		}
		select {
		case <-r.sub.Ready():
		case <-r.sub.Done():
			t.Fatalf("resumed from %q: subscription ended: %v", r.lastID, r.sub.Err())
		case <-deadline:
			t.Fatalf("resumed from %q: %d of %d messages within %s", r.lastID, len(got), len(want), Wait)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("resumed from %q (%d from history): got %s, want %s", r.lastID, len(r.backlog), abbreviate(got), abbreviate(want))
	}
	if m, ok := r.sub.Next(); ok {
		t.Fatalf("resumed from %q: extra message %s", r.lastID, m.ID)
	}
}

func testClose(t *testing.T, newBroker NewBroker) {
	baseline := runtime.NumGoroutine()
	b := newBroker(t, hub.Retention{Count: 10})
	rec := newRecorder(t)
	if err := b.Start(rec.deliver); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if sig, ok := b.(hub.Signaler); ok {
		if err := sig.StartSignals(func(*hub.Message) {}); err != nil {
			t.Fatalf("StartSignals: %v", err)
		}
	}
	publishN(t, b, 3, 1)
	rec.wait(3)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	eventually(t, "goroutines back to the baseline after Close", func() bool {
		return runtime.NumGoroutine() <= baseline
	})
}

// eventually polls cond until it holds or Wait passes, for state that
// offers no event to wait on (time passing, goroutine counts).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, Wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
