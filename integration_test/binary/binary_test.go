package binary_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// paths runs f on the parked path (TCP) and the goroutine path (the Unix
// socket), against one server.
func paths(t *testing.T, options string, f func(t *testing.T, s *testserver.Server, sock string)) {
	sock := filepath.Join(t.TempDir(), "caddy.sock")
	s := testserver.Start(t, site(sock, options))
	t.Run("parked", func(t *testing.T) { f(t, s, "") })
	t.Run("goroutine", func(t *testing.T) { f(t, s, sock) })
}

// Binary data published as application/octet-stream, as JSON data_base64
// and in a WebSocket binary frame reaches a WebSocket subscriber as binary
// frames whose header names its ID, topic and event; SSE (JSON) and
// long-poll subscribers get it in base64 with "encoding":"base64", and
// plain SSE with an encoding field no event name can be.
func TestBinaryReachesEveryTransport(t *testing.T) {
	paths(t, "", func(t *testing.T, s *testserver.Server, sock string) {
		topic := "bin" + filepath.Base(t.Name())
		sub := dial(t, s, sock, "?topic="+topic, false)
		sse := testserver.Subscribe(t, nil, s.Base+"/events?format=json&topic="+topic, nil)

		var ids []string
		ids = append(ids, publishBinary(t, s.Base, "?topic="+topic+"&event=e", blob))
		body, _ := json.Marshal(map[string]string{"topic": topic, "data_base64": base64.StdEncoding.EncodeToString([]byte(blob))})
		ids = append(ids, publish(t, s.Base+"/events", "application/json", string(body)))
		pub := dial(t, s, sock, "", false)
		if err := pub.WriteMessage(websocket.BinaryMessage, binaryFrame(`{"type":"publish","topic":"`+topic+`","event":"ws","ref":7}`, blob)); err != nil {
			t.Fatal(err)
		}
		ack := pub.nextText(t, "ack")
		if string(ack.Ref) != "7" || ack.ID == "" {
			t.Fatalf("binary publish frame answered %s", ack.Raw)
		}
		ids = append(ids, ack.ID)

		events := []string{"e", "", "ws"}
		for i, id := range ids {
			m := sub.nextBinary(t)
			if m.Type != "message" || m.ID != id || m.Topic != topic || m.Event != events[i] || m.Encoding != "binary" || m.Data != blob {
				t.Fatalf("WebSocket message %d: %+v, want id %s event %q and the blob", i, m, id, events[i])
			}
			var env testserver.Envelope
			if e := sse.Next(); json.Unmarshal([]byte(e.Data), &env) != nil || env.ID != id || env.Encoding != "base64" || env.Data != base64.StdEncoding.EncodeToString([]byte(blob)) {
				t.Fatalf("SSE (JSON) message %d: %q, want id %s in base64 with its encoding", i, e.Data, id)
			}
		}

		poll := testserver.Poll(t, s.Base+"/events", "earliest", topic)
		if len(poll.Messages) != len(ids) {
			t.Fatalf("long-poll: %d messages, want %d", len(poll.Messages), len(ids))
		}
		for i, m := range poll.Messages {
			data, err := base64.StdEncoding.DecodeString(m.Data)
			if m.ID != ids[i] || m.Encoding != "base64" || err != nil || string(data) != blob {
				t.Fatalf("long-poll message %d: %+v", i, m)
			}
		}

		event := plainSSE(t, s.Base+"/events?last_id=earliest&topic="+topic)
		want := "id: " + ids[0] + "\nevent: e\nencoding: base64\ndata: " + base64.StdEncoding.EncodeToString([]byte(blob)) + "\n"
		if event != want {
			t.Fatalf("plain SSE event %q, want %q", event, want)
		}
	})
}

// plainSSE reads the first event of a plain SSE stream.
func plainSSE(t *testing.T, u string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{Timeout: testserver.Wait}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	var event strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("plain SSE: %q, %v", event.String(), err)
		}
		switch {
		case strings.HasPrefix(line, ":") || strings.HasPrefix(line, "retry:"):
		case line == "\n" && event.Len() > 0:
			return event.String()
		case line != "\n":
			event.WriteString(line)
		}
	}
}

// A binary frame that is not a publish of binary data is answered with an
// error frame naming what is wrong, publishes nothing, and the connection
// goes on: a valid one after it is published.
func TestMalformedBinaryFrame(t *testing.T) {
	paths(t, "", func(t *testing.T, s *testserver.Server, sock string) {
		topic := "bad" + filepath.Base(t.Name())
		c := dial(t, s, sock, "", false)
		for _, tc := range []struct {
			frame []byte
			want  string
		}{
			{[]byte{0}, "shorter than its 2-byte header length"},
			{[]byte{0, 9, '{', '}'}, "header of 9 bytes in a frame of 4"},
			{binaryFrame(`not json`, "x"), "binary frame header: invalid frame"},
			{binaryFrame(`{"type":"subscribe","topics":["a"]}`, ""), `type must be "publish"`},
			{binaryFrame(`{"type":"publish","topic":"`+topic+`","data":"x","ref":"r"}`, "y"), "the data follows it"},
			{binaryFrame(`{"type":"publish","ref":2}`, "no topic"), "no topic"},
		} {
			if err := c.WriteMessage(websocket.BinaryMessage, tc.frame); err != nil {
				t.Fatal(err)
			}
			if f := c.nextText(t, "error"); !strings.Contains(f.Reason, tc.want) {
				t.Fatalf("binary frame %q answered %s, want a reason with %q", tc.frame, f.Raw, tc.want)
			}
		}
		if err := c.WriteMessage(websocket.BinaryMessage, binaryFrame(`{"type":"publish","topic":"`+topic+`"}`, blob)); err != nil {
			t.Fatal(err)
		}
		id := c.nextText(t, "ack").ID
		if poll := testserver.Poll(t, s.Base+"/events", "earliest", topic); len(poll.Messages) != 1 || poll.Messages[0].ID != id {
			t.Fatalf("history after malformed frames and a valid one: %+v, want only %s", poll.Messages, id)
		}
	})
}

// Binary messages a subscriber missed come back as binary on resume, from
// every broker, between text ones, in order.
func TestBinaryResumeFromEachBroker(t *testing.T) {
	brokers := map[string]func(t *testing.T) string{
		"memory": func(*testing.T) string { return "" },
		"bolt":   func(t *testing.T) string { return "broker bolt " + filepath.Join(t.TempDir(), "history.db") },
		"redis":  func(t *testing.T) string { return "broker redis " + testserver.StartRedis(t).URL },
	}
	for _, name := range []string{"memory", "bolt", "redis"} {
		t.Run(name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "caddy.sock")
			s := testserver.Start(t, site(sock, brokers[name](t)))
			first := publishText(t, s.Base, "r", "text")
			second := publishBinary(t, s.Base, "?topic=r", blob)
			third := publishText(t, s.Base, "r", "text again")

			c := dial(t, s, "", "?topic=r&last_id="+first, false)
			if m := c.nextBinary(t); m.ID != second || m.Data != blob {
				t.Fatalf("resume: %+v, want %s with the blob", m, second)
			}
			if f := c.nextText(t, "message"); f.ID != third || f.Data != "text again" {
				t.Fatalf("resume: %s, want %s", f.Raw, third)
			}
			poll := testserver.Poll(t, s.Base+"/events", first, "r")
			if len(poll.Messages) != 2 || poll.Messages[0].Encoding != "base64" || poll.Messages[1].Encoding != "" {
				t.Fatalf("long-poll resume: %+v", poll.Messages)
			}
		})
	}
}

// permessage-deflate is negotiated without context takeover when the
// client asks, and not otherwise; a compressible message then costs a
// fraction of its size on the wire, arrives whole, and a client's
// compressed frames, text and binary, are read.
func TestCompression(t *testing.T) {
	paths(t, "", func(t *testing.T, s *testserver.Server, sock string) {
		topic := "z" + filepath.Base(t.Name())
		deflate := dial(t, s, sock, "?topic="+topic, true)
		plain := dial(t, s, sock, "?topic="+topic, false)
		if got := deflate.negotiated(); !strings.Contains(got, "permessage-deflate") || !strings.Contains(got, "server_no_context_takeover") || !strings.Contains(got, "client_no_context_takeover") {
			t.Fatalf("negotiated %q, want permessage-deflate without context takeover", got)
		}
		if got := plain.negotiated(); got != "" {
			t.Fatalf("a client that did not ask got %q", got)
		}

		data := strings.Repeat(`{"sensor":"kitchen","reading":21.5},`, 400)
		before, plainBefore := deflate.read.Load(), plain.read.Load()
		id := publishText(t, s.Base, topic, data)
		for _, c := range []*wsClient{deflate, plain} {
			if f := c.nextText(t, "message"); f.ID != id || f.Data != data {
				t.Fatalf("got %.80s, want message %s whole", f.Raw, id)
			}
		}
		compressed, raw := deflate.read.Load()-before, plain.read.Load()-plainBefore
		if raw < int64(len(data)) || compressed > raw/10 {
			t.Fatalf("%d bytes of data: %d on the wire compressed, %d plain", len(data), compressed, raw)
		}

		if err := deflate.WriteJSON(map[string]any{"type": "publish", "topic": topic, "data": data, "ref": 1}); err != nil {
			t.Fatal(err)
		}
		if err := deflate.WriteMessage(websocket.BinaryMessage, binaryFrame(`{"type":"publish","topic":"`+topic+`","ref":2}`, strings.Repeat(blob, 100))); err != nil {
			t.Fatal(err)
		}
		var acks, texts, binaries int
		for acks+texts+binaries < 4 {
			kind, got := deflate.next(t)
			switch {
			case kind == websocket.BinaryMessage && parseBinary(t, got).Data == strings.Repeat(blob, 100):
				binaries++
			case strings.Contains(got, `"type":"ack"`):
				acks++
			case strings.HasPrefix(got, `{"type":"message"`) && strings.Contains(got, `reading`):
				texts++
			default:
				t.Fatalf("unexpected frame %.100q", got)
			}
		}
		if acks != 2 || texts != 1 || binaries != 1 {
			t.Fatalf("%d acks, %d text and %d binary messages; want 2, 1, 1", acks, texts, binaries)
		}
	})
}

// A compressed message that inflates beyond max_message_size (64 KiB
// here) closes the connection with 1009, however small it is compressed,
// and publishes nothing; the server goes on serving others.
func TestDecompressionBombIsRefused(t *testing.T) {
	paths(t, "", func(t *testing.T, s *testserver.Server, sock string) {
		topic := "bomb" + filepath.Base(t.Name())
		c := dial(t, s, sock, "", true)
		bomb := `{"type":"publish","topic":"` + topic + `","data":"` + strings.Repeat("0", 8<<20) + `"}`
		// The server may close before the client has written it all.
		_ = c.WriteMessage(websocket.TextMessage, []byte(bomb))
		if wire := c.read.Load(); wire > 64<<10 {
			t.Fatalf("read %d bytes before the bomb went", wire)
		}
		_ = c.SetReadDeadline(time.Now().Add(testserver.Wait))
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
			t.Fatalf("after an 8 MiB message compressed: %v, want close 1009", err)
		}
		other := dial(t, s, sock, "", true)
		if err := other.WriteJSON(map[string]any{"type": "publish", "topic": topic, "data": "after"}); err != nil {
			t.Fatal(err)
		}
		id := other.nextText(t, "ack").ID
		if poll := testserver.Poll(t, s.Base+"/events", "earliest", topic); len(poll.Messages) != 1 || poll.Messages[0].ID != id {
			t.Fatalf("history after the bomb and a valid message: %+v, want only %s", poll.Messages, id)
		}
	})
}
