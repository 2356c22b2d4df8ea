package hub

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestOrderRules(t *testing.T) {
	rules := []RetentionRule{{Pattern: "#"}, {Pattern: "+/door"}, {Pattern: "sensors/#"}, {Pattern: "sensors/+"}, {Pattern: "sensors/door"}, {Pattern: "+/+"}, {Pattern: "a/+/+"}, {Pattern: "+/+/c"}}
	var got []string
	for _, r := range OrderRules(rules) {
		got = append(got, r.Pattern)
	}
	// Ties (+/door and sensors/+; a/+/+ and +/+/c) keep the order given.
	want := []string{"sensors/door", "+/door", "sensors/+", "a/+/+", "+/+/c", "sensors/#", "+/+", "#"}
	if !slices.Equal(got, want) {
		t.Fatalf("OrderRules: %v, want %v", got, want)
	}
	if i := RuleOf(OrderRules(rules), "sensors/window"); i != 2 {
		t.Fatalf("RuleOf(sensors/window) = %d, want 2 (sensors/+)", i)
	}
	if i := RuleOf(OrderRules([]RetentionRule{{Pattern: "+/x"}}), "$pubsub/x"); i != -1 {
		t.Fatalf("a + rule matched a $ topic: %d", i)
	}
}

// retentionModel is what a broker with rules must retain and drop, kept
// the plain way: every message, and a list per rule of its topics, least
// recently published first.
type retentionModel struct {
	r       Retention
	rules   []RetentionRule
	kept    []Message // ID order
	dropped []Message
	lru     [][]string
}

func (m *retentionModel) publish(msg Message) {
	m.kept = append(m.kept, msg)
	r := RuleOf(m.rules, msg.Topic)
	if r < 0 {
		m.trim(func(t string) bool { return RuleOf(m.rules, t) < 0 }, m.r.Count)
		return
	}
	lru := slices.DeleteFunc(m.lru[r], func(t string) bool { return t == msg.Topic })
	if len(lru) == m.r.topicsPerRule() {
		m.trim(func(t string) bool { return t == lru[0] }, 0)
		lru = lru[1:]
	}
	m.lru[r] = append(lru, msg.Topic)
	m.trim(func(t string) bool { return t == msg.Topic }, m.rules[r].Count)
}

// trim drops the oldest messages of the topics of keeps beyond n.
func (m *retentionModel) trim(of func(topic string) bool, n int) {
	count := 0
	for _, msg := range m.kept {
		if of(msg.Topic) {
			count++
		}
	}
	m.kept = slices.DeleteFunc(m.kept, func(msg Message) bool {
		if count > n && of(msg.Topic) {
			count--
			m.dropped = append(m.dropped, msg)
			return true
		}
		return false
	})
}

// The memory broker retains and drops exactly what the rules say, and a
// resume gets a gap exactly when it missed a dropped message of its
// topics, over random publishes.
func TestMemoryBrokerRetentionModel(t *testing.T) {
	r := Retention{Count: 4, RuleTopics: 3, Rules: []RetentionRule{
		{Pattern: "m/#", Count: 2}, {Pattern: "m/+", Count: 1}, {Pattern: "k/+", Count: 2}, {Pattern: "z/+", Count: 0},
	}}
	topics := []string{"m/a", "m/b", "m/c", "m/d", "m/x/y", "m", "d", "e", "k/1", "k/2", "k/3", "k/4", "k/5", "z/1"}
	filters := []string{"#", "m/+", "m/a", "m/#", "k/+", "k/1", "d", "z/+", "k/5", "e"}
	rng := rand.New(rand.NewPCG(1, 2))
	b := NewMemoryBroker(r)
	model := &retentionModel{r: r, rules: OrderRules(r.Rules), lru: make([][]string, len(r.Rules))}
	seqOf := map[string]uint64{}
	var published []string
	for i := range 3000 {
		msg := Message{Topic: topics[rng.IntN(len(topics))], Data: fmt.Sprint(i)}
		got, err := b.Publish(context.Background(), []Message{msg})
		if err != nil {
			t.Fatal(err)
		}
		msg.ID = got[0]
		seqOf[msg.ID] = uint64(i + 1)
		published = append(published, msg.ID)
		model.publish(msg)

		msgs, gap := since(t, b, Earliest, msg.ID)
		var want []string
		for _, m := range model.kept {
			want = append(want, m.ID)
		}
		if gap != nil || !slices.Equal(ids(msgs), want) {
			t.Fatalf("after publish %d to %s: retained %v, gap %+v; want %v", i, msg.Topic, ids(msgs), gap, want)
		}
		for range 3 {
			after, filter := published[rng.IntN(len(published))], filters[rng.IntN(len(filters))]
			page, err := b.Since(context.Background(), Query{After: after, Upto: msg.ID, Limit: 1 << 20, Match: func(topic string) bool { return Match(filter, topic) }})
			if err != nil {
				t.Fatal(err)
			}
			missed := slices.ContainsFunc(model.dropped, func(m Message) bool { return seqOf[m.ID] > seqOf[after] && Match(filter, m.Topic) })
			if (page.Gap != nil) != missed {
				t.Fatalf("after publish %d: resume after %s on %s: gap %+v, want one: %v", i, after, filter, page.Gap, missed)
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.log) > 2*b.live+64 {
		t.Fatalf("log of %d entries for %d retained: dropped ones are not compacted", len(b.log), b.live)
	}
}

// A flood of distinct topics holds no more than retain_topics of them,
// per rule and for history's drops, and what it forgets still makes an
// older resume get a gap, whatever its topics.
func TestMemoryBrokerTopicFloodIsBounded(t *testing.T) {
	r := Retention{Count: 5, RuleTopics: 10, Rules: []RetentionRule{{Pattern: "f/+", Count: 1}}}
	b := NewMemoryBroker(r)
	first := brokerPublish(t, b, "quiet", 1)[0]
	for i := range 3 * maxDrops {
		brokerPublish(t, b, fmt.Sprintf("f/%d", i), 1)
		brokerPublish(t, b, fmt.Sprintf("d/%d", i), 1)
	}
	b.mu.Lock()
	topics, defDrops, drops, live := len(b.kept[0].topics), len(b.defDrops), len(b.drops), b.live
	b.mu.Unlock()
	if topics > 10 || defDrops > 10 || drops > maxDrops || live > 15 {
		t.Fatalf("after %d distinct topics: the rule tracks %d topics, history's drops %d, forgotten topics %d, %d retained; want at most 10, 10, %d, 15",
			6*maxDrops, topics, defDrops, drops, maxDrops, live)
	}
	page, err := b.Since(context.Background(), Query{After: first, Upto: first, Match: func(topic string) bool { return topic == "quiet" }})
	if err != nil || page.Gap == nil {
		t.Fatalf("resume on quiet from before the flood: gap %+v, %v; want the conservative gap", page.Gap, err)
	}
}

// A message a rule keeps does not keep the rest of its publish batch in
// memory once history has dropped it.
func TestMemoryBrokerRuleKeepsNotItsBatch(t *testing.T) {
	b := NewMemoryBroker(Retention{Rules: []RetentionRule{{Pattern: "last", Count: 1}}})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	batch := make([]Message, 200)
	for i := range batch {
		batch[i] = Message{Topic: "t", Data: strings.Repeat(strconv.Itoa(i%10), 64<<10)}
	}
	batch[0].Topic = "last"
	if _, err := b.Publish(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	batch = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 2<<20 {
		t.Fatalf("heap grew by %d KiB keeping one 64 KiB message of a batch of 200", grown>>10)
	}
	runtime.KeepAlive(b)
}
