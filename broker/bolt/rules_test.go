package bolt

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// post publishes one message to each of topics and returns their IDs.
func post(t *testing.T, b *Broker, topics ...string) []string {
	t.Helper()
	msgs := make([]hub.Message, len(topics))
	for i, topic := range topics {
		msgs[i] = hub.Message{Topic: topic, Data: "x"}
	}
	got, err := b.Publish(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Retain rules hold on disk and across a restart: the file keeps only
// what they keep, a resume from before a drop of the last run gets a gap
// (whatever its topics: the file no longer knows them), and one from
// after every drop gets none.
func TestRulesSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	r := hub.Retention{Count: 100, Rules: []hub.RetentionRule{{Pattern: "m/+", Count: 1}}}
	b := started(t, path, r)
	pub := post(t, b, "m/a", "t", "m/a", "m/b", "m/a", "t") // drops 0 and 2
	if got := stored(t, b); got != 4 {
		t.Fatalf("%d records on disk, want 4", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = started(t, path, r)
	msgs, gap := since(t, b, hub.Earliest, pub[5])
	if gap != nil || !slices.Equal(ids(msgs), []string{pub[1], pub[3], pub[4], pub[5]}) {
		t.Fatalf("after reopen, Since(earliest) = %v gap %+v", ids(msgs), gap)
	}
	if _, gap := since(t, b, pub[1], pub[5]); gap == nil {
		t.Fatalf("after reopen, a resume from before a drop of the last run: no gap")
	}
	if msgs, gap := since(t, b, pub[2], pub[5]); gap != nil || !slices.Equal(ids(msgs), pub[3:]) {
		t.Fatalf("after reopen, a resume from after every drop: %v gap %+v", ids(msgs), gap)
	}
	more := post(t, b, "m/b", "t")
	msgs, gap = since(t, b, pub[5], more[1])
	if gap != nil || !slices.Equal(ids(msgs), more) {
		t.Fatalf("a resume from after every drop but m/b 3, which it saw: %v gap %+v", ids(msgs), gap)
	}
	page, err := b.Since(context.Background(), hub.Query{After: pub[5], Upto: more[1], Match: func(topic string) bool { return topic == "m/b" }})
	if err != nil || page.Gap != nil {
		t.Fatalf("m/b superseded its message 3, before the resume point: gap %+v, %v", page.Gap, err)
	}
	page, err = b.Since(context.Background(), hub.Query{After: pub[2], Upto: more[1], Match: func(topic string) bool { return topic == "m/b" }})
	if err != nil || page.Gap == nil {
		t.Fatalf("m/b superseded its message 3, after the resume point: gap %+v, %v; want one", page.Gap, err)
	}

	// A rule added while the file was closed applies when it opens.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = started(t, path, hub.Retention{Count: 100, Rules: []hub.RetentionRule{{Pattern: "m/+", Count: 1}, {Pattern: "t", Count: 1}}})
	if got := stored(t, b); got != 3 {
		t.Fatalf("after reopening with retain t 1: %d records on disk, want 3", got)
	}
}
