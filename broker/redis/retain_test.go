package redis_test

import (
	"context"
	"slices"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// publishTo publishes one message to each of topics, one publish each,
// and returns their IDs.
func publishTo(t *testing.T, b *redis.Broker, topics ...string) []string {
	t.Helper()
	var out []string
	for _, topic := range topics {
		got, err := b.Publish(context.Background(), []hub.Message{{Topic: topic, Data: topic}})
		if err != nil {
			t.Fatalf("Publish to %s: %v", topic, err)
		}
		out = append(out, got...)
	}
	return out
}

// lastValues is a retention with `retain m/+ 1`.
var lastValues = hub.Retention{Count: 100, Rules: []hub.RetentionRule{{Pattern: "m/+", Count: 1}}}

// sinceOn is since for a subscriber to filters.
func sinceOn(t *testing.T, b *redis.Broker, lastID, upto string, filters ...string) ([]*hub.Message, *hub.Gap) {
	t.Helper()
	page, err := b.Since(context.Background(), hub.Query{After: lastID, Upto: upto, Match: func(topic string) bool {
		return slices.ContainsFunc(filters, func(f string) bool { return hub.Match(f, topic) })
	}})
	if err != nil {
		t.Fatalf("Since(%q): %v", lastID, err)
	}
	return page.Messages, page.Gap
}

// The drops of rule topics are told apart by topic up to a cap, every
// topic the rules may keep and as many let go; beyond it the oldest is
// folded into one mark below which every resume gets a gap, whatever its
// topics: a gap too many, never one missing.
func TestDropsBeyondTheCapTellEveryResume(t *testing.T) {
	srv := testserver.StartRedis(t)
	b, _ := started(t, srv.URL, streamKey(), hub.Retention{Count: 100, RuleTopics: 1, Rules: []hub.RetentionRule{{Pattern: "d/+", Count: 1}}})
	pub := publishTo(t, b, "t", "d/1", "d/1", "u")
	last := pub[len(pub)-1]
	if _, gap := sinceOn(t, b, pub[0], last, "t", "u"); gap != nil {
		t.Fatalf("one topic dropped from, resume on others: gap %+v", gap)
	}
	// d/2 and d/3 let go of d/1 and d/2 (a cap of one topic), each losing
	// a message first: three topics with drops, over the cap of two.
	pub = append(pub, publishTo(t, b, "d/2", "d/2", "d/3", "d/3", "v")...)
	last = pub[len(pub)-1]
	msgs, gap := sinceOn(t, b, pub[0], last, "t", "u", "v")
	if gap == nil {
		t.Fatalf("drops beyond the cap, resume from before them on other topics: %v without a gap", ids(msgs))
	}
	if want := []string{pub[3], pub[8]}; !slices.Equal(ids(msgs), want) {
		t.Fatalf("after the gap: %v, want %v", ids(msgs), want)
	}
	if _, gap := sinceOn(t, b, pub[7], last, "t", "u", "v"); gap != nil {
		t.Fatalf("resume from after every drop: gap %+v", gap)
	}
}

// A kept stream that does not follow the stream (written by hand, restored
// on its own) does not stop publishes: it starts anew, and every resume
// from before is told of a gap.
func TestForeignKeptStream(t *testing.T) {
	srv := testserver.StartRedis(t)
	raw := rawClient(t, srv)
	key := streamKey()
	b, _ := started(t, srv.URL, key, lastValues)
	pub := publishTo(t, b, "m/a", "t")
	if err := raw.XAdd(context.Background(), &goredis.XAddArgs{Stream: key + ":kept", ID: "99999999999999-0", Values: []any{"x", "y"}}).Err(); err != nil {
		t.Fatal(err)
	}
	pub = append(pub, publishTo(t, b, "m/b", "m/a")...)
	last := pub[len(pub)-1]
	msgs, gap := sinceOn(t, b, pub[1], last, "#")
	if gap == nil || !slices.Contains(ids(msgs), pub[3]) {
		t.Fatalf("after the kept stream started anew: %v gap %+v; want a gap and the new m/a %s", ids(msgs), gap, pub[3])
	}
	if msgs, gap = sinceOn(t, b, hub.Earliest, last, "m/+"); gap != nil || !slices.Equal(ids(msgs), pub[2:]) {
		t.Fatalf("new subscriber: %v gap %+v; want %v", ids(msgs), gap, pub[2:])
	}
}

// A reload that adds a rule on one instance brings what the stream holds
// under it there; another instance that has not reloaded yet goes on
// publishing without the rule, and what it publishes is history on the
// first, not missing. Once the other reloads to the same rule, it finds
// the work done (the rules' digest at the horizon).
func TestReloadOnOneInstance(t *testing.T) {
	srv := testserver.StartRedis(t)
	key := streamKey()
	a, _ := started(t, srv.URL, key, hub.Retention{Count: 100})
	b, sb := started(t, srv.URL, key, hub.Retention{Count: 100})
	pub := publishTo(t, b, "m/a", "m/a", "t")
	a.SetRetention(lastValues)
	pub = append(pub, publishTo(t, b, "m/a", "m/b")...)
	sb.waitIDs(t, pub)
	last := pub[len(pub)-1]
	if msgs, gap := sinceOn(t, a, hub.Earliest, last, "m/+"); gap != nil || !slices.Equal(ids(msgs), []string{pub[1], pub[3], pub[4]}) {
		t.Fatalf("on the instance with the rule: %v gap %+v; want the latest m/a at its reload, then what the other published %v", ids(msgs), gap, []string{pub[1], pub[3], pub[4]})
	}
	if msgs, gap := sinceOn(t, b, hub.Earliest, last, "m/+"); gap != nil || !slices.Equal(ids(msgs), []string{pub[0], pub[1], pub[3], pub[4]}) {
		t.Fatalf("on the instance without it: %v gap %+v; want every message %v", ids(msgs), gap, []string{pub[0], pub[1], pub[3], pub[4]})
	}
	// The other reloads to the same rule: the first did the work, and
	// both replay the same.
	b.SetRetention(lastValues)
	if msgs, gap := sinceOn(t, b, hub.Earliest, last, "m/+"); gap != nil || !slices.Equal(ids(msgs), []string{pub[1], pub[3], pub[4]}) {
		t.Fatalf("on the other instance, reloaded too: %v gap %+v; want what the first replays %v", ids(msgs), gap, []string{pub[1], pub[3], pub[4]})
	}
}
