// Package hub is the transport-independent core of caddy-pubsub: messages
// and topics, the Broker that orders and retains them, and the Hub that fans
// them out to subscribers with bounded queues. It imports neither Caddy nor
// net/http, so every transport and broker plugs into the same semantics.
package hub

import (
	"sync"
	"time"
)

// Message is one published message. Brokers assign ID and Time. A
// signal (a presence event) is a message without an ID: it is delivered
// live only, never stored, and moves no subscriber's resume position.
type Message struct {
	ID    string
	Topic string
	Event string // optional event name (SSE "event:" field)
	Data  string
	Time  time.Time

	frames *frameCache
}

// Frame kinds for Message.Frame: one slot per wire encoding, so each
// transport encodes a fanned-out message once and shares the bytes.
const (
	FrameSSE = iota
	FrameSSEJSON
	FrameWebSocket
	FrameJSON // the bare JSON envelope, as in long-poll answers
	frameKinds
)

type frameCache [frameKinds]struct {
	once sync.Once
	b    []byte
}

// Frame returns the message encoded by encode, computing it at most once per
// kind for messages that went through the hub's fan-out (concurrent first
// callers wait for the one encoding). The returned bytes are shared:
// callers must not modify them.
func (m *Message) Frame(kind int, encode func(*Message) []byte) []byte {
	if m.frames == nil || kind < 0 || kind >= frameKinds {
		return encode(m)
	}
	f := &m.frames[kind]
	f.once.Do(func() { f.b = encode(m) })
	return f.b
}
