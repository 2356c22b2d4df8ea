package bolt

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Whatever ID a client resumes from: parsing and Since on a real file
// never panic or fail, Since returns a contiguous run of retained
// messages, and reports a gap exactly when the ID is not one this file
// can resume from. "EPOCH" in an input stands for the file's epoch, so the
// fuzzer reaches real IDs.
func FuzzSince(f *testing.F) {
	for _, seed := range [][2]string{
		{"EPOCH-3", "EPOCH-10"}, {"EPOCH-5", "EPOCH-7"}, {"EPOCH-0", "EPOCH-2"},
		{"earliest", ""}, {"earliest", "EPOCH-10"}, {"EPOCH-18446744073709551615", "EPOCH-18446744073709551615"},
		{"EPOCH--1", "EPOCH-3"}, {"EPOCH-+1", "EPOCH-3"}, {"EPOCH-01", "EPOCH-03"},
		{"EPOCH-1-2", "EPOCH-3"}, {"other-1", "EPOCH-3"}, {"EPOCH", ""}, {"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	b := New(filepath.Join(f.TempDir(), "history.db"), hub.Retention{Count: 5})
	if err := b.Start(func(*hub.Message) {}); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = b.Close() })
	for range 10 {
		if _, err := b.Publish(context.Background(), []hub.Message{{Topic: "t", Data: "x"}}); err != nil {
			f.Fatal(err)
		}
	}
	const last, evicted = 10, 5 // sequences: 10 published, 5 kept

	f.Fuzz(func(t *testing.T, lastID, upto string) {
		lastID = strings.ReplaceAll(lastID, "EPOCH", b.epoch)
		upto = strings.ReplaceAll(upto, "EPOCH", b.epoch)
		page, err := b.Since(context.Background(), hub.Query{After: lastID, Upto: upto, Limit: math.MaxInt})
		msgs, gap := page.Messages, page.Gap
		if err != nil {
			t.Fatal(err)
		}
		end, _ := b.parse(upto)
		if upto == "" {
			end = b.startSeq
		}
		var prev uint64
		for i, m := range msgs {
			seq, ok := b.parse(m.ID)
			switch {
			case !ok:
				t.Fatalf("returned ID %q that does not parse", m.ID)
			case seq > end || seq > last || seq <= evicted:
				t.Fatalf("returned %s: beyond upto or not retained", m.ID)
			case i > 0 && seq != prev+1:
				t.Fatalf("returned %s after %d: not contiguous", m.ID, prev)
			}
			prev = seq
		}
		seq, ok := b.parse(lastID)
		if ok && seq == 0 {
			t.Fatalf("%q parsed as sequence 0, which no message has", lastID)
		}
		resumable := lastID == hub.Earliest || ok && seq >= evicted && seq <= last
		if resumable == (gap != nil) {
			t.Fatalf("lastID %q: gap %+v", lastID, gap)
		}
		if ok && resumable && len(msgs) > 0 {
			if first, _ := b.parse(msgs[0].ID); first != seq+1 {
				t.Fatalf("resumed from %d, first returned %d", seq, first)
			}
		}
		if ok {
			if back, ok := b.parse(b.id(seq)); !ok || back != seq {
				t.Fatalf("sequence %d does not round-trip through %q", seq, b.id(seq))
			}
		}
	})
}

// Whatever bytes a damaged or foreign file holds as a record, decoding
// never panics; what decodes encodes back to a record that decodes the
// same.
func FuzzRecord(f *testing.F) {
	for _, m := range []hub.Message{
		{Topic: "a/b", Event: "e", Data: "hello"},
		{Topic: "t", Data: strings.Repeat("x", 300)},
		{Topic: strings.Repeat("t", 200), Event: "", Data: ""},
	} {
		m.Time = time.Unix(1700000000, 123)
		f.Add(encode(&m))
	}
	for _, raw := range []string{"", "\x01", "\x02\x00", "\x01\x00", "\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "\x01\x80\x80", "\x01\x00\x05ab"} {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		rec, ok := parseRecord(v)
		if !ok {
			return
		}
		m := rec.message()
		if len(m.Topic)+len(m.Event)+len(m.Data) > len(v) {
			t.Fatalf("decoded more bytes than %d", len(v))
		}
		again, ok := parseRecord(encode(m))
		if !ok {
			t.Fatal("re-encoded record does not decode")
		}
		if again := again.message(); again.Topic != m.Topic || again.Event != m.Event || again.Data != m.Data || !again.Time.Equal(m.Time) {
			t.Fatalf("round trip changed %+v to %+v", m, again)
		}
	})
}
