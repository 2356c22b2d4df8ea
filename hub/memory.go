package hub

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MemoryBroker keeps history in process: one log of the retained messages
// in ID order, the default history's share bounded hub-wide and each
// rule's per topic (retention.go). Its IDs are "EPOCH-SEQ": EPOCH is random
// per broker, so an ID from before a restart is recognised as a gap; SEQ
// counts up from 1.
type MemoryBroker struct {
	epoch string
	now   func() time.Time

	mu        sync.Mutex
	deliver   func(*Message)
	retention Retention
	rules     []RetentionRule // retention.Rules, most specific first
	log       []entry         // retained messages and tombstones, in ID order
	live      int             // entries of log with a message
	seq       uint64          // last assigned
	def       seqQueue        // the default history's messages, oldest first
	kept      []*ruleKeep     // per rule of rules
	// Drops are told per topic: a rule's in topicKeep.dropped, the
	// default history's in defDrops, those of the topics a rule let go
	// entirely in drops; once either holds too many, only the highest are
	// kept, in dropFloor, for any filter.
	defDrops  map[string]mark
	drops     []drop
	dropFloor mark
	// onDrop, when set (Retainer), hears of each message dropped, or
	// stored and dropped at once, by its sequence.
	onDrop func(seq uint64)
}

type entry struct {
	seq  uint64
	msg  *Message // nil once dropped
	rule int      // index in rules; -1 for the default history
}

// mark is where a message was dropped: seq is its sequence and at when
// it was dropped, as the sequence of the publish that dropped it, or the
// next sequence for a drop by age or reload. A replay up to Upto that
// continues a page read before was told of the drops with at up to Upto
// already. Marks of one topic merge into their highest seq and at: a
// continued replay may be told of a gap too many, never one too few.
type mark struct{ seq, at uint64 }

// missed reports whether a reader that saw everything up to sequence after
// missed the drop at m, for a replay up to upto, continued or not.
func (m mark) missed(after, upto uint64, continued bool) bool {
	return m.seq > after && (!continued || m.at > upto)
}

func (m mark) max(o mark) mark { return mark{max(m.seq, o.seq), max(m.at, o.at)} }

// drop is a message a rule dropped, of a topic it no longer tracks.
type drop struct {
	mark
	topic string
}

// maxDrops bounds MemoryBroker.drops.
const maxDrops = 4096

// ruleKeep is what one rule retains.
type ruleKeep struct {
	rule   RetentionRule
	topics map[string]*topicKeep
	lru    topicKeep // sentinel: lru.next published to last, lru.prev least recently
	live   int       // retained messages
	// aged lists the rule's messages oldest first, some since dropped,
	// to drop by age; only when the rule has an age bound.
	aged seqQueue
}

// topicKeep is what a rule retains of one topic.
type topicKeep struct {
	topic      string
	seqs       seqQueue // retained, oldest first
	dropped    mark     // the last drop
	prev, next *topicKeep
}

func (t *topicKeep) unlink() { t.prev.next, t.next.prev = t.next, t.prev }

// seqQueue is a FIFO of sequences.
type seqQueue struct {
	s    []uint64
	head int
}

func (q *seqQueue) push(seq uint64) { q.s = append(q.s, seq) }
func (q *seqQueue) len() int        { return len(q.s) - q.head }
func (q *seqQueue) front() uint64   { return q.s[q.head] }

func (q *seqQueue) pop() uint64 {
	seq := q.s[q.head]
	q.head++
	if q.head == len(q.s) {
		q.s, q.head = q.s[:0], 0
	} else if q.head >= 32 && 2*q.head >= len(q.s) {
		q.s, q.head = append(q.s[:0], q.s[q.head:]...), 0
	}
	return seq
}

// NewMemoryBroker returns a memory broker with the given retention.
func NewMemoryBroker(r Retention) *MemoryBroker {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	m := &MemoryBroker{epoch: hex.EncodeToString(b[:]), now: time.Now}
	m.reset(r)
	return m
}

// reset empties the history and applies r.
func (m *MemoryBroker) reset(r Retention) {
	m.retention, m.rules = r, OrderRules(r.Rules)
	m.log, m.live, m.def = nil, 0, seqQueue{}
	m.kept = make([]*ruleKeep, len(m.rules))
	for i, rule := range m.rules {
		k := &ruleKeep{rule: rule, topics: make(map[string]*topicKeep)}
		k.lru.next, k.lru.prev = &k.lru, &k.lru
		m.kept[i] = k
	}
}

// Start implements Broker.
func (m *MemoryBroker) Start(deliver func(*Message)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deliver = deliver
	return nil
}

// Publish implements Broker. Delivery happens before it returns, in the
// order IDs were assigned.
func (m *MemoryBroker) Publish(_ context.Context, msgs []Message) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	ids := make([]string, len(msgs))
	// Fresh messages, in one allocation: a copy of a delivered one must
	// not share its encoded frames.
	stored := make([]Message, len(msgs))
	// The ID is built on the stack: only its string is kept.
	var idBuf [64]byte
	id := idBuf[:0]
	for i := range msgs {
		m.seq++
		id = strconv.AppendUint(append(append(id[:0], m.epoch...), '-'), m.seq, 10)
		msg := &stored[i]
		*msg = Message{ID: string(id), Topic: msgs[i].Topic, Event: msgs[i].Event, Data: msgs[i].Data, Binary: msgs[i].Binary, Time: now}
		ids[i] = msg.ID
		r := RuleOf(m.rules, msg.Topic)
		if r >= 0 && len(msgs) > 1 {
			// A rule may keep it long after the rest of the batch is
			// dropped: alone, it does not hold the batch in memory.
			kept := *msg
			msg = &kept
		}
		m.store(m.seq, msg, r)
	}
	m.trim(now)
	if m.deliver != nil {
		for i := range stored {
			m.deliver(&stored[i])
		}
	}
	return ids, nil
}

// store retains msg, of sequence seq (above every retained one), as its
// topic's rule r (RuleOf) or, for -1, the default history says, dropping
// what that no longer keeps.
func (m *MemoryBroker) store(seq uint64, msg *Message, r int) {
	if r < 0 {
		if !m.retention.Keeps() {
			m.dropDefault(msg.Topic, mark{seq, seq})
			m.dropped(seq)
			return
		}
		m.append(seq, msg, r)
		m.def.push(seq)
		for m.def.len() > m.retention.Count {
			m.dropSeq(m.def.pop(), seq)
		}
		return
	}
	k := m.kept[r]
	t := m.topicOf(k, msg.Topic)
	if k.rule.Count == 0 {
		t.dropped = mark{seq, seq}
		m.dropped(seq)
		return
	}
	m.append(seq, msg, r)
	t.seqs.push(seq)
	k.live++
	if k.rule.MaxAge > 0 {
		k.aged.push(seq)
	}
	for t.seqs.len() > k.rule.Count {
		m.dropSeq(t.seqs.pop(), seq)
	}
}

func (m *MemoryBroker) append(seq uint64, msg *Message, rule int) {
	m.log = append(m.log, entry{seq: seq, msg: msg, rule: rule})
	m.live++
}

// topicOf returns what k keeps of topic, as the topic published to last,
// letting go of the least recently published one when k has too many.
func (m *MemoryBroker) topicOf(k *ruleKeep, topic string) *topicKeep {
	t := k.topics[topic]
	if t != nil {
		t.unlink()
	} else {
		if len(k.topics) >= m.retention.topicsPerRule() {
			m.forget(k, k.lru.prev, m.seq)
		}
		t = &topicKeep{topic: topic}
		k.topics[topic] = t
	}
	t.prev, t.next = &k.lru, k.lru.next
	t.prev.next, t.next.prev = t, t
	return t
}

// forget drops every message of t, at sequence at, and t itself,
// remembering its last drop for gaps.
func (m *MemoryBroker) forget(k *ruleKeep, t *topicKeep, at uint64) {
	for t.seqs.len() > 0 {
		m.dropSeq(t.seqs.pop(), at)
	}
	t.unlink()
	delete(k.topics, t.topic)
	if t.dropped.seq == 0 {
		return
	}
	if len(m.drops) == maxDrops {
		for _, d := range m.drops {
			m.dropFloor = m.dropFloor.max(d.mark)
		}
		m.drops = m.drops[:0]
	}
	m.drops = append(m.drops, drop{mark: t.dropped, topic: t.topic})
}

// find returns the entry of seq in the log, nil if it has none.
func (m *MemoryBroker) find(seq uint64) *entry {
	i, ok := slices.BinarySearchFunc(m.log, seq, func(e entry, s uint64) int { return cmp.Compare(e.seq, s) })
	if !ok {
		return nil
	}
	return &m.log[i]
}

// dropDefault records the drop d of a message of topic from the default
// history, folding the records into dropFloor when there are too many.
func (m *MemoryBroker) dropDefault(topic string, d mark) {
	if _, ok := m.defDrops[topic]; !ok && len(m.defDrops) >= m.retention.topicsPerRule() {
		for _, d := range m.defDrops {
			m.dropFloor = m.dropFloor.max(d)
		}
		clear(m.defDrops)
	}
	if m.defDrops == nil {
		m.defDrops = make(map[string]mark)
	}
	m.defDrops[topic] = m.defDrops[topic].max(d)
}

// dropSeq drops the retained message seq (already taken off its queue),
// at sequence at, and records it for gaps.
func (m *MemoryBroker) dropSeq(seq, at uint64) {
	e := m.find(seq)
	if e == nil || e.msg == nil {
		return
	}
	if e.rule < 0 {
		m.dropDefault(e.msg.Topic, mark{seq, at})
	} else {
		k := m.kept[e.rule]
		k.live--
		if t := k.topics[e.msg.Topic]; t != nil {
			t.dropped = t.dropped.max(mark{seq, at})
		}
	}
	e.msg = nil
	m.live--
	m.dropped(seq)
}

func (m *MemoryBroker) dropped(seq uint64) {
	if m.onDrop != nil {
		m.onDrop(seq)
	}
}

// trim drops messages older than their age bound and compacts the log.
func (m *MemoryBroker) trim(now time.Time) {
	if age := m.retention.MaxAge; age > 0 {
		cutoff := now.Add(-age)
		for m.def.len() > 0 && m.find(m.def.front()).msg.Time.Before(cutoff) {
			m.dropSeq(m.def.pop(), m.seq+1)
		}
	}
	for _, k := range m.kept {
		if k.rule.MaxAge > 0 {
			m.trimRule(k, now.Add(-k.rule.MaxAge))
		}
	}
	if dead := len(m.log) - m.live; dead > m.live && len(m.log) >= 64 {
		m.log = slices.DeleteFunc(m.log, func(e entry) bool { return e.msg == nil })
	}
}

// trimRule drops k's messages from before cutoff: the oldest of the rule
// is the oldest of its topic.
func (m *MemoryBroker) trimRule(k *ruleKeep, cutoff time.Time) {
	for k.aged.len() > 0 {
		e := m.find(k.aged.front())
		if e != nil && e.msg != nil && !e.msg.Time.Before(cutoff) {
			break
		}
		k.aged.pop()
		if e != nil && e.msg != nil {
			k.topics[e.msg.Topic].seqs.pop()
			m.dropSeq(e.seq, m.seq+1)
		}
	}
	// Messages dropped by count stay listed until they come first: list
	// only the live ones once most are not.
	if k.aged.len() > 2*k.live+64 {
		var aged seqQueue
		for _, seq := range k.aged.s[k.aged.head:] {
			if e := m.find(seq); e != nil && e.msg != nil {
				aged.push(seq)
			}
		}
		k.aged = aged
	}
}

// missed reports whether a reader of q that saw every message up to
// sequence after, of the topics q accepts, missed one that was dropped.
// It is conservative: drops of topics no longer told apart (dropFloor)
// count whatever their topic;
// a topic's drops are known by its last one, so a continued replay is
// told of a drop that the first page told already if the topic lost
// another message since.
func (m *MemoryBroker) missed(after, upto uint64, q Query) bool {
	if m.dropFloor.missed(after, upto, q.Continued) {
		return true
	}
	for topic, d := range m.defDrops {
		if d.missed(after, upto, q.Continued) && q.Accepts(topic) {
			return true
		}
	}
	for _, d := range m.drops {
		if d.missed(after, upto, q.Continued) && q.Accepts(d.topic) {
			return true
		}
	}
	for _, k := range m.kept {
		for topic, t := range k.topics {
			if t.dropped.missed(after, upto, q.Continued) && q.Accepts(topic) {
				return true
			}
		}
	}
	return false
}

// first returns the oldest retained message, nil if none.
func (m *MemoryBroker) first() *Message {
	for _, e := range m.log {
		if e.msg != nil {
			return e.msg
		}
	}
	return nil
}

// Since implements Broker. The messages are the ones in the log, shared,
// not copies. A resume is told of a gap on every page read while a
// message it missed is dropped after that page's start.
func (m *MemoryBroker) Since(_ context.Context, q Query) (Page, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trim(m.now())

	end := m.seqOf(q.Upto) // 0 if none
	var from uint64        // first sequence to return
	var page Page
	switch seq, ok := m.parse(q.After); {
	case q.After == Earliest:
		from = 1
	case !ok || seq > m.seq || m.missed(seq, end, q):
		from = seq + 1
		if !ok || seq > m.seq {
			from = 1
		}
		page.Gap = &Gap{LastID: q.After}
		if first := m.first(); first != nil {
			page.Gap.FirstID = first.ID
		}
	default:
		from = seq + 1
	}
	limit := q.PageLimit()
	i, _ := slices.BinarySearchFunc(m.log, from, func(e entry, s uint64) int { return cmp.Compare(e.seq, s) })
	for ; i < len(m.log) && m.log[i].seq <= end; i++ {
		msg := m.log[i].msg
		if msg == nil || !q.Accepts(msg.Topic) {
			continue
		}
		if len(page.Messages) == limit {
			page.More = true
			break
		}
		page.Messages = append(page.Messages, msg)
	}
	return page, nil
}

// Head implements Broker: a memory broker keeps nothing from before it
// started.
func (m *MemoryBroker) Head(context.Context) (string, error) { return "", nil }

// seqOf returns the sequence of one of this broker's IDs, 0 for any other.
func (m *MemoryBroker) seqOf(id string) uint64 {
	seq, _ := m.parse(id)
	return seq
}

func (m *MemoryBroker) parse(id string) (uint64, bool) {
	epoch, num, ok := strings.Cut(id, "-")
	if !ok || epoch != m.epoch {
		return 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}

// SetRetention implements Broker. Changed bounds or rules apply to the
// messages already retained as if each had been published under them, in
// order: a topic that changes rule keeps what its new rule keeps. What a
// rule dropped before is then remembered only as a sequence below which a
// resume, whatever its filters, is told of a gap.
func (m *MemoryBroker) SetRetention(r Retention) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setRetention(r)
}

func (m *MemoryBroker) setRetention(r Retention) {
	if r.Equal(m.retention) {
		return
	}
	old := m.log
	for _, k := range m.kept {
		for _, t := range k.topics {
			m.dropFloor = m.dropFloor.max(t.dropped)
		}
	}
	for _, d := range m.drops {
		m.dropFloor = m.dropFloor.max(d.mark)
	}
	m.drops = nil
	for _, d := range m.defDrops {
		m.dropFloor = m.dropFloor.max(d)
	}
	clear(m.defDrops)
	m.reset(r)
	for _, e := range old {
		if e.msg != nil {
			m.store(e.seq, e.msg, RuleOf(m.rules, e.msg.Topic))
		}
	}
	// What the new bounds dropped was dropped now, after every publish.
	for i := range m.drops {
		m.drops[i].at = m.seq + 1
	}
	for topic := range m.defDrops {
		m.defDrops[topic] = mark{m.defDrops[topic].seq, m.seq + 1}
	}
	for _, k := range m.kept {
		for _, t := range k.topics {
			if t.dropped.seq != 0 {
				t.dropped.at = m.seq + 1
			}
		}
	}
	m.trim(m.now())
}

// RetainsByRule implements RuleRetainer.
func (m *MemoryBroker) RetainsByRule() {}

// Close implements Broker.
func (m *MemoryBroker) Close() error { return nil }

// String describes the broker for logs.
func (m *MemoryBroker) String() string { return fmt.Sprintf("memory broker (epoch %s)", m.epoch) }

// Interface guards
var (
	_ Broker           = (*MemoryBroker)(nil)
	_ RetainedReporter = (*MemoryBroker)(nil)
	_ RuleRetainer     = (*MemoryBroker)(nil)
)
