package hub

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// Whatever a client sends as a topic or filter: validation never panics
// and explains itself in one line (it becomes an HTTP reason), a valid
// topic is a valid filter that matches itself, and for a valid
// filter and topic the subscriber index visits the subscriber exactly when
// Match says so. Adding and removing leaves the index empty.
func FuzzTopic(f *testing.F) {
	for _, seed := range [][2]string{
		{"a/b", "a/b"}, {"a/+", "a/b"}, {"a/#", "a"}, {"#", "$x/y"}, {"+/y", "$x/y"},
		{"$x/#", "$x/y"}, {"a//b", "a//b"}, {"+/+", "a/"}, {"/#", "/"}, {"a/#/b", "a/c/b"},
		{"a+", "a+"}, {strings.Repeat("a/", 15) + "#", strings.Repeat("a/", 16)},
		{"\xff", "a"}, {"a\x00", "a\x00"}, {"é/+", "é/ü"}, {"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		filterErr, topicErr := ValidateFilter(filter), ValidateTopic(topic)
		matched := Match(filter, topic) // must not panic on anything
		for _, err := range []error{filterErr, topicErr} {
			if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("reason is not one line: %q", err)
			}
		}
		if topicErr == nil {
			if err := ValidateFilter(topic); err != nil {
				t.Fatalf("topic %q is valid but not as a filter: %v", topic, err)
			}
			if !Match(topic, topic) {
				t.Fatalf("topic %q does not match itself", topic)
			}
		}
		if filterErr == nil && !strings.ContainsAny(filter, "+#") && ValidateTopic(filter) != nil {
			t.Fatalf("filter %q has no wildcard but is not a valid topic", filter)
		}
		if filterErr != nil || topicErr != nil {
			return
		}
		var ix index
		s := &Subscriber{}
		ix.add(filter, s)
		visits := 0
		ix.match(topic, func(got *Subscriber) {
			if got != s {
				t.Fatal("index visited a subscriber never added")
			}
			visits++
		})
		want := 0
		if matched {
			want = 1
		}
		if visits != want {
			t.Fatalf("filter %q, topic %q: index visited %d times, Match says %v", filter, topic, visits, matched)
		}
		ix.remove(filter, s)
		if len(ix.root.children) != 0 || len(ix.root.subs) != 0 {
			t.Fatalf("filter %q: index not empty after remove", filter)
		}
	})
}

// Whatever ID a client resumes from: Since never panics or fails, returns
// a contiguous run of retained messages up to upto, and reports a gap
// exactly when the ID is not one this broker can resume from. "EPOCH" in
// an input stands for the broker's epoch, so the fuzzer reaches real IDs.
func FuzzMemorySince(f *testing.F) {
	for _, seed := range []struct {
		lastID, upto string
		published    uint8
		keep         uint8
	}{
		{"EPOCH-3", "EPOCH-10", 10, 5},
		{"EPOCH-6", "EPOCH-10", 10, 5},
		{"EPOCH-5", "EPOCH-8", 10, 5},
		{"earliest", "EPOCH-10", 10, 0},
		{"EPOCH-0", "EPOCH-2", 2, 2},
		{"EPOCH-18446744073709551615", "EPOCH-1", 1, 1},
		{"EPOCH--1", "", 3, 3},
		{"EPOCH-+1", "EPOCH-3", 3, 3},
		{"EPOCH-01", "EPOCH-03", 3, 3},
		{"other-1", "EPOCH-3", 3, 3},
		{"EPOCH", "EPOCH-3", 3, 3},
		{"", "", 0, 0},
	} {
		f.Add(seed.lastID, seed.upto, seed.published, seed.keep)
	}
	f.Fuzz(func(t *testing.T, lastID, upto string, published, keep uint8) {
		b := NewMemoryBroker(Retention{Count: int(keep % 32)})
		lastID = strings.ReplaceAll(lastID, "EPOCH", b.epoch)
		upto = strings.ReplaceAll(upto, "EPOCH", b.epoch)
		if err := b.Start(func(*Message) {}); err != nil {
			t.Fatal(err)
		}
		for range published % 64 {
			if _, err := b.Publish(context.Background(), []Message{{Topic: "t"}}); err != nil {
				t.Fatal(err)
			}
		}
		page, err := b.Since(context.Background(), all(lastID, upto))
		msgs, gap := page.Messages, page.Gap
		if err != nil {
			t.Fatal(err)
		}
		end, _ := b.parse(upto)
		evicted := b.defDrops["t"].seq // the one topic's last drop
		var prev uint64
		for i, m := range msgs {
			seq, ok := b.parse(m.ID)
			switch {
			case !ok:
				t.Fatalf("returned ID %q that does not parse", m.ID)
			case seq > end || seq > b.seq || seq <= evicted:
				t.Fatalf("returned %s: beyond upto %d or not retained (last %d, evicted %d)", m.ID, end, b.seq, evicted)
			case i > 0 && seq != prev+1:
				t.Fatalf("returned %s after %d: not contiguous", m.ID, prev)
			}
			prev = seq
		}
		seq, ok := b.parse(lastID)
		resumable := lastID == Earliest || ok && seq >= evicted && seq <= b.seq
		if resumable == (gap != nil) {
			t.Fatalf("lastID %q (last %d, evicted %d): gap %+v", lastID, b.seq, evicted, gap)
		}
		if gap != nil && gap.LastID != lastID {
			t.Fatalf("gap names %q, want %q", gap.LastID, lastID)
		}
		if ok && resumable && len(msgs) > 0 {
			if first, _ := b.parse(msgs[0].ID); first != seq+1 {
				t.Fatalf("resumed from %d, first returned %d", seq, first)
			}
		}
		if ok && seq > 0 {
			if back, ok := b.parse(b.epoch + "-" + strconv.FormatUint(seq, 10)); !ok || back != seq {
				t.Fatalf("sequence %d does not round-trip", seq)
			}
		}
	})
}
