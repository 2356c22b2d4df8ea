package brokertest

// Clauses on publishing and delivery: IDs, order, fields, concurrent
// publishers, and a Close that stops every goroutine.

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

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
		{Topic: "bytes", Event: "blob", Data: "\x00\xff\xfe\r\n\x80 not UTF-8", Binary: true},
		{Topic: "bytes", Data: "binary that happens to be text", Binary: true},
		{Topic: "bytes", Data: "", Binary: true},
	}
	ids := publish(t, b, msgs...)
	got := rec.wait(len(msgs))
	checkIDs(t, "delivered", got, ids)
	for i, m := range got {
		if m.Topic != msgs[i].Topic || m.Event != msgs[i].Event || m.Data != msgs[i].Data || m.Binary != msgs[i].Binary {
			t.Fatalf("message %d came back as {%q %q %.40q binary=%v}, want {%q %q %.40q binary=%v}",
				i, m.Topic, m.Event, m.Data, m.Binary, msgs[i].Topic, msgs[i].Event, msgs[i].Data, msgs[i].Binary)
		}
	}
	retained, _ := since(t, b, hub.Earliest, ids[len(ids)-1])
	sameMessages(t, "Since(earliest)", retained, got)
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
