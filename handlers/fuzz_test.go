package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// fuzzEndpoint returns an endpoint on a fresh memory hub, with small
// limits so that the fuzzer reaches them, and closes the hub when the test
// ends.
func fuzzEndpoint(t *testing.T) *Endpoint {
	keep := hub.Retention{Count: 16}
	h := hub.New(hub.NewMemoryBroker(keep), hub.Options{Queue: 1, Retention: keep})
	t.Cleanup(func() { _ = h.Close() })
	return &Endpoint{
		Hub:            h,
		MaxMessageSize: 4 << 10,
		Limits:         Limits{Topics: 4, Batch: 3},
		Logger:         zap.NewNop(),
	}
}

// published returns every message the hub delivered.
func published(t *testing.T, h *hub.Hub) []*hub.Message {
	if h.Head() == "" {
		return nil
	}
	page, err := h.History(context.Background(), hub.Query{After: hub.Earliest, Upto: h.Head(), Limit: math.MaxInt})
	if err != nil {
		t.Fatal(err)
	}
	return page.Messages
}

// checkPublished checks what a publish put in the hub against its IDs:
// one message per ID, each with a valid topic, UTF-8 data and an allowed
// event name, at most batch of them.
func checkPublished(t *testing.T, h *hub.Hub, ids []string, batch int) {
	msgs := published(t, h)
	if len(ids) == 0 || len(ids) > batch || len(msgs) != len(ids) {
		t.Fatalf("answered %d IDs, hub has %d messages (batch %d)", len(ids), len(msgs), batch)
	}
	for i, m := range msgs {
		switch {
		case m.ID != ids[i]:
			t.Fatalf("message %d has ID %s, answer says %s", i, m.ID, ids[i])
		case hub.ValidateTopic(m.Topic) != nil:
			t.Fatalf("published to invalid topic %q", m.Topic)
		case !m.Binary && !utf8.ValidString(m.Data):
			t.Fatalf("published data that is not UTF-8: %q", m.Data)
		case hub.ValidateEvent(m.Event) != nil:
			t.Fatalf("published with event %q", m.Event)
		}
	}
}

// Whatever a publisher sends, the real HTTP publish path (form, multipart
// or JSON, with ?topic=) answers 200 with the IDs of what it published, or
// a 400, 413 or 415 with a one-line reason, and publishes only valid
// messages.
func FuzzPublish(f *testing.F) {
	const form, multi, js = "application/x-www-form-urlencoded", "multipart/form-data; boundary=B", "application/json"
	for _, seed := range []struct{ ctype, query, body string }{
		{form, "", "topic=a&data=hello&event=e"},
		{form, "topic=q", "data=x"},
		{form, "", "topic=a&topic=b"},
		{form, "", "topic=a%zz"},
		{form, "", "topic=a;data=b"},
		{form, "", "topic=a/%2B&data=%ff"},
		{multi, "", "--B\r\nContent-Disposition: form-data; name=\"topic\"\r\n\r\na/b\r\n--B\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\nhi\r\n--B--\r\n"},
		{multi, "", "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\nfile\r\n--B--\r\n"},
		{"multipart/form-data", "", "--B--"},
		{js, "", `{"topic":"a","data":{"n":[1,2.5e3,"x"]},"event":"e"}`},
		{js, "topic=q", `[{"data":"1"},{"data":2},{"topic":"b","data":null}]`},
		{js, "", `[{"topic":"a"},{"topic":"a"},{"topic":"a"},{"topic":"a"}]`},
		{js, "", `[]`},
		{js, "", `{"topic":"a"} {"topic":"b"}`},
		{js, "", `{"topic":"a","extra":1}`},
		{js, "", `{"topic":"a","data":"\ud800"}`},
		{js, "", `{"topic":"a","event":"gap"}`},
		{"application/json; charset=utf-8", "", `{"topic":"$x","data":"x"}`},
		{"text/plain", "", "hello"},
		{"application/octet-stream", "topic=b&event=e", "\x00\xff"},
		{"application/octet-stream", "", ""},
		{js, "", `{"topic":"a","data_base64":"AP8="}`},
		{js, "", `[{"topic":"a","data_base64":"!"},{"topic":"a","data":"x","data_base64":""}]`},
		{"", "", ""},
	} {
		f.Add(seed.ctype, seed.query, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, ctype, query string, body []byte) {
		ep := fuzzEndpoint(t)
		r := httptest.NewRequest(http.MethodPost, "/events", bytes.NewReader(body))
		r.URL.RawQuery = query
		r.RemoteAddr, r.Host = "127.0.0.1:40000", "localhost"
		r.Header.Set("Content-Type", ctype)
		w := httptest.NewRecorder()
		ep.Publish(w, r, Request{})

		answer := w.Body.String()
		switch w.Code {
		case http.StatusOK:
			var out struct {
				ID  string   `json:"id"`
				IDs []string `json:"ids"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("answer %q: %v", answer, err)
			}
			if out.ID != "" {
				out.IDs = append(out.IDs, out.ID)
			}
			checkPublished(t, ep.Hub, out.IDs, ep.Limits.batch())
		case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if reason, ok := strings.CutSuffix(answer, "\n"); !ok || reason == "" || strings.ContainsAny(reason, "\r\n") {
				t.Fatalf("%d reason is not one line: %q", w.Code, answer)
			}
			if msgs := published(t, ep.Hub); len(msgs) != 0 {
				t.Fatalf("refused with %d, but published %d messages", w.Code, len(msgs))
			}
		default:
			t.Fatalf("status %d: %q", w.Code, answer)
		}
	})
}

// Whatever a WebSocket client sends in a text frame, the connection's
// reader turns it into a valid subscription change for the writer, or into
// the frame that answers it: an ack with the IDs of what it published, or
// an error with a reason; both echo a valid ref.
func FuzzWebSocketCommand(f *testing.F) {
	for _, seed := range []string{
		`{"type":"subscribe","topics":["a/#","+/b"],"last_id":"earliest","ref":1}`,
		`{"type":"subscribe","topics":["a","b","c","d","e"]}`,
		`{"type":"subscribe","topics":["a"],"topic":"a"}`,
		`{"type":"unsubscribe","topics":["a"],"ref":"x"}`,
		`{"type":"unsubscribe","topics":["a"],"last_id":"1"}`,
		`{"type":"publish","topic":"a","data":{"n":[1,2]},"event":"e","ref":"p"}`,
		`{"type":"publish","messages":[{"topic":"a","data":"x"},{"topic":"b"}],"ref":2}`,
		`{"type":"publish","messages":[{"topic":"a"},{"topic":"a"},{"topic":"a"},{"topic":"a"}]}`,
		`{"type":"publish","messages":[]}`,
		`{"type":"publish","topic":"a","messages":[{"topic":"b"}]}`,
		`{"type":"publish","topics":["a"]}`,
		`{"type":"publish","topic":"a/+"}`,
		`{"type":"publish","data":"no topic"}`,
		`{"type":"ping","ref":[1]}`,
		`{"ref":"` + strings.Repeat("r", 70) + `"}`,
		`{"type":"subscribe","topics":["a"]}{}`,
		`[]`, `null`, `"str"`, "\xff", ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkCommand(t, false, data) })
}

// Whatever a WebSocket client sends in a binary frame (a header and data),
// the reader answers as it does a text frame: never more than one
// published message, only a valid one.
func FuzzWebSocketBinaryCommand(f *testing.F) {
	for _, seed := range [][]byte{
		appendBinaryFrame(nil, []byte(`{"type":"publish","topic":"a","event":"e","ref":1}`), "\x00\xff"),
		appendBinaryFrame(nil, []byte(`{"type":"publish","topic":"a","data":"x"}`), "y"),
		appendBinaryFrame(nil, []byte(`{"type":"subscribe","topics":["a"]}`), ""),
		appendBinaryFrame(nil, []byte(`{"type":"publish"}`), "no topic"),
		{0}, {0xff, 0xff, '{', '}'}, {0, 2, '{', '}'},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkCommand(t, true, data) })
}

// checkCommand checks what the reader makes of one client frame.
func checkCommand(t *testing.T, binaryFrame bool, data []byte) {
	ep := fuzzEndpoint(t)
	r := httptest.NewRequest(http.MethodGet, "/events", nil)
	r.RemoteAddr, r.Host = "127.0.0.1:40000", "localhost"
	loopback, _ := fromLoopback(r)
	c := &wsConn{ep: ep, r: r, id: identity{ep: ep, loopback: loopback}, ctx: context.Background()}
	cmd := c.command(binaryFrame, data)

	if !validRef(cmd.ref) {
		t.Fatalf("command echoes invalid ref %s", cmd.ref)
	}
	switch cmd.kind {
	case "subscribe", "unsubscribe":
		if len(cmd.topics) == 0 || len(cmd.topics) > ep.Limits.topics() {
			t.Fatalf("%s with %d topics", cmd.kind, len(cmd.topics))
		}
		for _, topic := range cmd.topics {
			if err := hub.ValidateFilter(topic); err != nil {
				t.Fatalf("%s with filter %q: %v", cmd.kind, topic, err)
			}
		}
		if len(cmd.lastID) > maxIDLength || cmd.kind == "unsubscribe" && cmd.lastID != "" {
			t.Fatalf("%s with last_id %q", cmd.kind, cmd.lastID)
		}
		return
	case "":
	default:
		t.Fatalf("command kind %q", cmd.kind)
	}

	var reply struct {
		Type   string          `json:"type"`
		Ref    json.RawMessage `json:"ref"`
		ID     string          `json:"id"`
		IDs    []string        `json:"ids"`
		Reason string          `json:"reason"`
	}
	if err := json.Unmarshal(cmd.frame, &reply); err != nil {
		t.Fatalf("answer %q: %v", cmd.frame, err)
	}
	if !validRef(reply.Ref) {
		t.Fatalf("answer echoes invalid ref %s", reply.Ref)
	}
	switch reply.Type {
	case "ack":
		if reply.ID != "" {
			reply.IDs = append(reply.IDs, reply.ID)
		}
		checkPublished(t, ep.Hub, reply.IDs, ep.Limits.batch())
	case "error":
		if reply.Reason == "" || strings.ContainsAny(reply.Reason, "\r\n") {
			t.Fatalf("error reason is not one line: %s", cmd.frame)
		}
		if msgs := published(t, ep.Hub); len(msgs) != 0 {
			t.Fatalf("answered an error, but published %d messages", len(msgs))
		}
	default:
		t.Fatalf("answer of type %q: %s", reply.Type, cmd.frame)
	}
}
