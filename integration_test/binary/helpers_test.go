package binary_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// site serves /events with small messages, over TCP and, for the
// goroutine path (a Unix socket is never parked), over sock; a Unix
// socket is not loopback, so publishers send the key (withKey).
func site(sock, options string) string {
	return fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	bind 127.0.0.1 unix/%s
	pubsub /events* {
		max_message_size 64KiB
		publish_key k
		%s
	}
}
`, sock, options)
}

// withKey is the header of a publisher.
var withKey = http.Header{"Authorization": {"Bearer k"}}

// blob is binary data that is not UTF-8.
const blob = "\x00\xff\xfe binary \x80\r\n"

// binaryMessage is a binary WebSocket frame as the server sends it.
type binaryMessage struct {
	Type, ID, Topic, Event, Encoding string
	Data                             string
}

// parseBinary splits a binary frame: header length, JSON header, data.
func parseBinary(t testing.TB, raw string) binaryMessage {
	t.Helper()
	if len(raw) < 2 {
		t.Fatalf("binary frame of %d bytes", len(raw))
	}
	n := int(binary.BigEndian.Uint16([]byte(raw)))
	if n > len(raw)-2 {
		t.Fatalf("binary frame %q: header of %d bytes", raw, n)
	}
	var m binaryMessage
	if err := json.Unmarshal([]byte(raw[2:2+n]), &m); err != nil {
		t.Fatalf("binary frame header %q: %v", raw[2:2+n], err)
	}
	m.Data = raw[2+n:]
	return m
}

// binaryFrame is a client's binary publish frame.
func binaryFrame(header, data string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(header)))
	return append(append(b, header...), data...)
}

// wsClient is a gorilla client, dialled over TCP or the Unix socket,
// asking for compression or not, counting the bytes it reads.
type wsClient struct {
	*websocket.Conn
	resp *http.Response
	read atomic.Int64
}

func dial(t testing.TB, s *testserver.Server, sock, query string, compress bool) *wsClient {
	t.Helper()
	c := &wsClient{}
	d := websocket.Dialer{HandshakeTimeout: testserver.Wait, EnableCompression: compress}
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if sock != "" {
			network, addr = "unix", sock
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{conn, &c.read}, nil
	}
	u := strings.Replace(s.Base, "http://", "ws://", 1) + "/events" + query
	conn, resp, err := d.Dial(u, withKey)
	if err != nil {
		t.Fatalf("WebSocket %s: %v", u, err)
	}
	c.Conn, c.resp = conn, resp
	t.Cleanup(func() { conn.Close() })
	return c
}

// next reads the next frame within testserver.Wait.
func (c *wsClient) next(t testing.TB) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testserver.Wait))
	kind, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return kind, string(data)
}

// nextText reads the next frame, which must be a text frame of type typ.
func (c *wsClient) nextText(t testing.TB, typ string) testserver.WSFrame {
	t.Helper()
	kind, data := c.next(t)
	var f testserver.WSFrame
	if kind != websocket.TextMessage || json.Unmarshal([]byte(data), &f) != nil || f.Type != typ {
		t.Fatalf("got frame (kind %d) %q, want a text frame of type %q", kind, data, typ)
	}
	return f
}

// nextBinary reads the next frame, which must be a binary message.
func (c *wsClient) nextBinary(t testing.TB) binaryMessage {
	t.Helper()
	kind, data := c.next(t)
	if kind != websocket.BinaryMessage {
		t.Fatalf("got frame (kind %d) %q, want a binary message", kind, data)
	}
	return parseBinary(t, data)
}

// negotiated is the extension the server answered with.
func (c *wsClient) negotiated() string { return c.resp.Header.Get("Sec-WebSocket-Extensions") }

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// publishBinary publishes data as application/octet-stream.
func publishBinary(t testing.TB, base, query, data string) string {
	t.Helper()
	return publish(t, base+"/events"+query, "application/octet-stream", data)
}

// publishText publishes data to topic as a form.
func publishText(t testing.TB, base, topic, data string) string {
	t.Helper()
	return publish(t, base+"/events", "application/x-www-form-urlencoded", url.Values{"topic": {topic}, "data": {data}}.Encode())
}

func publish(t testing.TB, u, ctype, body string) string {
	t.Helper()
	status, answer, _ := testserver.Request(t, http.MethodPost, u, ctype, body, withKey)
	var out struct{ ID string }
	if status != http.StatusOK || json.Unmarshal([]byte(answer), &out) != nil || out.ID == "" {
		t.Fatalf("publish (%s): %d %q", ctype, status, answer)
	}
	return out.ID
}
