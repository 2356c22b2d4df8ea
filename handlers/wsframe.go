package handlers

// The WebSocket frame protocol: the frames a client may send, how each is
// parsed and checked (a publish frame goes through the publish path every
// transport shares), and the frames the server answers with.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// wsCommand is work the reader hands the writer: a subscription change,
// or a frame to send.
type wsCommand struct {
	kind   string // "subscribe", "unsubscribe", "refresh", or "" to send frame
	topics []string
	lastID string
	ref    json.RawMessage
	frame  []byte
}

// clientFrame is any frame a client sends; Type says which fields apply.
type clientFrame struct {
	Type string          `json:"type"`
	Ref  json.RawMessage `json:"ref"`
	// subscribe, unsubscribe
	Topics []string `json:"topics"`
	LastID string   `json:"last_id"`
	// publish: one message, or several in Messages
	Topic      string          `json:"topic"`
	Event      string          `json:"event"`
	Data       json.RawMessage `json:"data"`
	DataBase64 *string         `json:"data_base64"`
	// Messages stays undecoded until the frame's type and the
	// connection's right to publish are checked (decodeBatch).
	Messages json.RawMessage `json:"messages"`
	// IdempotencyKey makes a publish once (hub.PublishOnce), as the
	// Idempotency-Key header does over HTTP.
	IdempotencyKey string `json:"idempotency_key"`
	// refresh: the token that replaces the connection's
	Token string `json:"token"`
}

// Server frames. A message frame is the envelope with "type":"message".
type (
	wsMessage struct {
		Type string `json:"type"`
		envelope
	}
	wsGap struct {
		Type string `json:"type"`
		hub.Gap
		// ID, when no message follows from history, is where the
		// client's cursor moves (the hub's head).
		ID string `json:"id,omitempty"`
	}
	wsReply struct {
		Type   string          `json:"type"` // "ack" or "error"
		Ref    json.RawMessage `json:"ref,omitempty"`
		ID     string          `json:"id,omitempty"`
		IDs    []string        `json:"ids,omitempty"`
		Reason string          `json:"reason,omitempty"`
	}
)

// encodeWS encodes m as the payload of its WebSocket frame: the JSON
// envelope, or for binary data a binary envelope (appendBinaryFrame) whose
// header is the envelope without data, with "encoding":"binary".
func encodeWS(m *hub.Message) []byte {
	if m.Binary {
		header, _ := json.Marshal(wsBinaryHeader{Type: "message", ID: m.ID, Topic: m.Topic, Event: m.Event, Time: m.Time.UTC(), Encoding: "binary"})
		return appendBinaryFrame(nil, header, m.Data)
	}
	b, _ := json.Marshal(wsMessage{Type: "message", envelope: newEnvelope(m)})
	return b
}

// wsOpcode is the opcode of m's frame (encodeWS).
func wsOpcode(m *hub.Message) int {
	if m.Binary {
		return websocket.BinaryMessage
	}
	return websocket.TextMessage
}

// wsBinaryHeader is the header of a binary message frame.
type wsBinaryHeader struct {
	Type     string    `json:"type"`
	ID       string    `json:"id,omitempty"`
	Topic    string    `json:"topic"`
	Event    string    `json:"event,omitempty"`
	Time     time.Time `json:"time"`
	Encoding string    `json:"encoding"`
}

// A binary frame, either way, is a binary envelope: the length of a JSON
// header (2 bytes, big-endian), the header, then the data, raw. One frame
// per message keeps it whole: nothing pairs frames, on either side.
const binaryHeaderLength = 2

// appendBinaryFrame appends a binary envelope; header is at most 64 KiB
// (a topic, an event name and an ID are bounded far below).
func appendBinaryFrame(b, header []byte, data string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// splitBinaryFrame splits a client's binary envelope into its header and
// data.
func splitBinaryFrame(frame []byte) (header, data []byte, err error) {
	if len(frame) < binaryHeaderLength {
		return nil, nil, errors.New("invalid binary frame: shorter than its 2-byte header length")
	}
	n := int(binary.BigEndian.Uint16(frame))
	if n > len(frame)-binaryHeaderLength {
		return nil, nil, fmt.Errorf("invalid binary frame: header of %d bytes in a frame of %d", n, len(frame))
	}
	return frame[binaryHeaderLength : binaryHeaderLength+n], frame[binaryHeaderLength+n:], nil
}

func ackFrame(ref json.RawMessage) []byte {
	b, _ := json.Marshal(wsReply{Type: "ack", Ref: ref})
	return b
}

func errorFrame(ref json.RawMessage, reason string) []byte {
	b, _ := json.Marshal(wsReply{Type: "error", Ref: ref, Reason: reason})
	return b
}

// command parses a client frame into the writer's command; a bad frame, or
// a publish, becomes the frame that answers it.
// A binary frame is a publish of binary data: its header is the publish
// frame, without data.
func (c *wsConn) command(isBinary bool, data []byte) wsCommand {
	if isBinary {
		return c.binaryCommand(data)
	}
	f, err := parseFrame(data)
	if err != nil {
		return wsCommand{frame: errorFrame(f.Ref, err.Error())}
	}
	switch f.Type {
	case "subscribe", "unsubscribe":
		if err := checkSubscription(f, c.ep.Limits.topics()); err != nil {
			return wsCommand{frame: errorFrame(f.Ref, err.Error())}
		}
		return wsCommand{kind: f.Type, topics: f.Topics, lastID: f.LastID, ref: f.Ref}
	case "publish":
		return wsCommand{frame: c.publish(f)}
	case "refresh":
		return c.refresh(f)
	default:
		return wsCommand{frame: errorFrame(f.Ref, fmt.Sprintf("unknown frame type %q: use subscribe, unsubscribe, publish or refresh", f.Type))}
	}
}

// binaryCommand publishes a binary frame's data, as its header says.
func (c *wsConn) binaryCommand(frame []byte) wsCommand {
	header, data, err := splitBinaryFrame(frame)
	if err != nil {
		return wsCommand{frame: errorFrame(nil, err.Error())}
	}
	f, err := parseFrame(header)
	switch {
	case err != nil:
		return wsCommand{frame: errorFrame(f.Ref, "binary frame header: "+err.Error())}
	case f.Type != "publish":
		return wsCommand{frame: errorFrame(f.Ref, `a binary frame publishes: its header's type must be "publish"`)}
	case f.Data != nil || f.Messages != nil || f.Topics != nil || f.LastID != "" || f.Token != "":
		return wsCommand{frame: errorFrame(f.Ref, `a binary frame's header takes "topic", "event", "ref" and "idempotency_key": the data follows it`)}
	}
	msg := hub.Message{Topic: f.Topic, Event: f.Event, Data: string(data), Binary: true}
	return wsCommand{frame: c.publishMessages(f, []hub.Message{msg}, false)}
}

// parseFrame parses a client's text frame, or a binary frame's header.
// Its Data and Messages are parts of data, which the caller keeps while it
// handles the frame; its Ref, which an answer may echo later, is a copy.
func parseFrame(data []byte) (clientFrame, error) {
	f, ok := scanFrame(data)
	var err error
	if !ok {
		f = clientFrame{}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		err = dec.Decode(&f)
		if err == nil && dec.More() {
			err = errors.New("trailing data after JSON value")
		}
	}
	if !validRef(f.Ref) {
		f.Ref = nil
		if err == nil {
			err = fmt.Errorf("ref must be a string or number of at most %d bytes", maxRefLength)
		}
	}
	if err != nil {
		return f, fmt.Errorf("invalid frame: %w", err)
	}
	return f, nil
}

// scanFrame reads a frame in the shape clients send, as scanMessage reads
// a JSON publish: an object whose keys are exactly those of clientFrame
// but "topics", with plain string values (no escape) for its string
// fields, and data nothing but that object. It reports false for anything
// else, and parseFrame decodes that with json.Decoder, whose values and
// errors are the contract (FuzzScanFrame checks that both agree).
func scanFrame(data []byte) (clientFrame, bool) {
	var f clientFrame
	s := jsonScanner{b: data}
	ok := s.object(func(key []byte) bool {
		var str *string
		var raw *json.RawMessage
		switch string(key) {
		case "type":
			str = &f.Type
		case "last_id":
			str = &f.LastID
		case "topic":
			str = &f.Topic
		case "event":
			str = &f.Event
		case "idempotency_key":
			str = &f.IdempotencyKey
		case "token":
			str = &f.Token
		case "data_base64":
			f.DataBase64 = new(string)
			str = f.DataBase64
		case "ref":
			raw = &f.Ref
		case "data":
			raw = &f.Data
		case "messages":
			raw = &f.Messages
		default:
			return false
		}
		var v []byte
		ok := false
		if str != nil {
			v, ok = s.plainString()
			*str = frameString(v)
		} else {
			*raw, ok = s.value()
		}
		return ok
	})
	if f.Ref != nil {
		f.Ref = bytes.Clone(f.Ref)
	}
	return f, ok && s.end()
}

// frameString returns v as a string: a frame type is one of the few
// constants, not a copy per frame.
func frameString(v []byte) string {
	for _, t := range frameTypes {
		if string(v) == t {
			return t
		}
	}
	return string(v)
}

var frameTypes = [...]string{"publish", "subscribe", "unsubscribe", "refresh"}

func validRef(ref json.RawMessage) bool {
	if len(ref) == 0 {
		return true
	}
	if len(ref) > maxRefLength {
		return false
	}
	// ref is one JSON value: a string with nothing to unquote is valid,
	// and a number is if it fits a float64, as json.Unmarshal says.
	switch c := ref[0]; {
	case c == '"' && plainText(ref[1:len(ref)-1]):
		return true
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := strconv.ParseFloat(string(ref), 64)
		return err == nil
	}
	var v any
	if json.Unmarshal(ref, &v) != nil {
		return false
	}
	switch v.(type) {
	case string, float64:
		return true
	}
	return false
}

func checkSubscription(f clientFrame, maxTopics int) error {
	switch {
	case f.Topic != "" || f.Event != "" || f.Data != nil || f.DataBase64 != nil || f.Messages != nil:
		return fmt.Errorf(`%s takes "topics" (a list) and "last_id"`, f.Type)
	case len(f.Topics) == 0:
		return errors.New(`no topics: send "topics": ["NAME"]`)
	case f.Type == "unsubscribe" && f.LastID != "":
		return errors.New("unsubscribe takes no last_id")
	case len(f.LastID) > maxIDLength:
		return errors.New("last_id too long")
	}
	return checkFilters(f.Topics, maxTopics, "")
}

// publish publishes what f carries, with the authorisation of the upgrade
// request, and returns the ack or error frame. The right to publish is
// checked before the messages are decoded, and they are decoded one at a
// time up to the batch limit, so a huge frame costs little.
func (c *wsConn) publish(f clientFrame) []byte {
	if denied := c.ident().mayPublish(); denied != nil {
		return errorFrame(f.Ref, denied.reason)
	}
	if string(f.Messages) == "null" {
		f.Messages = nil
	}
	one := f.Topic != "" || f.Event != "" || f.Data != nil || f.DataBase64 != nil
	batch := f.Messages != nil
	switch {
	case f.Topics != nil || f.LastID != "":
		return errorFrame(f.Ref, `publish takes "topic", "data", "event" (or "messages"), not "topics" or "last_id"`)
	case one && batch:
		return errorFrame(f.Ref, `publish takes either "messages" or one message's "topic", "data", "event"`)
	}
	in := []jsonMessage{{Topic: f.Topic, Event: f.Event, Data: f.Data, DataBase64: f.DataBase64}}
	if batch {
		var err error
		var ok bool
		if in, ok = scanBatch(f.Messages, c.ep.Limits.batch()); !ok {
			in, err = decodeBatch(f.Messages, c.ep.Limits.batch())
		}
		switch {
		case errors.Is(err, errBatchTooLong):
			return errorFrame(f.Ref, fmt.Sprintf("more than %d messages", c.ep.Limits.batch()))
		case errors.Is(err, errBatchEmpty):
			return errorFrame(f.Ref, "empty messages: nothing to publish")
		case err != nil:
			return errorFrame(f.Ref, "messages: "+err.Error())
		}
	}
	msgs, err := messages(in, batch)
	if err != nil {
		return errorFrame(f.Ref, err.Error())
	}
	return c.publishMessages(f, msgs, batch)
}

// publishMessages publishes msgs, which f carried, and returns the ack or
// error frame.
func (c *wsConn) publishMessages(f clientFrame, msgs []hub.Message, batch bool) []byte {
	if denied := c.ident().mayPublish(); denied != nil {
		return errorFrame(f.Ref, denied.reason)
	}
	ids, denied := c.ep.publish(c.ctx, *c.ident(), c.rq, c.r, msgs, batch, f.IdempotencyKey)
	if denied != nil {
		return errorFrame(f.Ref, denied.reason)
	}
	return appendAck(nil, f.Ref, ids, batch)
}

// appendAck appends the ack of a publish: the bytes json.Marshal makes of
// its wsReply, without its reflection for every publish. A ref that
// json.Marshal would change (white space, characters it escapes) or an
// empty ID (omitted) takes json.Marshal's path.
func appendAck(b []byte, ref json.RawMessage, ids []string, batch bool) []byte {
	plain := len(ids) > 0 && (batch || ids[0] != "")
	for _, c := range ref {
		plain = plain && c > ' ' && c < 0x7f && c != '<' && c != '>' && c != '&'
	}
	if !plain {
		ack := wsReply{Type: "ack", Ref: ref, IDs: ids}
		if !batch && len(ids) > 0 {
			ack.ID, ack.IDs = ids[0], nil
		}
		m, _ := json.Marshal(ack)
		return append(b, m...)
	}
	b = append(b, `{"type":"ack",`...)
	if len(ref) > 0 {
		b = append(b, `"ref":`...)
		b = append(append(b, ref...), ',')
	}
	return append(appendIDFields(b, ids, batch), '}')
}
