package bolt

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/hub/brokertest"
)

// The bolt broker keeps the contract every broker keeps.
func TestContract(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, r hub.Retention) hub.Broker {
		return New(filepath.Join(t.TempDir(), "history.db"), r)
	})
}

// Closing the file and opening it again (a Caddy restart) keeps the
// history, the epoch and the sequence: an ID from before resumes exactly.
func TestHistoryAndIDsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	b := started(t, path, hub.Retention{Count: 100})
	before := publish(t, b, 5)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = started(t, path, hub.Retention{Count: 100})
	msgs, gap := since(t, b, before[1], before[4])
	if gap != nil || !slices.Equal(ids(msgs), before[2:]) {
		t.Fatalf("after reopen, Since(%s) = %v gap %+v; want %v", before[1], ids(msgs), gap, before[2:])
	}
	after := publish(t, b, 1)
	if want := strings.Replace(before[4], "-5", "-6", 1); after[0] != want {
		t.Fatalf("first ID after reopen is %s, want %s (same epoch, next sequence)", after[0], want)
	}
	msgs, gap = since(t, b, hub.Earliest, after[0])
	if gap != nil || !slices.Equal(ids(msgs), append(before, after...)) {
		t.Fatalf("after reopen, Since(earliest) = %v gap %+v", ids(msgs), gap)
	}
}

// A new file is a new epoch: IDs of a deleted file are a gap, not a
// silent resume into unrelated messages with the same sequences.
func TestNewFileIsNewEpoch(t *testing.T) {
	dir := t.TempDir()
	b := started(t, filepath.Join(dir, "a.db"), hub.Retention{Count: 100})
	old := publish(t, b, 3)
	b2 := started(t, filepath.Join(dir, "b.db"), hub.Retention{Count: 100})
	fresh := publish(t, b2, 3)
	msgs, gap := since(t, b2, old[0], fresh[2])
	if gap == nil || gap.FirstID != fresh[0] || !slices.Equal(ids(msgs), fresh) {
		t.Fatalf("Since(ID of another file) = %v gap %+v; want a gap and all of %v", ids(msgs), gap, fresh)
	}
}

// Retention is enforced on disk, not only in answers: the file holds
// exactly what the bounds keep, also after the bounds shrink on reload.
func TestRetentionOnDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	b := started(t, path, hub.Retention{Count: 10})
	clock := time.Now()
	b.now = func() time.Time { return clock }
	publish(t, b, 25)
	if got := stored(t, b); got != 10 {
		t.Fatalf("%d messages on disk, want 10", got)
	}
	b.SetRetention(hub.Retention{Count: 3})
	if got := stored(t, b); got != 3 {
		t.Fatalf("after SetRetention(3): %d on disk, want 3", got)
	}

	b.SetRetention(hub.Retention{Count: 100, MaxAge: time.Minute})
	clock = clock.Add(2 * time.Minute)
	fresh := publish(t, b, 2)
	if got := stored(t, b); got != 2 {
		t.Fatalf("after the age bound passed: %d on disk, want the 2 fresh ones", got)
	}
	b.SetRetention(hub.Retention{})
	if got := stored(t, b); got != 0 {
		t.Fatalf("with no history: %d on disk, want 0", got)
	}
	next := publish(t, b, 1)
	if seq := next[0][strings.LastIndex(next[0], "-")+1:]; seq != "28" {
		t.Fatalf("ID after dropping everything is %s; want sequence 28 (the count goes on): %v", next[0], fresh)
	}
}

// A file another process (or hub) holds fails Start quickly with a clear
// reason instead of hanging.
func TestLockedFileFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	started(t, path, hub.Retention{Count: 10})

	second := New(path, hub.Retention{Count: 10})
	begin := time.Now()
	err := second.Start(func(*hub.Message) {})
	if err == nil {
		second.Close()
		t.Fatal("a second Start on a locked file succeeded")
	}
	if took := time.Since(begin); took > OpenTimeout+3*time.Second {
		t.Fatalf("Start took %s to fail", took)
	}
	if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not say the file is locked", err)
	}
}

// Files that are not bbolt databases, and paths that cannot be opened,
// fail Start with an error naming the file.
func TestBadFilesFailStart(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{garbage, "not a valid history file"},
		{filepath.Join(dir, "missing", "dir", "history.db"), "no such file or directory"},
		{dir, "opening"},
	} {
		b := New(tc.path, hub.Retention{Count: 10})
		err := b.Start(func(*hub.Message) {})
		if err == nil {
			b.Close()
			t.Fatalf("Start on %s succeeded", tc.path)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Fatalf("Start on %s: %q; want it to name the file and say %q", tc.path, err, tc.want)
		}
	}
}

// A damaged record, one of a newer format version, or one that is not a
// valid message (an event name with a line break, data that is not UTF-8,
// a bad topic), is skipped by Since, counted and never returned, never a
// panic; the records after it still come back.
func TestDamagedOrInvalidRecordIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	b := started(t, path, hub.Retention{Count: 10})
	published := publish(t, b, 3)
	now := time.Now()
	for i, bad := range [][]byte{
		nil, {formatVersion}, {9, 1, 2}, {formatVersion, 2, 200, 'x'}, {formatVersion, 2, 1, 'a', 5},
		encode(&hub.Message{Topic: "t", Event: "x\r\nid: 1", Data: "d", Time: now}),
		encode(&hub.Message{Topic: "t", Event: "gap", Data: "d", Time: now}),
		encode(&hub.Message{Topic: "t", Data: "\xff", Time: now}),
		encode(&hub.Message{Topic: "a/#", Data: "d", Time: now}),
		append([]byte{binaryRecord + 1}, encode(&hub.Message{Topic: "t", Data: "d", Time: now})[1:]...),
	} {
		err := b.db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMessages).Put(binary.BigEndian.AppendUint64(nil, 2), bad)
		})
		if err != nil {
			t.Fatal(err)
		}
		page, err := b.Since(context.Background(), hub.Query{After: hub.Earliest, Upto: published[2]})
		if err != nil {
			t.Fatalf("Since over bad record %q: %v", bad, err)
		}
		if got := ids(page.Messages); !slices.Equal(got, []string{published[0], published[2]}) {
			t.Fatalf("Since over bad record %q: %v, want %v without the second", bad, got, published)
		}
		if n := b.Skipped(); n != uint64(i+1) {
			t.Fatalf("after %d bad records, Skipped() = %d", i+1, n)
		}
	}
}

// A file written by a later release in a newer format fails Start with an
// error naming the file and both versions, and is left as it was: never
// read as this format, never changed. A file whose format cannot be made
// out fails as damaged.
func TestNewerFormatFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	b := started(t, path, hub.Retention{Count: 10})
	publish(t, b, 3)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ format, want string }{
		{"2", "written in history format 2, newer than this build reads (format 1)"},
		{"two", `format version "two" is damaged`},
		{"0", `format version "0" is damaged`},
	} {
		setMeta(t, path, keyFormat, []byte(tc.format))
		b := New(path, hub.Retention{Count: 1})
		err := b.Start(func(*hub.Message) {})
		if err == nil {
			b.Close()
			t.Fatalf("Start on a file of format %q succeeded", tc.format)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Fatalf("Start on a file of format %q: %q; want it to name the file and say %q", tc.format, err, tc.want)
		}
		if got := string(getMeta(t, path, keyFormat)); got != tc.format {
			t.Fatalf("refused file's format is now %q, want %q", got, tc.format)
		}
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket(bucketMessages).Stats().KeyN; n != 3 {
			t.Fatalf("refused file holds %d messages, want its 3 (the retention of the build that refused it not applied)", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A file of the release before, which recorded no format, is read as
// format 1: its history and IDs resume, and it is marked format 1.
func TestFileWithoutFormatIsRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	b := started(t, path, hub.Retention{Count: 10})
	before := publish(t, b, 3)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	setMeta(t, path, keyFormat, nil)

	b = started(t, path, hub.Retention{Count: 10})
	msgs, gap := since(t, b, before[0], before[2])
	if gap != nil || !slices.Equal(ids(msgs), before[1:]) {
		t.Fatalf("file without a format: Since(%s) = %v gap %+v; want %v", before[0], ids(msgs), gap, before[1:])
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := string(getMeta(t, path, keyFormat)); got != "1" {
		t.Fatalf("format after opening is %q, want 1", got)
	}
}

// setMeta writes (or with nil deletes) a key of the closed file's meta
// bucket, as another release would have.
func setMeta(t *testing.T, path string, key, value []byte) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		if value == nil {
			return tx.Bucket(bucketMeta).Delete(key)
		}
		return tx.Bucket(bucketMeta).Put(key, value)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// getMeta reads a key of the closed file's meta bucket.
func getMeta(t *testing.T, path string, key []byte) []byte {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	if err := db.View(func(tx *bbolt.Tx) error {
		v = slices.Clone(tx.Bucket(bucketMeta).Get(key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

func started(t *testing.T, path string, r hub.Retention) *Broker {
	t.Helper()
	b := New(path, r)
	if err := b.Start(func(*hub.Message) {}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func publish(t *testing.T, b *Broker, n int) []string {
	t.Helper()
	var out []string
	for range n {
		got, err := b.Publish(context.Background(), []hub.Message{{Topic: "t", Data: "x"}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got...)
	}
	return out
}

func since(t *testing.T, b *Broker, lastID, upto string) ([]*hub.Message, *hub.Gap) {
	t.Helper()
	page, err := b.Since(context.Background(), hub.Query{After: lastID, Upto: upto, Limit: math.MaxInt})
	if err != nil {
		t.Fatal(err)
	}
	return page.Messages, page.Gap
}

func ids(msgs []*hub.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// stored counts the messages in the file.
func stored(t *testing.T, b *Broker) int {
	t.Helper()
	var n int
	err := b.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketMessages).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
