package brokertest

// Clauses on retention rules (hub.RuleRetainer): per-topic counts and
// ages, the rule a topic takes, the cap on a rule's topics, order across
// rules, and gaps for what a rule dropped.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// ruleClauses are the clauses for brokers that retain by rule.
var ruleClauses = []struct {
	name string
	run  func(*testing.T, NewBroker)
}{
	{"RuleLastValueCache", testRuleLastValue},
	{"RuleCountIsPerTopic", testRulePerTopicCount},
	{"RuleAgeDropsOldMessages", testRuleAge},
	{"RuleMostSpecificWins", testRuleMostSpecific},
	{"RuleGapOnlyForDroppedMatches", testRuleGap},
	{"RuleCountZeroKeepsNothing", testRuleCountZero},
	{"RuleTopicCapEvictsLeastRecent", testRuleTopicCap},
	{"RuleSetRetentionAppliesToStored", testRuleSetRetention},
}

// history publishes one message per topic, in one call each, and keeps
// what they were.
type history struct {
	t    *testing.T
	b    hub.Broker
	rec  *recorder
	ids  []string
	tops []string
}

func newHistory(t *testing.T, newBroker NewBroker, r hub.Retention) *history {
	b, rec := start(t, newBroker, r)
	return &history{t: t, b: b, rec: rec}
}

// post publishes a message to each of topics, in one call.
func (h *history) post(topics ...string) []string {
	h.t.Helper()
	msgs := make([]hub.Message, len(topics))
	for i, topic := range topics {
		msgs[i] = hub.Message{Topic: topic, Data: fmt.Sprintf("%s #%d", topic, len(h.ids)+i)}
	}
	ids := publish(h.t, h.b, msgs...)
	h.ids, h.tops = append(h.ids, ids...), append(h.tops, topics...)
	h.rec.wait(len(h.ids))
	return ids
}

// latest returns the IDs of the last message of each of topics, in ID
// order, and of every message of the others that keep reports true.
func (h *history) want(keep func(i int, topic string) bool) []string {
	var out []string
	for i, topic := range h.tops {
		if keep(i, topic) {
			out = append(out, h.ids[i])
		}
	}
	return out
}

// lastOf reports whether message i is among the last n of its topic.
func (h *history) lastOf(i, n int) bool {
	later := 0
	for _, topic := range h.tops[i+1:] {
		if topic == h.tops[i] {
			later++
		}
	}
	return later < n
}

// read reads, page by page, what a subscriber to filters resuming after
// lastID gets up to the last message, and whether any page had a gap: a
// broker may tell a gap again on a later page while what was missed lies
// beyond the pages before.
func (h *history) read(lastID string, filters ...string) ([]*hub.Message, *hub.Gap) {
	h.t.Helper()
	var match func(string) bool
	if len(filters) > 0 {
		match = func(topic string) bool {
			for _, f := range filters {
				if hub.Match(f, topic) {
					return true
				}
			}
			return false
		}
	}
	q := hub.Query{After: lastID, Upto: h.ids[len(h.ids)-1], Match: match, Limit: sincePage}
	var msgs []*hub.Message
	var gap *hub.Gap
	for i := 0; ; i++ {
		page, err := h.b.Since(ctx(h.t), q)
		if err != nil {
			h.t.Fatalf("Since(%q), page %d: %v", q.After, i, err)
		}
		if gap == nil {
			gap = page.Gap
		}
		msgs = append(msgs, page.Messages...)
		if !page.More {
			return msgs, gap
		}
		q.Next(page)
	}
}

func (h *history) check(what, lastID string, filters []string, want []string, gap bool) {
	h.t.Helper()
	msgs, g := h.read(lastID, filters...)
	what = fmt.Sprintf("%s: resume after %s on %v", what, lastID, filters)
	checkIDs(h.t, what, msgs, want)
	if (g != nil) != gap {
		h.t.Fatalf("%s: gap %+v, want a gap: %v", what, g, gap)
	}
	if g != nil && g.LastID != lastID {
		h.t.Fatalf("%s: gap %+v names another last ID", what, g)
	}
}

func testRuleLastValue(t *testing.T, newBroker NewBroker) {
	h := newHistory(t, newBroker, hub.Retention{Count: 1000, Rules: []hub.RetentionRule{{Pattern: "metrics/+", Count: 1}}})
	h.post("metrics/a", "chat", "metrics/b")
	h.post("metrics/a", "metrics/a", "chat", "metrics/b/c")
	for range 5 {
		h.post("chat", "metrics/b", "other")
	}
	h.post("metrics/a")
	metric := func(topic string) bool { return hub.Match("metrics/+", topic) }
	h.check("a new subscriber to metrics/+", hub.Earliest, []string{"metrics/+"},
		h.want(func(i int, topic string) bool { return metric(topic) && h.lastOf(i, 1) }), false)
	h.check("a new subscriber to everything", hub.Earliest, nil,
		h.want(func(i int, topic string) bool { return !metric(topic) || h.lastOf(i, 1) }), false)
}

func testRulePerTopicCount(t *testing.T, newBroker NewBroker) {
	h := newHistory(t, newBroker, hub.Retention{Count: 3, Rules: []hub.RetentionRule{{Pattern: "s/#", Count: 2}}})
	for range 4 {
		h.post("s", "s/x", "s/x/y", "d", "s/z")
	}
	h.check("every topic keeps 2, the default 3", hub.Earliest, nil, h.want(func(i int, topic string) bool {
		if topic == "d" {
			return h.lastOf(i, 3)
		}
		return h.lastOf(i, 2)
	}), false)
}

func testRuleAge(t *testing.T, newBroker NewBroker) {
	const age = 300 * time.Millisecond
	h := newHistory(t, newBroker, hub.Retention{Count: 100, Rules: []hub.RetentionRule{{Pattern: "a/+", Count: 5, MaxAge: age}}})
	h.post("a/x", "t", "a/y")
	eventually(t, "rule messages older than its age are dropped", func() bool {
		msgs, _ := h.read(hub.Earliest)
		return len(msgs) == 1
	})
	h.post("a/x")
	h.check("after the age", hub.Earliest, nil, []string{h.ids[1], h.ids[3]}, false)
	h.check("resume before the dropped a/y", h.ids[1], []string{"a/y"}, nil, true)
	h.check("resume before the dropped a/y, on t", h.ids[0], []string{"t", "b/+"}, []string{h.ids[1]}, false)
}

func testRuleMostSpecific(t *testing.T, newBroker NewBroker) {
	// Given least specific first: the order written does not decide.
	rules := []hub.RetentionRule{{Pattern: "m/#", Count: 4}, {Pattern: "m/+", Count: 3}, {Pattern: "+/x", Count: 2}, {Pattern: "m/x", Count: 1}}
	h := newHistory(t, newBroker, hub.Retention{Count: 1000, Rules: rules})
	for range 6 {
		h.post("m/x", "m/y", "m/y/z", "m", "n/x")
	}
	keeps := map[string]int{"m/x": 1, "n/x": 2, "m/y": 3, "m/y/z": 4, "m": 4}
	h.check("each topic keeps as its most specific rule says", hub.Earliest, nil,
		h.want(func(i int, topic string) bool { return h.lastOf(i, keeps[topic]) }), false)
}

func testRuleGap(t *testing.T, newBroker NewBroker) {
	h := newHistory(t, newBroker, hub.Retention{Count: 1000, Rules: []hub.RetentionRule{{Pattern: "metrics/+", Count: 1}}})
	ids := h.post("metrics/a", "metrics/b", "chat")                         // 0 1 2
	ids = append(ids, h.post("metrics/a", "chat", "metrics/a", "other")...) // 3 4 5 6: 3 drops 0, 5 drops 3
	for i := 0; i < 12; i++ {
		h.post("chat")
	}
	all := func(from int) []string {
		return h.want(func(i int, topic string) bool { return i >= from && (topic != "metrics/a" || i == 5) })
	}
	chat := func(from int) []string {
		return h.want(func(i int, topic string) bool { return i >= from && topic == "chat" })
	}
	h.check("missed metrics/a 3", ids[2], []string{"metrics/+"}, []string{ids[5]}, true)
	h.check("missed metrics/a 3", ids[2], nil, all(3), true)
	h.check("missed metrics/a 3", ids[2], []string{"metrics/a", "chat"}, h.want(func(i int, topic string) bool {
		return i > 2 && (topic == "chat" || i == 5)
	}), true)
	h.check("saw metrics/a 3", ids[3], []string{"metrics/+"}, []string{ids[5]}, false)
	h.check("dropped only other topics", ids[0], []string{"metrics/b", "chat", "other"}, h.want(func(i int, topic string) bool {
		return i > 0 && topic != "metrics/a"
	}), false)
	h.check("nothing dropped", ids[2], []string{"chat"}, chat(3), false)
	h.check("everything seen", h.ids[len(h.ids)-1], nil, nil, false)

	// A replay that began before a message it had yet to read was dropped
	// is told so on the page after, and only then.
	q := hub.Query{After: hub.Earliest, Upto: h.ids[len(h.ids)-1], Limit: 2}
	page, err := h.b.Since(ctx(t), q)
	if err != nil || page.Gap != nil || !page.More {
		t.Fatalf("first page: %s, gap %+v, more %v, %v", abbreviate(idsOf(page.Messages)), page.Gap, page.More, err)
	}
	h.post("metrics/a") // drops 5, not yet read
	q.Next(page)
	if page, err = h.b.Since(ctx(t), q); err != nil || page.Gap == nil {
		t.Fatalf("page after a message it was to read was dropped: %s, gap %+v, %v", abbreviate(idsOf(page.Messages)), page.Gap, err)
	}
	q.Next(page)
	if page, err = h.b.Since(ctx(t), q); err != nil || page.Gap != nil {
		t.Fatalf("the page after that: %s, gap %+v, %v", abbreviate(idsOf(page.Messages)), page.Gap, err)
	}
	h.check("everything seen but the last", h.ids[len(h.ids)-2], nil, h.ids[len(h.ids)-1:], false)
}

func testRuleCountZero(t *testing.T, newBroker NewBroker) {
	h := newHistory(t, newBroker, hub.Retention{Count: 1000, Rules: []hub.RetentionRule{{Pattern: "x/#", Count: 0}}})
	h.post("t", "x/1", "t", "x/2/3")
	h.check("x keeps nothing", hub.Earliest, nil, []string{h.ids[0], h.ids[2]}, false)
	h.check("missed x/1", h.ids[0], []string{"x/#"}, nil, true)
	h.check("missed nothing of t", h.ids[0], []string{"t"}, h.ids[2:3], false)
	h.check("saw x/2/3", h.ids[3], []string{"x/#"}, nil, false)
}

func testRuleTopicCap(t *testing.T, newBroker NewBroker) {
	h := newHistory(t, newBroker, hub.Retention{Count: 1000, RuleTopics: 3, Rules: []hub.RetentionRule{{Pattern: "d/+", Count: 2}}})
	h.post("t", "d/1", "d/2", "d/1", "d/3") // 0-4
	h.post("d/4")                           // 5: d/2, published to least recently, goes
	h.post("d/1", "t")                      // 6 7
	h.check("d/2 evicted", hub.Earliest, nil, h.want(func(i int, topic string) bool {
		return topic == "t" || topic != "d/2" && h.lastOf(i, 2)
	}), false)
	h.check("missed d/2", h.ids[0], []string{"d/2"}, nil, true)
	h.check("missed d/2 among others", h.ids[0], []string{"d/+"}, h.want(func(i int, topic string) bool {
		return strings.HasPrefix(topic, "d/") && topic != "d/2" && h.lastOf(i, 2)
	}), true)
	h.check("d/2 was of no interest", h.ids[3], []string{"d/1", "d/3", "t"}, h.want(func(i int, topic string) bool {
		return i > 3 && topic != "d/4"
	}), false)
}

func testRuleSetRetention(t *testing.T, newBroker NewBroker) {
	h := newHistory(t, newBroker, hub.Retention{Count: 100})
	h.post("m/a", "m/b", "m/a", "t", "m/a")
	h.b.SetRetention(hub.Retention{Count: 100, Rules: []hub.RetentionRule{{Pattern: "m/+", Count: 1}}})
	h.check("the rule applies to what was stored", hub.Earliest, nil, h.want(func(i int, topic string) bool {
		return topic != "m/a" || i == 4
	}), false)
	h.check("resume before a message the new rule dropped", h.ids[1], []string{"m/a"}, h.ids[4:], true)
	h.b.SetRetention(hub.Retention{Count: 100})
	h.post("m/a", "m/a")
	h.check("without the rule", h.ids[4], []string{"m/a"}, h.ids[5:], false)
}
