package handlers

import (
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

// SSE serves a Server-Sent Events subscriber until the client goes away,
// the hub ends the subscription, or the server stops.
func (ep *Endpoint) SSE(w http.ResponseWriter, r *http.Request, rq Request) {
	topics, err := rq.topics(r)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	resume, err := lastID(r)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	sub, backlog, gap, err := ep.Hub.Subscribe(r.Context(), topics, resume)
	if err != nil {
		failSubscribe(w, err)
		return
	}
	defer sub.Close()

	kind, encode := hub.FrameSSE, encodeSSE
	if r.URL.Query().Get("format") == "json" {
		kind, encode = hub.FrameSSEJSON, encodeSSEJSON
	}
	frame := func(m *hub.Message) []byte { return m.Frame(kind, encode) }

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	// no-transform keeps Caddy's encode from compressing the stream: a
	// compressor per connection would cost more memory than the stream.
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	out := sseWriter{w: w, rc: http.NewResponseController(w)}
	defer out.rc.SetWriteDeadline(time.Time{}) //nolint:errcheck // best effort

	buf := []byte(sseRetry)
	if gap != nil {
		buf = appendGap(buf, gap, backlog, sub)
	}
	for _, m := range backlog {
		buf = append(buf, frame(m)...)
		if len(buf) >= sseBatch {
			if out.write(buf) != nil {
				return
			}
			buf = buf[:0]
		}
	}
	if out.write(buf) != nil {
		return
	}

	heartbeat := time.NewTicker(ep.Heartbeat)
	defer heartbeat.Stop()
	for {
		buf = buf[:0]
		select {
		case m := <-sub.Messages():
			buf = append(buf, frame(m)...)
			buf = drain(buf, sub, frame)
		case <-heartbeat.C:
			buf = append(buf, ":\n\n"...)
		case <-sub.Done():
			ep.endSSE(out, sub, frame)
			return
		case <-r.Context().Done():
			return
		}
		if out.write(buf) != nil {
			return
		}
	}
}

// endSSE finishes a stream the hub ended: on shutdown the client still gets
// what was queued; a slow consumer gets only the reason.
func (ep *Endpoint) endSSE(out sseWriter, sub *hub.Subscriber, frame func(*hub.Message) []byte) {
	reason := sub.Err()
	var buf []byte
	if !errors.Is(reason, hub.ErrSlowConsumer) {
		buf = drain(buf, sub, frame)
	}
	if reason != nil {
		buf = append(buf, ": closed: "+reason.Error()+"\n\n"...)
		ep.Logger.Debug("SSE subscriber closed", zap.Strings("topics", sub.Filters()), zap.Error(reason))
	}
	_ = out.write(buf)
}

// drain appends what is already queued, up to sseBatch bytes, so a burst
// goes out in one write.
func drain(buf []byte, sub *hub.Subscriber, frame func(*hub.Message) []byte) []byte {
	for len(buf) < sseBatch {
		select {
		case m := <-sub.Messages():
			buf = append(buf, frame(m)...)
		default:
			return buf
		}
	}
	return buf
}

func appendGap(buf []byte, gap *hub.Gap, backlog []*hub.Message, sub *hub.Subscriber) []byte {
	// With nothing replayed, the gap event moves the client's cursor to
	// the hub's head, so its next reconnect does not report the gap again.
	if len(backlog) == 0 {
		buf = append(buf, "id: "+sub.Head()+"\n"...)
	}
	data, _ := json.Marshal(gap)
	buf = append(buf, "event: gap\ndata: "...)
	buf = append(buf, data...)
	return append(buf, "\n\n"...)
}

type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// write sends buf and flushes it, within writeTimeout.
func (s sseWriter) write(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	return s.rc.Flush()
}

// encodeSSE encodes m as an SSE event: one data line per line of data.
func encodeSSE(m *hub.Message) []byte {
	var b strings.Builder
	b.Grow(len(m.ID) + len(m.Event) + len(m.Data) + 32)
	b.WriteString("id: ")
	b.WriteString(m.ID)
	if m.Event != "" {
		b.WriteString("\nevent: ")
		b.WriteString(m.Event)
	}
	data := strings.ReplaceAll(m.Data, "\r\n", "\n")
	data = strings.ReplaceAll(data, "\r", "\n")
	for line := range strings.SplitSeq(data, "\n") {
		b.WriteString("\ndata: ")
		b.WriteString(line)
	}
	b.WriteString("\n\n")
	return []byte(b.String())
}

// envelope is a message as JSON: the SSE data with ?format=json.
type envelope struct {
	ID    string    `json:"id"`
	Topic string    `json:"topic"`
	Event string    `json:"event,omitempty"`
	Data  string    `json:"data"`
	Time  time.Time `json:"time"`
}

func newEnvelope(m *hub.Message) envelope {
	return envelope{ID: m.ID, Topic: m.Topic, Event: m.Event, Data: m.Data, Time: m.Time.UTC()}
}

// encodeSSEJSON encodes m as an unnamed SSE event whose data is the JSON
// envelope, so one onmessage handler sees every topic and event name.
func encodeSSEJSON(m *hub.Message) []byte {
	data, _ := json.Marshal(newEnvelope(m))
	b := make([]byte, 0, len(data)+len(m.ID)+16)
	b = append(b, "id: "...)
	b = append(b, m.ID...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
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
