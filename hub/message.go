// Package hub is the transport-independent core of caddy-pubsub: messages
// and topics, the Broker that orders and retains them, and the Hub that fans
// them out to subscribers with bounded queues. It imports neither Caddy nor
// net/http, so every transport and broker plugs into the same semantics.
package hub

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
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

// MaxEventLength bounds an event name, in bytes.
const MaxEventLength = 64

// ErrInvalidMessage wraps the validation errors of a message's event name
// and data; a bad topic wraps ErrInvalidTopic.
var ErrInvalidMessage = errors.New("invalid message")

// ValidateMessage checks what every message must be, whoever wrote it: a
// publisher, an upstream link, or a broker's record read back from disk or
// from Redis, where anyone with access may have written it. Transports write
// the topic, event name and data into frames, so a message that fails is
// never delivered.
func ValidateMessage(m *Message) error {
	if err := ValidateTopic(m.Topic); err != nil {
		return err
	}
	if err := ValidateEvent(m.Event); err != nil {
		return err
	}
	if !utf8.ValidString(m.Data) {
		return fmt.Errorf("%w: data is not valid UTF-8", ErrInvalidMessage)
	}
	return nil
}

// ValidateEvent checks an event name: empty, or at most MaxEventLength
// bytes of UTF-8 without control characters (an SSE "event:" line ends at
// CR or LF), and not one of the names the transports use themselves ("gap",
// "error").
func ValidateEvent(event string) error {
	switch {
	case event == "":
		return nil
	case len(event) > MaxEventLength:
		return fmt.Errorf("%w: event name longer than %d bytes", ErrInvalidMessage, MaxEventLength)
	case !utf8.ValidString(event) || strings.IndexFunc(event, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: event name must be UTF-8 text without control characters", ErrInvalidMessage)
	case event == "gap" || event == "error":
		return fmt.Errorf("%w: event name %q is reserved", ErrInvalidMessage, event)
	}
	return nil
}
