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
	"sync/atomic"
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
	// Binary marks Data as bytes, not text: it may then hold any bytes,
	// and transports deliver it as such (a WebSocket binary frame) or
	// encoded (base64 over SSE and long-poll).
	Binary bool
	Time   time.Time

	frames []frameSlot
	queued time.Duration // clock() when handed to the fan-out
}

// FrameKind names one wire encoding of messages (an SSE event, a
// WebSocket frame…) for Message.Frame, so each transport encodes a
// fanned-out message once and shares the bytes. The hub knows no
// transport: each registers its kinds with NewFrameKind.
type FrameKind int

// frameKinds counts the kinds registered.
var frameKinds atomic.Int32

// NewFrameKind registers a frame kind. Call it when the program starts,
// in a package-level variable: messages fanned out before a kind exists
// have no slot for it, and Frame encodes them for it each time.
func NewFrameKind() FrameKind { return FrameKind(frameKinds.Add(1) - 1) }

// frameSlot is one kind's shared encoding of a message.
type frameSlot struct {
	once sync.Once
	b    []byte
}

// newFrames returns a fanned-out message's slots, one per kind.
func newFrames() []frameSlot { return make([]frameSlot, frameKinds.Load()) }

// Frame returns the message encoded by encode, computing it at most once per
// kind for messages that went through the hub's fan-out (concurrent first
// callers wait for the one encoding). The returned bytes are shared:
// callers must not modify them.
func (m *Message) Frame(kind FrameKind, encode func(*Message) []byte) []byte {
	if kind < 0 || int(kind) >= len(m.frames) {
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
// never delivered. Binary data may be any bytes.
func ValidateMessage(m *Message) error {
	if err := ValidateTopic(m.Topic); err != nil {
		return err
	}
	if err := ValidateEvent(m.Event); err != nil {
		return err
	}
	if !m.Binary && !utf8.ValidString(m.Data) {
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
