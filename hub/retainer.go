package hub

import "time"

// Retainer applies a Retention to a history that a broker keeps elsewhere
// (a file), as the memory broker applies it to its own: it tracks the
// sequence, topic and time of each retained message, tells the broker
// which messages to delete, and whether a resume missed a dropped one.
// It is not safe for concurrent use.
type Retainer struct{ m *MemoryBroker }

// NewRetainer returns a Retainer applying r, which calls drop with the
// sequence of each message to delete (an added one included, when r keeps
// none of its topic), and reads the time from now.
func NewRetainer(r Retention, now func() time.Time, drop func(seq uint64)) *Retainer {
	m := &MemoryBroker{now: now, onDrop: drop}
	m.reset(r)
	return &Retainer{m}
}

// Add records the message seq, above every sequence added before, of
// topic, stored at t.
func (x *Retainer) Add(seq uint64, topic string, t time.Time) {
	x.m.seq = seq
	x.m.store(seq, &Message{Topic: topic, Time: t}, RuleOf(x.m.rules, topic))
}

// Forgotten records that messages up to seq may have been dropped without
// being added (before a restart), the last sequence issued being last: a
// resume from before seq is told of a gap, whatever its topics.
func (x *Retainer) Forgotten(seq, last uint64) {
	x.m.seq = max(x.m.seq, last)
	x.m.dropFloor = x.m.dropFloor.max(mark{seq, seq})
}

// Trim drops what is older than its age bound at now.
func (x *Retainer) Trim(now time.Time) { x.m.trim(now) }

// SetRetention applies r to what is retained, as MemoryBroker.SetRetention.
func (x *Retainer) SetRetention(r Retention) { x.m.setRetention(r) }

// Missed reports whether a reader of q, which saw everything it accepts up
// to sequence after, missed a dropped message, for a replay up to upto.
func (x *Retainer) Missed(after, upto uint64, q Query) bool { return x.m.missed(after, upto, q) }

// Retained reports whether the message seq is retained.
func (x *Retainer) Retained(seq uint64) bool {
	e := x.m.find(seq)
	return e != nil && e.msg != nil
}

// First returns the sequence of the oldest retained message, 0 if none.
func (x *Retainer) First() uint64 {
	for _, e := range x.m.log {
		if e.msg != nil {
			return e.seq
		}
	}
	return 0
}
