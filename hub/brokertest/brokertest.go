// Package brokertest is the contract every hub.Broker keeps, written as a
// test suite: the memory, bolt and Redis brokers each run it from their own
// tests, so IDs, ordering, resume, gaps and retention mean the same on all.
package brokertest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
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
	_, byRule := probe.(hub.RuleRetainer)
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
	if byRule {
		for _, c := range ruleClauses {
			cases = append(cases, clause{c.name, c.run})
		}
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
		q.Next(page)
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
		if g.ID != w.ID || g.Topic != w.Topic || g.Event != w.Event || g.Data != w.Data || g.Binary != w.Binary || !g.Time.Equal(w.Time) {
			t.Fatalf("%s: message %d is {%s %q %q %.40q binary=%v %v}, want {%s %q %q %.40q binary=%v %v}", what, i,
				g.ID, g.Topic, g.Event, g.Data, g.Binary, g.Time, w.ID, w.Topic, w.Event, w.Data, w.Binary, w.Time)
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
