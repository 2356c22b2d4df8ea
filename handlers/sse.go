package handlers

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

const (
	// sseRetry is the reconnection delay EventSource is told to use.
	sseRetry = "retry: 2000\n\n"
	// sseBatch caps the bytes coalesced into one write.
	sseBatch = 64 << 10
	// writeTimeout drops a subscriber whose socket stops draining.
	writeTimeout = 10 * time.Second
)

// sseTransport serves Server-Sent Events to requests that accept them.
var sseTransport = &Transport{Name: "sse", asks: acceptsEventStream, serve: (*Endpoint).serveSSE}

// The kinds of a message's shared SSE frames: plain, and ?format=json.
var (
	frameSSE     = hub.NewFrameKind()
	frameSSEJSON = hub.NewFrameKind()
)

func acceptsEventStream(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// serveSSE serves a Server-Sent Events subscriber until the client goes
// away, the hub ends the subscription, or the server stops.
func (ep *Endpoint) serveSSE(w http.ResponseWriter, r *http.Request, rq Request) {
	// Two goroutines of their own (see onOwnStack), one after the other:
	// the first response write runs net/http's header writer, whose frame
	// alone is 2.8 KiB; on the goroutine that then waits for messages it
	// would double the stack for the stream's whole life.
	// An HTTP/1.1 stream is then handed to the parked core (sse_parked.go),
	// which serves it without a goroutine.
	var s *sseStream
	onOwnStack(func() { s = ep.openSSE(w, r, rq) })
	if s != nil && !s.park(rq) {
		onOwnStack(s.run)
	}
}

// sseStream is one SSE subscriber whose headers and replay have gone out.
type sseStream struct {
	ep    *Endpoint
	r     *http.Request
	id    identity
	sub   *hub.Subscriber
	out   *sseWriter
	frame func(*hub.Message) []byte
}

// openSSE subscribes, answers with the stream's headers and sends what the
// subscription replays. It returns nil when the request was answered
// otherwise or the client is gone.
func (ep *Endpoint) openSSE(w http.ResponseWriter, r *http.Request, rq Request) *sseStream {
	topics, err := rq.topics(r, ep.Limits.topics())
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return nil
	}
	resume, err := lastID(r)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return nil
	}
	id, topics, opts, denied := ep.authorizeSubscribe(r, rq, topics)
	if denied != nil {
		denied.send(w)
		return nil
	}
	sub, backlog, gap, err := ep.Hub.Subscribe(r.Context(), topics, resume, opts...)
	if err != nil {
		failSubscribe(w, err)
		return nil
	}

	kind, encode := frameSSE, encodeSSE
	if r.URL.Query().Get("format") == "json" {
		kind, encode = frameSSEJSON, encodeSSEJSON
	}
	s := &sseStream{
		ep:    ep,
		r:     r,
		id:    id,
		sub:   sub,
		out:   &sseWriter{w: w, rc: http.NewResponseController(w), lift: r.ProtoMajor >= 2},
		frame: func(m *hub.Message) []byte { return m.Frame(kind, encode) },
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	// no-transform keeps Caddy's encode from compressing the stream: a
	// compressor per connection would cost more memory than the stream.
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	buf := []byte(sseRetry)
	// History goes out a page at a time: each page is written before the
	// next is read.
	for {
		if gap != nil {
			buf = appendGap(buf, gap, backlog, sub)
		}
		for _, m := range backlog {
			buf = append(buf, s.frame(m)...)
			if len(buf) >= sseBatch {
				if s.out.write(buf) != nil {
					s.close()
					return nil
				}
				buf = buf[:0]
			}
		}
		if !sub.Replaying() {
			break
		}
		if backlog, gap, err = sub.Replay(r.Context()); err != nil {
			buf = append(buf, ": closed: "+err.Error()+"\n\n"...)
			_ = s.out.write(buf)
			s.close()
			return nil
		}
	}
	if s.out.write(buf) != nil {
		s.close()
		return nil
	}
	return s
}

// close ends the subscription and lifts the stream's write deadline.
func (s *sseStream) close() {
	s.sub.Close()
	_ = s.out.rc.SetWriteDeadline(time.Time{}) // best effort
}

// run sends live messages and heartbeats until the stream ends.
func (s *sseStream) run() {
	defer s.close()
	heartbeat, leave := joinBeats(s.ep.Heartbeat)
	defer leave()
	expired, stopExpiry := s.id.expiry()
	defer stopExpiry()
	// Taken once: finding Done through Caddy's chain of request contexts
	// costs cache misses on every wake-up.
	ready, ended, gone := s.sub.Ready(), s.sub.Done(), s.r.Context().Done()
	var buf []byte
	for {
		buf = buf[:0]
		select {
		case <-ready:
			// Ready also fires when the hub ends the subscription.
			select {
			case <-ended:
				s.ep.endSSE(s.out, s.sub, s.frame)
				return
			default:
			}
			buf = drain(buf, s.sub, s.frame)
		case <-heartbeat.C():
			heartbeat.Next()
			buf = append(buf, ":\n\n"...)
		case <-expired:
			_ = s.out.write([]byte(": closed: " + errTokenExpired.Error() + "\n\n"))
			return
		case <-gone:
			return
		}
		if s.out.write(buf) != nil {
			return
		}
	}
}

// endSSE finishes a stream the hub ended: on shutdown the client still gets
// what was queued; a slow consumer gets only the reason.
func (ep *Endpoint) endSSE(out *sseWriter, sub *hub.Subscriber, frame func(*hub.Message) []byte) {
	reason := sub.Err()
	var buf []byte
	if !errors.Is(reason, hub.ErrSlowConsumer) {
		// All of the queue, a batch per write: a full batch means more.
		for buf = drain(buf, sub, frame); len(buf) >= sseBatch; buf = drain(buf[:0], sub, frame) {
			if out.write(buf) != nil {
				return
			}
		}
	}
	if reason != nil {
		buf = append(buf, ": closed: "+reason.Error()+"\n\n"...)
		ep.Logger.Debug("SSE subscriber closed", zap.Strings("topics", sub.Filters()), zap.Error(reason))
	}
	_ = out.write(buf)
}

// drain appends what is queued, from sseBatch bytes on a few messages at
// most, so a burst goes out in one write. What stays queued keeps the
// subscriber's Ready signalled.
func drain(buf []byte, sub *hub.Subscriber, frame func(*hub.Message) []byte) []byte {
	var batch [8]*hub.Message
	for len(buf) < sseBatch {
		msgs := sub.Take(batch[:0])
		for _, m := range msgs {
			buf = append(buf, frame(m)...)
		}
		if len(msgs) < len(batch) {
			break
		}
	}
	return buf
}

func appendGap(buf []byte, gap *hub.Gap, backlog []*hub.Message, sub *hub.Subscriber) []byte {
	// With nothing replayed, the gap event moves the client's cursor to
	// the hub's head, so its next reconnect does not report the gap again.
	if head := sub.Head(); len(backlog) == 0 && sseSafe(head) {
		buf = append(buf, "id: "+head+"\n"...)
	}
	data, _ := json.Marshal(gap)
	buf = append(buf, "event: gap\ndata: "...)
	buf = append(buf, data...)
	return append(buf, "\n\n"...)
}

// sseSafe reports whether s can be the value of an SSE "id:" or "event:"
// line: a CR or LF would end the line and start another field. Brokers
// validate what they read back; this holds whatever the source.
func sseSafe(s string) bool { return !strings.ContainsAny(s, "\r\n") }

type sseWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	deadline time.Time // the write deadline set last
	// lift: the deadline is lifted after every write. An HTTP/2 stream
	// is reset when its deadline passes, writing or not, so a deadline
	// left behind would end a stream quiet between two heartbeats; over
	// HTTP/1.1 a deadline only fails a write under way.
	lift bool
}

// write sends buf and flushes it, within writeTimeout.
func (s *sseWriter) write(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	// Moving the deadline costs a timer update, and Caddy's write idle
	// timeout already moves its own before every write and flush, capped
	// by ours: ours moves only once half of it has passed, so a socket
	// that stops draining is dropped within writeTimeout/2 to writeTimeout.
	if now := time.Now(); s.deadline.Sub(now) < writeTimeout/2 {
		s.deadline = now.Add(writeTimeout)
		_ = s.rc.SetWriteDeadline(s.deadline)
	}
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil || !s.lift {
		return err
	}
	s.deadline = time.Time{}
	_ = s.rc.SetWriteDeadline(time.Time{}) // best effort, as when set
	return nil
}

// encodeSSE encodes m as an SSE event: one data line per line of data. A
// message whose ID or event name holds a line break encodes to nothing: it
// is not sent, rather than sent with fields it did not have.
func encodeSSE(m *hub.Message) []byte {
	if !sseSafe(m.ID) || !sseSafe(m.Event) {
		return nil
	}
	b := make([]byte, 0, len(m.ID)+len(m.Event)+len(m.Data)+32)
	b = appendSSEID(b, m)
	if m.Event != "" {
		b = append(b, "event: "...)
		b = append(b, m.Event...)
		b = append(b, '\n')
	}
	if m.Binary {
		// A field EventSource ignores, so only a client that reads the
		// stream itself learns to decode; browsers use ?format=json.
		b = append(b, "encoding: base64\ndata: "...)
		b = base64.StdEncoding.AppendEncode(b, []byte(m.Data))
		return append(b, "\n\n"...)
	}
	data := strings.ReplaceAll(m.Data, "\r\n", "\n")
	data = strings.ReplaceAll(data, "\r", "\n")
	for line := range strings.SplitSeq(data, "\n") {
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// appendSSEID appends m's id line. A signal (a presence event) has no ID
// and gets none: an event without one leaves the client's Last-Event-ID
// where the last message put it.
func appendSSEID(b []byte, m *hub.Message) []byte {
	if m.ID == "" {
		return b
	}
	b = append(b, "id: "...)
	b = append(b, m.ID...)
	return append(b, '\n')
}

// envelope is a message as JSON: the SSE data with ?format=json. A signal
// (a presence event) has no id. Binary data is in base64, with
// "encoding":"base64"; text has no encoding.
type envelope struct {
	ID       string    `json:"id,omitempty"`
	Topic    string    `json:"topic"`
	Event    string    `json:"event,omitempty"`
	Data     string    `json:"data"`
	Encoding string    `json:"encoding,omitempty"`
	Time     time.Time `json:"time"`
}

func newEnvelope(m *hub.Message) envelope {
	e := envelope{ID: m.ID, Topic: m.Topic, Event: m.Event, Data: m.Data, Time: m.Time.UTC()}
	if m.Binary {
		e.Data, e.Encoding = base64.StdEncoding.EncodeToString([]byte(m.Data)), "base64"
	}
	return e
}

// envelopeSize is about the size of m's envelope, with room for a few
// escapes or base64: a buffer that needs no growing.
func envelopeSize(m *hub.Message) int {
	return len(m.ID) + len(m.Topic) + len(m.Event) + len(m.Data)*4/3 + 100
}

// appendEnvelope appends m's envelope as JSON: the bytes json.Marshal
// makes of newEnvelope(m), without its reflection, once per message and
// wire format. A time json.Marshal refuses (a year outside 0 to 9999)
// takes its path, and its nothing.
func appendEnvelope(b []byte, m *hub.Message) []byte {
	t := m.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		data, _ := json.Marshal(newEnvelope(m))
		return append(b, data...)
	}
	b = append(b, '{')
	if m.ID != "" {
		b = append(appendJSONString(append(b, `"id":`...), m.ID), ',')
	}
	b = appendJSONString(append(b, `"topic":`...), m.Topic)
	if m.Event != "" {
		b = appendJSONString(append(b, `,"event":`...), m.Event)
	}
	if m.Binary {
		b = base64.StdEncoding.AppendEncode(append(b, `,"data":"`...), []byte(m.Data))
		b = append(b, `","encoding":"base64"`...)
	} else {
		b = appendJSONString(append(b, `,"data":`...), m.Data)
	}
	b = append(t.AppendFormat(append(b, `,"time":"`...), time.RFC3339Nano), '"')
	return append(b, '}')
}

// encodeSSEJSON encodes m as an unnamed SSE event whose data is the JSON
// envelope, so one onmessage handler sees every topic and event name. As
// with encodeSSE, an ID with a line break encodes to nothing; the event
// name is inside the JSON, escaped.
func encodeSSEJSON(m *hub.Message) []byte {
	if !sseSafe(m.ID) {
		return nil
	}
	b := make([]byte, 0, envelopeSize(m)+len(m.ID)+16)
	b = appendSSEID(b, m)
	b = append(b, "data: "...)
	b = appendEnvelope(b, m)
	return append(b, "\n\n"...)
}

// failSubscribe answers a Subscribe error.
func failSubscribe(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, hub.ErrInvalidTopic):
		fail(w, http.StatusBadRequest, err.Error())
	default:
		fail(w, http.StatusServiceUnavailable, err.Error())
	}
}
