package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MemoryBroker keeps history in a bounded in-process ring. Its IDs are
// "EPOCH-SEQ": EPOCH is random per broker, so an ID from before a restart is
// recognised as a gap; SEQ counts up from 1.
type MemoryBroker struct {
	epoch string
	now   func() time.Time

	mu        sync.Mutex
	deliver   func(*Message)
	retention Retention
	ring      []*Message // ring[(start+i)%len(ring)], i < n
	start, n  int
	seq       uint64 // last assigned
	evicted   uint64 // highest sequence dropped from history
}

// NewMemoryBroker returns a memory broker with the given retention.
func NewMemoryBroker(r Retention) *MemoryBroker {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return &MemoryBroker{epoch: hex.EncodeToString(b[:]), now: time.Now, retention: r}
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
	var id []byte
	for i := range msgs {
		m.seq++
		id = strconv.AppendUint(append(append(id[:0], m.epoch...), '-'), m.seq, 10)
		msg := &stored[i]
		*msg = Message{ID: string(id), Topic: msgs[i].Topic, Event: msgs[i].Event, Data: msgs[i].Data, Binary: msgs[i].Binary, Time: now}
		ids[i] = msg.ID
		m.push(msg)
	}
	m.trim(now)
	if m.deliver != nil {
		for i := range stored {
			m.deliver(&stored[i])
		}
	}
	return ids, nil
}

// push appends msg to the ring, growing it up to the count bound and
// evicting the oldest message beyond it.
func (m *MemoryBroker) push(msg *Message) {
	limit := m.retention.Count
	if !m.retention.Keeps() {
		m.evicted = m.seq
		return
	}
	if m.n == len(m.ring) {
		if m.n >= limit {
			m.dropOldest()
		} else {
			m.grow()
		}
	}
	m.ring[(m.start+m.n)%len(m.ring)] = msg
	m.n++
}

func (m *MemoryBroker) grow() {
	size := min(max(16, 2*len(m.ring)), m.retention.Count)
	ring := make([]*Message, size)
	for i := range m.n {
		ring[i] = m.ring[(m.start+i)%len(m.ring)]
	}
	m.ring, m.start = ring, 0
}

func (m *MemoryBroker) dropOldest() {
	m.ring[m.start] = nil
	m.start = (m.start + 1) % len(m.ring)
	m.n--
	m.evicted++
}

func (m *MemoryBroker) at(i int) *Message { return m.ring[(m.start+i)%len(m.ring)] }

// trim drops messages beyond the count bound or older than MaxAge.
func (m *MemoryBroker) trim(now time.Time) {
	for m.n > 0 && m.n > m.retention.Count {
		m.dropOldest()
	}
	if age := m.retention.MaxAge; age > 0 {
		cutoff := now.Add(-age)
		for m.n > 0 && m.at(0).Time.Before(cutoff) {
			m.dropOldest()
		}
	}
	if m.n == 0 {
		m.evicted = m.seq
	}
}

// Since implements Broker. The messages are the ones in the ring, shared,
// not copies.
func (m *MemoryBroker) Since(_ context.Context, q Query) (Page, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trim(m.now())

	end := m.seqOf(q.Upto) // 0 if none
	first := m.evicted + 1
	var from uint64 // first sequence to return
	var page Page
	switch seq, ok := m.parse(q.After); {
	case q.After == Earliest:
		from = first
	case !ok || seq > m.seq || seq < m.evicted:
		from = first
		page.Gap = &Gap{LastID: q.After}
		if m.n > 0 {
			page.Gap.FirstID = m.at(0).ID
		}
	default:
		from = seq + 1
	}
	limit := q.PageLimit()
	for s := from; s <= end && s <= m.seq; s++ {
		msg := m.at(int(s - first))
		if !q.Accepts(msg.Topic) {
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

// SetRetention implements Broker.
func (m *MemoryBroker) SetRetention(r Retention) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.retention = r
	m.trim(m.now())
	if len(m.ring) > r.Count {
		m.ring, m.start = m.snapshot(), 0
	}
}

func (m *MemoryBroker) snapshot() []*Message {
	out := make([]*Message, m.n)
	for i := range out {
		out[i] = m.at(i)
	}
	return out
}

// Close implements Broker.
func (m *MemoryBroker) Close() error { return nil }

// String describes the broker for logs.
func (m *MemoryBroker) String() string { return fmt.Sprintf("memory broker (epoch %s)", m.epoch) }

// Interface guards
var (
	_ Broker           = (*MemoryBroker)(nil)
	_ RetainedReporter = (*MemoryBroker)(nil)
)
