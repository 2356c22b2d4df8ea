package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Publish serves POST: it publishes the form fields or JSON object (or
// array) in the body and answers the assigned ID(s).
func (ep *Endpoint) Publish(w http.ResponseWriter, r *http.Request, rq Request) {
	id, denied := ep.authorizePublish(r, rq)
	if denied != nil {
		denied.send(w)
		return
	}
	if r.ContentLength > ep.MaxMessageSize {
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than max_message_size (%d bytes)", ep.MaxMessageSize))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, ep.MaxMessageSize)

	msgs, batch, err := ep.parsePublish(r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		var unsupported errUnsupportedType
		switch {
		case errors.As(err, &tooLarge):
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than max_message_size (%d bytes)", ep.MaxMessageSize))
		case errors.As(err, &unsupported):
			fail(w, http.StatusUnsupportedMediaType, err.Error())
		default:
			fail(w, http.StatusBadRequest, err.Error())
		}
		return
	}
	ids, denied := ep.publish(r.Context(), id, rq, r, msgs, batch, r.Header.Get("Idempotency-Key"))
	if denied != nil {
		denied.send(w)
		return
	}

	h := w.Header()
	h["Content-Type"], h["Cache-Control"] = jsonType, noStore
	_, _ = w.Write(appendIDs(make([]byte, 0, 16+24*len(ids)), ids, batch))
}

// The publish answer's header values, shared by every answer rather than
// a slice allocated per publish by Header.Set; net/http copies them when
// it writes the header, and nothing after the handler changes them.
var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
)

// appendIDs appends the answer to a publish, {"id":ID} or for a batch
// {"ids":[ID,…]}, and a newline: the bytes json.Encoder writes for them,
// without its map, encoder and reflection for every publish.
func appendIDs(b []byte, ids []string, batch bool) []byte {
	b = append(b, '{')
	return append(appendIDFields(b, ids, batch), "}\n"...)
}

// appendIDFields appends "id":ID or, for a batch, "ids":[ID,…].
func appendIDFields(b []byte, ids []string, batch bool) []byte {
	if !batch {
		b = append(b, `"id":`...)
		return appendJSONString(b, ids[0])
	}
	b = append(b, `"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string, the bytes json.Marshal
// makes of it, without its encoder state and reflection. Quotes and
// backslashes are escaped here; what json.Marshal escapes otherwise
// (control and HTML characters, U+2028 and U+2029, invalid UTF-8: rare in
// IDs, topics and data) takes json.Marshal's path.
func appendJSONString(b []byte, s string) []byte {
	start := len(b)
	b = append(b, '"')
	plain := 0 // s[plain:i] is yet to be appended as it is
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(append(b, s[plain:i]...), '\\', c)
				plain = i + 1
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				q, _ := json.Marshal(s)
				return append(b[:start], q...)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			q, _ := json.Marshal(s)
			return append(b[:start], q...)
		}
		i += size
	}
	return append(append(b, s[plain:]...), '"')
}

// publish is the publish path of every transport: it gives each message
// the request's topic when it names none, validates it, checks id's right
// to every topic, and publishes them atomically and in order; with an
// idempotency key, once (hub.PublishOnce). A refusal carries the status an
// HTTP publish answers with; a WebSocket sends its reason in an error
// frame.
func (ep *Endpoint) publish(ctx context.Context, id identity, rq Request, r *http.Request, msgs []hub.Message, batch bool, key string) ([]string, *denial) {
	for i := range msgs {
		if err := rq.complete(&msgs[i], r); err != nil {
			if batch {
				err = fmt.Errorf("message %d: %w", i, err)
			}
			return nil, &denial{status: http.StatusBadRequest, reason: err.Error()}
		}
	}
	if denied := id.mayPublishTo(msgs); denied != nil {
		return nil, denied
	}
	if denied := ep.hookPublish(ctx, &id, r, rq, msgs); denied != nil {
		return nil, denied
	}
	var ids []string
	var err error
	ctx = hub.WithPublisher(ctx, id.publisher(r, rq))
	if key != "" {
		ids, err = ep.Hub.PublishOnce(ctx, key, msgs...)
	} else {
		ids, err = ep.Hub.Publish(ctx, msgs...)
	}
	var held *hub.RetryError
	switch {
	case errors.As(err, &held):
		status := http.StatusServiceUnavailable
		if errors.Is(err, hub.ErrRateLimited) {
			status = http.StatusTooManyRequests
		}
		return nil, &denial{status: status, reason: err.Error(), retryAfter: held.After}
	case errors.Is(err, hub.ErrInvalidTopic), errors.Is(err, hub.ErrInvalidMessage), errors.Is(err, hub.ErrInvalidIdempotencyKey):
		return nil, &denial{status: http.StatusBadRequest, reason: err.Error()}
	case errors.Is(err, hub.ErrUnavailable), errors.Is(err, hub.ErrHubClosed):
		return nil, &denial{status: http.StatusServiceUnavailable, reason: err.Error()}
	case err != nil:
		ep.Logger.Error("publish failed", zap.Error(err))
		return nil, &denial{status: http.StatusInternalServerError, reason: "publish failed"}
	}
	return ids, nil
}

// mediaType is the media type of a Content-Type header: the header
// itself in the common case of no parameters, else mime.ParseMediaType's.
func mediaType(ctype string) string {
	switch ctype {
	case "application/json", "application/x-www-form-urlencoded":
		return ctype
	}
	media, _, _ := mime.ParseMediaType(ctype)
	return media
}

// readBody reads the request's body, in one allocation when the client
// said how long it is (r.Body is bounded by max_message_size).
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength <= 0 {
		return io.ReadAll(r.Body)
	}
	// Room for one byte more than announced: the read that finds EOF
	// needs a place to try.
	body := make([]byte, 0, r.ContentLength+1)
	for {
		n, err := r.Body.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		switch {
		case errors.Is(err, io.EOF):
			return body, nil
		case err != nil:
			return nil, err
		case len(body) == cap(body):
			body = slices.Grow(body, 512)
		}
	}
}

type errUnsupportedType struct{ got string }

func (e errUnsupportedType) Error() string {
	return fmt.Sprintf("unsupported Content-Type %q: use application/x-www-form-urlencoded, multipart/form-data, application/json or application/octet-stream", e.got)
}

// parsePublish reads the messages of a publish request; batch is true for a
// JSON array.
func (ep *Endpoint) parsePublish(r *http.Request) (msgs []hub.Message, batch bool, err error) {
	ctype := r.Header.Get("Content-Type")
	switch media := mediaType(ctype); media {
	case "application/json":
		body, err := readBody(r)
		if err != nil {
			return nil, false, err
		}
		msgs, batch, err = parseJSON(body, ep.Limits.batch())
		if err != nil {
			return nil, false, err
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		if media == "multipart/form-data" {
			err = r.ParseMultipartForm(ep.MaxMessageSize)
		} else {
			err = r.ParseForm()
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading form: %w", err)
		}
		form := r.PostForm
		if len(form["topic"]) > 1 || len(form["data"]) > 1 || len(form["event"]) > 1 {
			return nil, false, errors.New("a form publishes one message: use a JSON array for several")
		}
		msgs = []hub.Message{{Topic: form.Get("topic"), Event: form.Get("event"), Data: form.Get("data")}}
	case "application/octet-stream":
		// The body is the data, as it is: the topic comes from ?topic=
		// (or the default topic), the event name from ?event=.
		body, err := readBody(r)
		if err != nil {
			return nil, false, err
		}
		msgs = []hub.Message{{Event: r.URL.Query().Get("event"), Data: string(body), Binary: true}}
	default:
		return nil, false, errUnsupportedType{ctype}
	}
	return msgs, batch, nil
}

// jsonMessage is one message of a JSON publish. Data may be a string, kept
// as is, or any other JSON value, kept as its compact JSON text; binary
// data comes instead as DataBase64, standard base64.
type jsonMessage struct {
	Topic      string          `json:"topic"`
	Event      string          `json:"event"`
	Data       json.RawMessage `json:"data"`
	DataBase64 *string         `json:"data_base64"`
}

func parseJSON(body []byte, maxBatch int) ([]hub.Message, bool, error) {
	body = bytes.TrimSpace(body)
	batch := len(body) > 0 && body[0] == '['
	var in []jsonMessage
	var err error
	if batch {
		var ok bool
		if in, ok = scanBatch(body, maxBatch); !ok {
			in, err = decodeBatch(body, maxBatch)
		}
		switch {
		case errors.Is(err, errBatchTooLong):
			err = fmt.Errorf("JSON array longer than %d messages", maxBatch)
		case errors.Is(err, errBatchEmpty):
			err = errors.New("empty JSON array: nothing to publish")
		}
	} else {
		in = make([]jsonMessage, 1)
		var ok bool
		if in[0], ok = scanMessage(body); !ok {
			err = decodeStrict(body, &in[0])
		}
	}
	if err != nil {
		return nil, false, err
	}
	msgs, err := messages(in, batch)
	return msgs, batch, err
}

// decodeStrict decodes one JSON value that must be all of data and name
// no unknown field.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after JSON value")
	}
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

// Batches decodeBatch refuses.
var (
	errBatchTooLong = errors.New("too many messages")
	errBatchEmpty   = errors.New("no messages")
)

// decodeBatch decodes a JSON array of at most maxBatch messages one
// element at a time, and stops at the first one beyond: a huge array costs
// no more than maxBatch messages do.
func decodeBatch(data []byte, maxBatch int) ([]jsonMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, errors.New("invalid JSON: want an array of messages")
	}
	var in []jsonMessage
	for dec.More() {
		if len(in) == maxBatch {
			return nil, errBatchTooLong
		}
		var m jsonMessage
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("invalid JSON: message %d: %w", len(in), err)
		}
		in = append(in, m)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("invalid JSON: trailing data after JSON value")
	}
	if len(in) == 0 {
		return nil, errBatchEmpty
	}
	return in, nil
}

// messages converts decoded JSON messages; a batch's errors say which.
func messages(in []jsonMessage, batch bool) ([]hub.Message, error) {
	msgs := make([]hub.Message, len(in))
	for i, m := range in {
		var err error
		if msgs[i], err = m.message(); err != nil {
			if batch {
				err = fmt.Errorf("message %d: %w", i, err)
			}
			return nil, err
		}
	}
	return msgs, nil
}

// message converts m: string data is kept as is, other JSON data as its
// compact JSON text. m.Data is valid JSON (decoded or scanned), so a
// string with nothing to unquote, or a value without white space, is its
// own result.
func (m jsonMessage) message() (hub.Message, error) {
	msg := hub.Message{Topic: m.Topic, Event: m.Event}
	switch {
	case m.DataBase64 != nil:
		if len(m.Data) > 0 {
			return msg, errors.New(`send either "data" or "data_base64"`)
		}
		data, err := base64.StdEncoding.DecodeString(*m.DataBase64)
		if err != nil {
			return msg, fmt.Errorf("data_base64: %w", err)
		}
		msg.Data, msg.Binary = string(data), true
	case len(m.Data) == 0 || string(m.Data) == "null":
	case m.Data[0] == '"' && plainText(m.Data[1:len(m.Data)-1]):
		msg.Data = string(m.Data[1 : len(m.Data)-1])
	case m.Data[0] != '"' && bytes.IndexAny(m.Data, " \t\r\n") < 0:
		msg.Data = string(m.Data)
	case m.Data[0] == '"':
		if err := json.Unmarshal(m.Data, &msg.Data); err != nil {
			return msg, fmt.Errorf("invalid JSON: %w", err)
		}
	default:
		var compact bytes.Buffer
		if err := json.Compact(&compact, m.Data); err != nil {
			return msg, fmt.Errorf("invalid JSON: %w", err)
		}
		msg.Data = compact.String()
	}
	return msg, nil
}

// complete gives m the request's topic when it names none (the first
// ?topic=, then the configured default topic) and validates it.
func (rq Request) complete(m *hub.Message, r *http.Request) error {
	if m.Topic == "" {
		m.Topic = r.URL.Query().Get("topic")
	}
	if m.Topic == "" {
		def, err := rq.defaultTopic()
		if err != nil {
			return err
		}
		m.Topic = def
	}
	return checkMessage(*m)
}

// checkMessage validates what a publisher sent: a topic, and what
// hub.ValidateMessage asks of every message.
func checkMessage(m hub.Message) error {
	if m.Topic == "" {
		return errors.New("no topic: send a topic field")
	}
	return hub.ValidateMessage(&m)
}
