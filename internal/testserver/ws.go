package testserver

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// WSFrame is one frame the server sent on a WebSocket: a message, gap, ack
// or error (see the README's WebSocket section); fields a type does not
// use stay empty.
type WSFrame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	IDs     []string        `json:"ids"`
	Topic   string          `json:"topic"`
	Event   string          `json:"event"`
	Data    string          `json:"data"`
	Time    time.Time       `json:"time"`
	LastID  string          `json:"last_id"`
	FirstID string          `json:"first_id"`
	Reason  string          `json:"reason"`
	Ref     json.RawMessage `json:"ref"`
	Raw     string          `json:"-"` // the frame as sent
}

// WSOptions adjust DialWS. The zero value dials a client that reads at
// once and answers pings.
type WSOptions struct {
	Header http.Header // request headers (Origin, Authorization)
	// Paused leaves the socket unread until StartReading: the client
	// neither drains messages nor answers pings.
	Paused bool
}

// WSConn is a WebSocket client on loopback.
type WSConn struct {
	t    testing.TB
	Conn *websocket.Conn
	Resp *http.Response // the handshake response

	frames     chan WSFrame
	done       chan struct{} // closed when reading has ended
	readErr    error         // why reading ended; read after done
	started    atomic.Bool
	pings      atomic.Int64
	ignorePing atomic.Bool
}

// DialWS opens a WebSocket to endpoint (http:// or ws:// URL) and closes it
// when the test ends. The handshake must succeed; see DialWSStatus for one
// that may be refused.
func DialWS(t testing.TB, endpoint string, opts *WSOptions) *WSConn {
	t.Helper()
	c, resp, err := dialWS(endpoint, opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket %s: %v (HTTP %d)", endpoint, err, status)
	}
	w := &WSConn{t: t, Conn: c, Resp: resp, frames: make(chan WSFrame, 4096), done: make(chan struct{})}
	c.SetPingHandler(func(data string) error {
		w.pings.Add(1)
		if w.ignorePing.Load() {
			return nil
		}
		err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) {
			return nil
		}
		return err
	})
	t.Cleanup(w.Close)
	if opts == nil || !opts.Paused {
		w.StartReading()
	}
	return w
}

// DialWSStatus tries a WebSocket handshake that the server may refuse and
// returns the HTTP status and body of the answer (101 and "" on success,
// after which the connection is closed).
func DialWSStatus(t testing.TB, endpoint string, header http.Header) (int, string) {
	t.Helper()
	c, resp, err := dialWS(endpoint, &WSOptions{Header: header})
	if err == nil {
		c.Close()
		return resp.StatusCode, ""
	}
	if resp == nil {
		t.Fatalf("WebSocket %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func dialWS(endpoint string, opts *WSOptions) (*websocket.Conn, *http.Response, error) {
	if opts == nil {
		opts = &WSOptions{}
	}
	d := websocket.Dialer{HandshakeTimeout: Wait}
	u := strings.Replace(endpoint, "http://", "ws://", 1)
	return d.Dial(u, opts.Header)
}

// StartReading starts reading a paused connection (and answering pings,
// unless IgnorePings was called).
func (w *WSConn) StartReading() {
	if w.started.Swap(true) {
		return
	}
	go w.read()
}

// IgnorePings makes the client read but never answer pings: to the server
// it looks like a dead peer.
func (w *WSConn) IgnorePings() { w.ignorePing.Store(true) }

// Pings returns how many pings the client has received.
func (w *WSConn) Pings() int64 { return w.pings.Load() }

func (w *WSConn) read() {
	defer close(w.done)
	defer close(w.frames)
	for {
		kind, data, err := w.Conn.ReadMessage()
		if err != nil {
			w.readErr = err
			return
		}
		f := WSFrame{Type: "binary", Raw: string(data)}
		if kind == websocket.TextMessage {
			if err := json.Unmarshal(data, &f); err != nil {
				f = WSFrame{Type: "unparsable", Raw: string(data)}
			}
			f.Raw = string(data)
		}
		w.frames <- f
	}
}

// Send writes v as a JSON text frame.
func (w *WSConn) Send(v any) {
	w.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	w.SendRaw(websocket.TextMessage, b)
}

// SendRaw writes one frame of the given kind (websocket.TextMessage,
// websocket.BinaryMessage).
func (w *WSConn) SendRaw(kind int, data []byte) {
	w.t.Helper()
	_ = w.Conn.SetWriteDeadline(time.Now().Add(Wait))
	if err := w.Conn.WriteMessage(kind, data); err != nil {
		w.t.Fatalf("WebSocket send: %v", err)
	}
}

// Next returns the next frame the server sent, failing the test if none
// comes within Wait or the connection ends.
func (w *WSConn) Next() WSFrame {
	w.t.Helper()
	select {
	case f, ok := <-w.frames:
		if !ok {
			w.t.Fatalf("WebSocket ended: %v", w.readErr)
		}
		return f
	case <-time.After(Wait):
		w.t.Fatal("no WebSocket frame within", Wait)
	}
	return WSFrame{}
}

// NextOf returns the next frame, which must be of type kind.
func (w *WSConn) NextOf(kind string) WSFrame {
	w.t.Helper()
	f := w.Next()
	if f.Type != kind {
		w.t.Fatalf("got WebSocket frame %s, want type %q", f.Raw, kind)
	}
	return f
}

// Request sends frame, which should carry "ref", and returns the answer
// with that ref (an ack or error), with the frames that came before it.
func (w *WSConn) Request(frame map[string]any) (answer WSFrame, before []WSFrame) {
	w.t.Helper()
	ref, _ := json.Marshal(frame["ref"])
	w.Send(frame)
	for {
		f := w.Next()
		if (f.Type == "ack" || f.Type == "error") && string(f.Ref) == string(ref) {
			return f, before
		}
		before = append(before, f)
	}
}

// ExpectClose waits for the server to close the connection and returns
// the frames it sent first and the close error (a *websocket.CloseError
// when the server sent a close frame).
func (w *WSConn) ExpectClose() ([]WSFrame, error) {
	w.t.Helper()
	var frames []WSFrame
	deadline := time.After(Wait)
	for {
		select {
		case f, ok := <-w.frames:
			if !ok {
				return frames, w.readErr
			}
			frames = append(frames, f)
		case <-deadline:
			w.t.Fatal("WebSocket still open after", Wait)
		}
	}
}

// Close closes the connection from the client side, with a close frame,
// and waits for reading to end.
func (w *WSConn) Close() {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = w.Conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	_ = w.Conn.Close()
	if w.started.Load() {
		<-w.done
	}
}
