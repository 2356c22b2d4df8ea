package redis_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// rawClient is a plain client on srv, closed when the test ends: what
// another release of the broker does on the same keys.
func rawClient(t *testing.T, srv *testserver.Redis) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startedLogging is started with the broker's warnings kept for the test.
func startedLogging(t *testing.T, url, stream string) (*redis.Broker, *sink, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.WarnLevel)
	b, err := redis.New(redis.Config{URL: url, Stream: stream, Logger: zap.New(core)}, hub.Retention{Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	s := newSink()
	if err := b.Start(s.deliver); err != nil {
		t.Fatal(err)
	}
	return b, s, logs
}

// appendScript appends one entry as another release's publish script
// would: numbered with the stream's append counter, so the instances of
// this release see no loss. ARGV: the entry's fields and values.
var appendScript = goredis.NewScript(`
local seq = redis.call('INCR', KEYS[2])
ARGV[#ARGV + 1] = 'seq'
ARGV[#ARGV + 1] = seq
return redis.call('XADD', KEYS[1], '*', unpack(ARGV))
`)

// appendAs appends an entry with fields (name, value, …) as another
// release would, and returns the message ID this release gives it.
func appendAs(t *testing.T, raw *goredis.Client, key, epoch string, fields ...string) string {
	t.Helper()
	args := make([]any, len(fields))
	for i, f := range fields {
		args[i] = f
	}
	id, err := appendScript.Run(context.Background(), raw, []string{key, key + ":seq"}, args...).Text()
	if err != nil {
		t.Fatal(err)
	}
	return epoch + "-" + id
}

// newerFormatLogs returns the versions the "newer storage format" warnings
// named.
func newerFormatLogs(logs *observer.ObservedLogs) []int64 {
	var out []int64
	for _, e := range logs.FilterMessageSnippet("newer than this build reads").All() {
		v, _ := e.ContextMap()["version"].(uint64)
		out = append(out, int64(v))
	}
	return out
}

// During a rolling upgrade the stream holds entries of the release before
// (no format version), of this one, and of the next: the next release's
// entries of this format version with fields added are delivered with the
// fields this release knows, and resume; those of a version this release
// cannot read are skipped (counted by Since), with one warning naming the
// version, never delivered garbled; the IDs and order of the rest are
// those of the stream.
func TestEntriesOfOtherReleases(t *testing.T) {
	srv := testserver.StartRedis(t)
	raw := rawClient(t, srv)
	key := streamKey()
	b, s, logs := startedLogging(t, srv.URL, key)
	first := publish(t, b, "this release")
	e := epoch(first[0])

	older := appendAs(t, raw, key, e, "epoch", e, "topic", "t", "event", "", "data", "older release")
	added := appendAs(t, raw, key, e, "v", "1", "epoch", e, "topic", "t", "event", "note", "data", "next release",
		"headers", `{"x":"y"}`, "expires", "1795307561868")
	appendAs(t, raw, key, e, "v", "3", "epoch", e, "topic", "t", "event", "", "data", "changed meaning", "codec", "zstd")
	appendAs(t, raw, key, e, "v", "3", "e", e, "t", "t", "d", "renamed fields")
	last := publish(t, b, "this release again")

	want := []string{first[0], older, added, last[0]}
	s.waitIDs(t, want)
	s.mu.Lock()
	var data []string
	for _, m := range s.got {
		data = append(data, m.Event+":"+m.Data)
	}
	s.mu.Unlock()
	if wantData := []string{":this release", ":older release", "note:next release", ":this release again"}; !slices.Equal(data, wantData) {
		t.Fatalf("delivered event:data %q, want %q", data, wantData)
	}

	msgs, gap := since(t, b, hub.Earliest, last[0])
	if gap != nil || !slices.Equal(ids(msgs), want) {
		t.Fatalf("Since(earliest) = %v gap %+v; want %v", ids(msgs), gap, want)
	}
	if n := b.Skipped(); n != 2 {
		t.Fatalf("Skipped() = %d after reading two entries of version 3, want 2", n)
	}
	msgs, gap = since(t, b, added, last[0])
	if gap != nil || !slices.Equal(ids(msgs), want[3:]) {
		t.Fatalf("resume from the next release's entry: %v gap %+v; want %v", ids(msgs), gap, want[3:])
	}
	msgs, gap = since(t, b, older, last[0])
	if gap != nil || !slices.Equal(ids(msgs), want[2:]) {
		t.Fatalf("resume from the older release's entry: %v gap %+v; want %v", ids(msgs), gap, want[2:])
	}
	if got := newerFormatLogs(logs); !slices.Equal(got, []int64{3}) {
		t.Fatalf("warnings about newer versions named %v, want [3] once", got)
	}

	appendAs(t, raw, key, e, "v", "4", "epoch", e)
	appendAs(t, raw, key, e, "v", "3", "epoch", e)
	s.waitIDs(t, append(want, publish(t, b, "after version 4")...))
	if got := newerFormatLogs(logs); !slices.Equal(got, []int64{3, 4}) {
		t.Fatalf("warnings about newer versions named %v, want [3 4]", got)
	}
}

// What this release writes, an instance of the release before reads: every
// entry keeps the fields of format version 1 with their meaning (the old
// reader takes epoch, topic, event, data and seq, and ignores the rest),
// and says its version. An instance of the release before, publishing on
// the same stream (entries without a version), and this one number their
// appends alike, so neither takes the other's entries for a loss.
func TestReleaseBeforeReadsThisOne(t *testing.T) {
	srv := testserver.StartRedis(t)
	raw := rawClient(t, srv)
	key := streamKey()
	b, s := started(t, srv.URL, key, hub.Retention{Count: 100})
	published, err := b.Publish(context.Background(), []hub.Message{{Topic: "a/b", Event: "e", Data: "1"}, {Topic: "c", Data: "2"}})
	if err != nil {
		t.Fatal(err)
	}
	e := epoch(published[0])
	older := appendAs(t, raw, key, e, "epoch", e, "topic", "t", "event", "", "data", "older release")
	published = append(append(published, older), publish(t, b, "3")...)
	s.waitIDs(t, published)

	entries, err := raw.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	type oldView struct{ id, epoch, topic, event, data, seq string }
	var got []oldView
	for _, x := range entries {
		var v oldView
		v.id = x.ID
		for name, dst := range map[string]*string{"epoch": &v.epoch, "topic": &v.topic, "event": &v.event, "data": &v.data, "seq": &v.seq} {
			f, ok := x.Values[name].(string)
			if !ok {
				t.Fatalf("entry %s has no field %s for the release before: %v", x.ID, name, x.Values)
			}
			*dst = f
		}
		if x.ID != older[len(e)+1:] && x.Values["v"] != "1" {
			t.Fatalf("entry %s written by this release has v=%v, want 1", x.ID, x.Values["v"])
		}
		got = append(got, v)
	}
	want := []oldView{
		{published[0][len(e)+1:], e, "a/b", "e", "1", "1"},
		{published[1][len(e)+1:], e, "c", "", "2", "2"},
		{published[2][len(e)+1:], e, "t", "", "older release", "3"},
		{published[3][len(e)+1:], e, "t", "", "3", "4"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the release before reads %+v, want %+v", got, want)
	}
}

// Signals are versioned as entries are: the next release's signals of this
// version with members added are delivered, and so are the release
// before's (no version); those of a version this release cannot read are
// dropped with one warning, also when a member changed its type. What this
// release sends says its version and keeps the members of version 1.
func TestSignalsOfOtherReleases(t *testing.T) {
	srv := testserver.StartRedis(t)
	raw := rawClient(t, srv)
	key := streamKey()
	channel := key + ":signals:0"
	b, _, logs := startedLogging(t, srv.URL, key)
	got := make(chan *hub.Message, 10)
	if err := b.StartSignals(func(m *hub.Message) { got <- m }); err != nil {
		t.Fatal(err)
	}
	watch := raw.Subscribe(context.Background(), channel)
	defer watch.Close()
	if _, err := watch.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, "the broker listening for signals", func() bool {
		n, err := raw.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && n[channel] == 2
	})

	for _, payload := range []string{
		`{"topic":"older","data":"d","time":1}`,
		`{"v":1,"topic":"next","data":"d","time":2,"origin":"node-2"}`,
		`{"v":3,"topic":"changed","data":"d","time":3}`,
		`{"v":3,"topic":"changed","data":"d","time":"2026-12-05T16:00:00Z"}`,
	} {
		if err := raw.Publish(context.Background(), channel, payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Signal(context.Background(), []hub.Message{{Topic: "this", Event: "e", Data: "d", Time: time.UnixMilli(4)}}); err != nil {
		t.Fatal(err)
	}

	var topics []string
	for len(topics) < 3 {
		select {
		case m := <-got:
			topics = append(topics, m.Topic)
		case <-time.After(testserver.Wait):
			t.Fatalf("signals delivered: %v; want older, next and this", topics)
		}
	}
	if !slices.Equal(topics, []string{"older", "next", "this"}) {
		t.Fatalf("signals delivered: %v; want older, next and this", topics)
	}
	if got := newerFormatLogs(logs); !slices.Equal(got, []int64{3}) {
		t.Fatalf("warnings about newer versions named %v, want [3] once", got)
	}

	var sent struct {
		V                  *int
		Topic, Event, Data string
		Time               int64
	}
	for {
		msg, err := watch.ReceiveMessage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// The test's own payloads, published before, come first.
		if json.Unmarshal([]byte(msg.Payload), &sent) == nil && sent.Topic == "this" {
			break
		}
	}
	if sent.V == nil || *sent.V != 1 || sent.Event != "e" || sent.Data != "d" || sent.Time != 4 {
		t.Fatalf("this release signalled %+v, want version 1 with the members of version 1", sent)
	}
}

// During an upgrade that brings retain rules, instances of the release
// before share the stream: they read this release's entries of rule topics
// with the fields of version 1, as any other (the field k, kept by rule, is
// one they ignore), and what they write of a rule topic (without k) is
// history to an instance with the rule: more than the rule keeps, never
// missing.
func TestRulesDuringAnUpgrade(t *testing.T) {
	srv := testserver.StartRedis(t)
	raw := rawClient(t, srv)
	key := streamKey()
	b, s := started(t, srv.URL, key, lastValues)
	published, err := b.Publish(context.Background(), []hub.Message{{Topic: "m/a", Data: "1"}, {Topic: "m/a", Data: "2"}, {Topic: "t", Data: "3"}})
	if err != nil {
		t.Fatal(err)
	}
	e := epoch(published[0])
	older := appendAs(t, raw, key, e, "epoch", e, "topic", "m/a", "event", "", "data", "older release")
	all := append(published, older)
	s.waitIDs(t, all)

	entries, err := raw.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var read []string
	for _, x := range entries {
		for _, name := range []string{"epoch", "topic", "event", "data", "seq"} {
			if _, ok := x.Values[name].(string); !ok {
				t.Fatalf("entry %s has no field %s for the release before: %v", x.ID, name, x.Values)
			}
		}
		read = append(read, e+"-"+x.ID)
	}
	if !slices.Equal(read, all) {
		t.Fatalf("the release before reads %v from the stream, want every message %v", read, all)
	}

	msgs, gap := since(t, b, hub.Earliest, older)
	if want := all[1:]; gap != nil || !slices.Equal(ids(msgs), want) {
		t.Fatalf("with the rule, Since(earliest) = %v gap %+v; want the latest m/a kept, t, and the release before's m/a %v", ids(msgs), gap, want)
	}
	msgs, gap = since(t, b, published[0], older)
	if want := all[1:]; gap != nil || !slices.Equal(ids(msgs), want) {
		t.Fatalf("with the rule, Since(first) = %v gap %+v; want %v", ids(msgs), gap, want)
	}
	if msgs, gap = since(t, b, e+"-0-1", older); gap == nil {
		t.Fatalf("with the rule, a resume from before the dropped m/a: %v without a gap", ids(msgs))
	}
}
