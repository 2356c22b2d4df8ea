package hub

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMemoryBrokerIDs(t *testing.T) {
	clock := newFakeClock()
	b := NewMemoryBroker(Retention{Count: 100})
	b.now = clock.Now
	var delivered []*Message
	if err := b.Start(func(m *Message) { delivered = append(delivered, m) }); err != nil {
		t.Fatal(err)
	}

	var got []string
	for i := range 10 {
		clock.Advance(time.Second)
		n := 1 + i%3 // single messages and batches
		got = append(got, brokerPublish(t, b, "t", n)...)
	}
	var prev uint64
	for _, id := range got {
		epoch, _, _ := strings.Cut(id, "-")
		if epoch != b.epoch || epoch == "" {
			t.Fatalf("ID %q does not carry the broker epoch %q", id, b.epoch)
		}
		seq := seqOf(t, id)
		if seq != prev+1 {
			t.Fatalf("ID %q follows seq %d: want strictly increasing by one from 1", id, prev)
		}
		prev = seq
	}
	if !slices.Equal(ids(delivered), got) {
		t.Fatalf("delivered %v, want the published IDs in order %v", ids(delivered), got)
	}
	for _, m := range delivered {
		if m.Time.IsZero() || m.Time.After(clock.Now()) {
			t.Fatalf("message %s has time %v, want the broker clock at publish", m.ID, m.Time)
		}
	}
	if !strings.Contains(b.String(), b.epoch) {
		t.Fatalf("String() = %q, want it to name the epoch %q", b.String(), b.epoch)
	}

	other := NewMemoryBroker(Retention{Count: 100})
	if other.epoch == b.epoch {
		t.Fatalf("two brokers share epoch %q", b.epoch)
	}
}

func TestMemoryBrokerPublishKeepsCallerMessages(t *testing.T) {
	b := NewMemoryBroker(Retention{Count: 10})
	msgs := []Message{{Topic: "a", Event: "e", Data: "1"}, {Topic: "b", Data: "2"}}
	got, err := b.Publish(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	if msgs[0].ID != "" || !msgs[0].Time.IsZero() {
		t.Fatalf("Publish wrote into the caller's slice: %+v", msgs[0])
	}
	stored, _ := since(t, b, Earliest, got[1])
	if len(stored) != 2 {
		t.Fatalf("stored %d messages, want 2", len(stored))
	}
	for i, m := range stored {
		if m.ID != got[i] || m.Topic != msgs[i].Topic || m.Event != msgs[i].Event || m.Data != msgs[i].Data {
			t.Fatalf("stored message %d = %+v, want %+v with ID %s", i, *m, msgs[i], got[i])
		}
	}
}

func TestMemoryBrokerCountBound(t *testing.T) {
	for _, batch := range []int{1, 7, 2000} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			b := NewMemoryBroker(Retention{Count: 1000})
			var published []string
			for len(published) < 2000 {
				published = append(published, brokerPublish(t, b, "t", min(batch, 2000-len(published)))...)
			}
			msgs, gap := since(t, b, Earliest, published[len(published)-1])
			if gap != nil {
				t.Fatalf("Earliest gave gap %+v", gap)
			}
			assertRange(t, msgs, published, 1001, 2000)
			if len(b.log) > 2*1000+64 {
				t.Fatalf("log grew to %d entries, want at most 2*Count+64, its dropped ones compacted", len(b.log))
			}
		})
	}
}

func TestMemoryBrokerAgeBound(t *testing.T) {
	clock := newFakeClock()
	b := NewMemoryBroker(Retention{Count: 100, MaxAge: time.Minute})
	b.now = clock.Now

	var published []string
	published = append(published, brokerPublish(t, b, "t", 3)...) // t0: seq 1-3
	clock.Advance(30 * time.Second)
	published = append(published, brokerPublish(t, b, "t", 2)...) // t0+30s: seq 4-5
	last := published[len(published)-1]

	clock.Advance(30 * time.Second) // seq 1-3 are exactly MaxAge old: kept
	msgs, _ := since(t, b, Earliest, last)
	assertRange(t, msgs, published, 1, 5)

	clock.Advance(time.Nanosecond) // now older than MaxAge: dropped on read
	msgs, gap := since(t, b, Earliest, last)
	if gap != nil {
		t.Fatalf("Earliest gave gap %+v", gap)
	}
	assertRange(t, msgs, published, 4, 5)

	msgs, gap = since(t, b, published[1], last)
	if gap == nil || gap.LastID != published[1] || gap.FirstID != published[3] {
		t.Fatalf("resume from an aged-out ID: gap %+v, want {LastID:%s FirstID:%s}", gap, published[1], published[3])
	}
	assertRange(t, msgs, published, 4, 5)

	msgs, gap = since(t, b, published[2], last) // the last one aged out
	if gap != nil {
		t.Fatalf("resume from the last aged-out ID gave gap %+v, want none", gap)
	}
	assertRange(t, msgs, published, 4, 5)

	clock.Advance(time.Hour) // everything aged out
	msgs, gap = since(t, b, Earliest, last)
	if gap != nil || len(msgs) != 0 {
		t.Fatalf("Earliest on an aged-out history: %v, gap %+v; want nothing", ids(msgs), gap)
	}
	msgs, gap = since(t, b, published[3], last)
	if gap == nil || gap.FirstID != "" || len(msgs) != 0 {
		t.Fatalf("resume on an aged-out history: %v, gap %+v; want a gap with no FirstID", ids(msgs), gap)
	}
	if _, gap = since(t, b, last, last); gap != nil {
		t.Fatalf("resume from the latest ID after everything aged out gave gap %+v: nothing was missed", gap)
	}

	// Publishing also trims, and the sequence goes on.
	next := brokerPublish(t, b, "t", 1)[0]
	if seqOf(t, next) != 6 {
		t.Fatalf("next ID %s, want seq 6", next)
	}
	msgs, _ = since(t, b, Earliest, next)
	if !slices.Equal(ids(msgs), []string{next}) {
		t.Fatalf("history = %v, want [%s]", ids(msgs), next)
	}
}

func TestMemoryBrokerCountAndAge(t *testing.T) {
	clock := newFakeClock()
	b := NewMemoryBroker(Retention{Count: 3, MaxAge: time.Minute})
	b.now = clock.Now
	published := brokerPublish(t, b, "t", 5)
	last := published[4]
	msgs, _ := since(t, b, Earliest, last)
	assertRange(t, msgs, published, 3, 5) // count bound

	clock.Advance(40 * time.Second)
	published = append(published, brokerPublish(t, b, "t", 1)...)
	clock.Advance(40 * time.Second)
	msgs, _ = since(t, b, Earliest, published[5])
	assertRange(t, msgs, published, 6, 6) // age bound
}

func TestMemoryBrokerSince(t *testing.T) {
	// Count 10 after 15 publishes: seq 1-5 evicted, 6-15 retained. The
	// ring has wrapped, so indexes do not line up with sequences.
	b := NewMemoryBroker(Retention{Count: 10})
	published := brokerPublish(t, b, "t", 15)
	id := func(seq int) string { return published[seq-1] }
	other := NewMemoryBroker(Retention{Count: 10})
	otherIDs := brokerPublish(t, other, "t", 8)

	tests := []struct {
		name     string
		lastID   string
		upto     string
		from, to int  // expected sequences, inclusive; from > to for none
		gap      bool // FirstID is then seq 6
	}{
		{"earliest", Earliest, id(15), 6, 15, false},
		{"retained", id(10), id(15), 11, 15, false},
		{"oldest retained", id(6), id(15), 7, 15, false},
		{"latest", id(15), id(15), 1, 0, false},
		{"last evicted", id(5), id(15), 6, 15, false},
		{"upto bounds the result", id(8), id(12), 9, 12, false},
		{"earliest up to", Earliest, id(7), 6, 7, false},
		{"upto before lastID", id(12), id(9), 1, 0, false},
		{"no upto", id(8), "", 1, 0, false},
		{"upto from another broker", id(8), otherIDs[7], 1, 0, false},

		{"evicted", id(4), id(15), 6, 15, true},
		{"first ever", id(1), id(15), 6, 15, true},
		{"other epoch", otherIDs[7], id(15), 6, 15, true},
		{"other epoch, gap up to", otherIDs[2], id(9), 6, 9, true},
		{"future seq", b.epoch + "-16", id(15), 6, 15, true},
		{"far future seq", b.epoch + "-99999999999", id(15), 6, 15, true},
		{"seq zero", b.epoch + "-0", id(15), 6, 15, true},
		{"negative seq", b.epoch + "--3", id(15), 6, 15, true},
		{"non-numeric seq", b.epoch + "-x", id(15), 6, 15, true},
		{"two dashes", id(10) + "-1", id(15), 6, 15, true},
		{"epoch only", b.epoch, id(15), 6, 15, true},
		{"garbage", "hello", id(15), 6, 15, true},
		{"empty", "", id(15), 6, 15, true},
		{"bare seq", "10", id(15), 6, 15, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, gap := since(t, b, tt.lastID, tt.upto)
			switch {
			case tt.gap && gap == nil:
				t.Fatalf("Since(%q) gave no gap, want one", tt.lastID)
			case tt.gap && (gap.LastID != tt.lastID || gap.FirstID != id(6)):
				t.Fatalf("Since(%q) gap = %+v, want {LastID:%q FirstID:%q}", tt.lastID, *gap, tt.lastID, id(6))
			case !tt.gap && gap != nil:
				t.Fatalf("Since(%q) gave gap %+v, want none", tt.lastID, *gap)
			}
			assertRange(t, msgs, published, tt.from, tt.to)
		})
	}
}

// TestMemoryBrokerSinceEveryPosition resumes from every retained ID at every
// ring rotation: exactly the messages after lastID come back.
func TestMemoryBrokerSinceEveryPosition(t *testing.T) {
	const count = 7
	b := NewMemoryBroker(Retention{Count: count})
	var published []string
	for len(published) < 3*count {
		published = append(published, brokerPublish(t, b, "t/"+strconv.Itoa(len(published)), 1)...)
		n := len(published)
		last := published[n-1]
		oldest := max(1, n-count+1)
		msgs, gap := since(t, b, Earliest, last)
		if gap != nil {
			t.Fatalf("after %d publishes, Earliest gave gap %+v", n, *gap)
		}
		assertRange(t, msgs, published, oldest, n)
		for k := oldest - 1; k <= n; k++ { // lastID's seq; oldest-1 is the last evicted
			if k == 0 {
				continue
			}
			msgs, gap := since(t, b, published[k-1], last)
			if gap != nil {
				t.Fatalf("after %d publishes, Since(seq %d) gave gap %+v", n, k, *gap)
			}
			assertRange(t, msgs, published, k+1, n)
			for _, m := range msgs {
				if m.Topic != "t/"+strconv.Itoa(int(seqOf(t, m.ID))-1) {
					t.Fatalf("message %s has topic %q: ring slot mix-up", m.ID, m.Topic)
				}
			}
		}
		if n > count+1 {
			if _, gap := since(t, b, published[n-count-2], last); gap == nil {
				t.Fatalf("after %d publishes, resume from seq %d (evicted before the last evicted) gave no gap", n, n-count-1)
			}
		}
	}
}

func TestMemoryBrokerEmptyHistory(t *testing.T) {
	b := NewMemoryBroker(Retention{Count: 10})
	msgs, gap := since(t, b, Earliest, "")
	if len(msgs) != 0 || gap != nil {
		t.Fatalf("Earliest on a new broker: %v, gap %+v; want nothing", ids(msgs), gap)
	}
	msgs, gap = since(t, b, "stale-7", "")
	if len(msgs) != 0 || gap == nil || gap.FirstID != "" {
		t.Fatalf("unknown ID on a new broker: %v, gap %+v; want a gap without FirstID", ids(msgs), gap)
	}
}

func TestMemoryBrokerSetRetention(t *testing.T) {
	t.Run("count shrinks at once", func(t *testing.T) {
		b := NewMemoryBroker(Retention{Count: 100})
		published := brokerPublish(t, b, "t", 100)
		b.SetRetention(Retention{Count: 10})
		msgs, gap := since(t, b, Earliest, published[99])
		if gap != nil {
			t.Fatalf("gap %+v", gap)
		}
		assertRange(t, msgs, published, 91, 100)
		if len(b.log) > 10 {
			t.Fatalf("log keeps %d entries after shrinking to 10", len(b.log))
		}
		if _, gap := since(t, b, published[50], published[99]); gap == nil {
			t.Fatal("resume from a trimmed ID gave no gap")
		}

		published = append(published, brokerPublish(t, b, "t", 25)...)
		msgs, _ = since(t, b, Earliest, published[124])
		assertRange(t, msgs, published, 116, 125)
	})

	t.Run("count grows", func(t *testing.T) {
		b := NewMemoryBroker(Retention{Count: 5})
		published := brokerPublish(t, b, "t", 8)
		b.SetRetention(Retention{Count: 50})
		published = append(published, brokerPublish(t, b, "t", 60)...)
		msgs, _ := since(t, b, Earliest, published[67])
		assertRange(t, msgs, published, 19, 68)
	})

	t.Run("age shrinks at once", func(t *testing.T) {
		clock := newFakeClock()
		b := NewMemoryBroker(Retention{Count: 100, MaxAge: time.Hour})
		b.now = clock.Now
		published := brokerPublish(t, b, "t", 3)
		clock.Advance(10 * time.Minute)
		published = append(published, brokerPublish(t, b, "t", 2)...)
		clock.Advance(time.Minute)
		b.SetRetention(Retention{Count: 100, MaxAge: 5 * time.Minute})
		// Read the count directly: Since would trim on its own.
		b.mu.Lock()
		n := b.live
		b.mu.Unlock()
		if n != 2 {
			t.Fatalf("%d messages retained right after SetRetention, want 2", n)
		}
		msgs, _ := since(t, b, Earliest, published[4])
		assertRange(t, msgs, published, 4, 5)
	})

	t.Run("to nothing", func(t *testing.T) {
		b := NewMemoryBroker(Retention{Count: 10})
		published := brokerPublish(t, b, "t", 5)
		b.SetRetention(Retention{})
		msgs, gap := since(t, b, Earliest, published[4])
		if len(msgs) != 0 || gap != nil {
			t.Fatalf("Earliest after SetRetention(Retention{}): %v, gap %+v; want nothing", ids(msgs), gap)
		}
		if _, gap := since(t, b, published[1], published[4]); gap == nil {
			t.Fatal("resume after SetRetention(Retention{}) gave no gap")
		}
	})
}

func TestMemoryBrokerNoRetention(t *testing.T) {
	b := NewMemoryBroker(Retention{})
	var delivered int
	if err := b.Start(func(*Message) { delivered++ }); err != nil {
		t.Fatal(err)
	}
	published := brokerPublish(t, b, "t", 5)
	if delivered != 5 {
		t.Fatalf("delivered %d, want 5: no history must not mean no delivery", delivered)
	}
	last := published[4]

	msgs, gap := since(t, b, Earliest, last)
	if len(msgs) != 0 || gap != nil {
		t.Fatalf("Earliest: %v, gap %+v; want nothing, no gap", ids(msgs), gap)
	}
	for _, lastID := range append(published[:4:4], "garbage", NewMemoryBroker(Retention{}).epoch+"-1", b.epoch+"-6") {
		msgs, gap := since(t, b, lastID, last)
		if len(msgs) != 0 || gap == nil || gap.LastID != lastID || gap.FirstID != "" {
			t.Fatalf("Since(%q): %v, gap %+v; want nothing and a gap without FirstID", lastID, ids(msgs), gap)
		}
	}
	// Resuming from the very last message misses nothing, so it is no gap
	// even with no history.
	if msgs, gap := since(t, b, last, last); len(msgs) != 0 || gap != nil {
		t.Fatalf("Since(latest): %v, gap %+v; want nothing, no gap", ids(msgs), gap)
	}
	if n := len(b.log); n != 0 {
		t.Fatalf("log has %d entries with no retention", n)
	}
}

// BenchmarkSince measures a resume over a 1000-message history: from the
// oldest message, and from the middle.
func BenchmarkSince(b *testing.B) {
	m := NewMemoryBroker(Retention{Count: 1000})
	published := brokerPublish(b, m, "t", 1000)
	last := published[999]
	for _, bc := range []struct {
		name   string
		lastID string
		want   int
	}{
		{"earliest", Earliest, 1000},
		{"middle", published[499], 500},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				page, _ := m.Since(context.Background(), all(bc.lastID, last))
				if len(page.Messages) != bc.want {
					b.Fatalf("got %d messages, want %d", len(page.Messages), bc.want)
				}
			}
		})
	}
}
