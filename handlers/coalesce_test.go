package handlers

import (
	"bytes"
	"context"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// queuedBurst subscribes to "t" and publishes n messages that wait in the
// subscription's queue.
func queuedBurst(t *testing.T, n int) *hub.Subscriber {
	t.Helper()
	h := hub.New(hub.NewMemoryBroker(hub.Retention{Count: 100}), hub.Options{Queue: 100})
	t.Cleanup(func() { _ = h.Close() })
	sub, _, _, err := h.Subscribe(context.Background(), []string{"t"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := h.Publish(context.Background(), hub.Message{Topic: "t", Data: "m" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if q := sub.Queued(); q != n {
		t.Fatalf("%d messages queued, want %d", q, n)
	}
	return sub
}

// A parked SSE stream sends what is queued for it in one write: one Send,
// one HTTP chunk, every message, in order.
func TestParkedSSECoalescesQueuedMessages(t *testing.T) {
	const n = 20
	sub := queuedBurst(t, n)
	p := &parkedSSE{
		ep:        &Endpoint{Logger: zap.NewNop()},
		sub:       sub,
		frame:     func(m *hub.Message) []byte { return m.Frame(frameSSE, encodeSSE) },
		heartbeat: time.Hour,
	}
	out, _, end := p.Send(nil, time.Now())
	if end {
		t.Fatal("Send ended the stream")
	}
	size, body, ok := bytes.Cut(out, []byte("\r\n"))
	if !ok || !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Fatalf("Send wrote %q, want one chunk", out)
	}
	body = body[:len(body)-2]
	if want := strconv.FormatInt(int64(len(body)), 16); string(size) != want {
		t.Fatalf("chunk size %s, want %s: more than one chunk in %q", size, want, out)
	}
	checkBurst(t, body, n, "data: m")
	if q := sub.Queued(); q != 0 {
		t.Fatalf("%d messages left queued after one Send", q)
	}
}

// A parked WebSocket's worker takes every queued message into one buffer
// (drainWS), which its Send writes at once with the acks and control
// frames queued beside them.
func TestParkedWebSocketCoalescesQueuedMessages(t *testing.T) {
	const n = 20
	sub := queuedBurst(t, n)
	out, taken := drainWS(nil, sub, false, math.MaxInt)
	if taken != n {
		t.Fatalf("drainWS took %d messages, want %d", taken, n)
	}
	frames := 0
	for rest := out; len(rest) > 0; frames++ {
		if rest[0] != 0x81 || rest[1] >= 126 {
			t.Fatalf("frame %d: header % x, want a short final text frame", frames, rest[:2])
		}
		rest = rest[2+int(rest[1]):]
	}
	if frames != n {
		t.Fatalf("%d frames in one buffer, want %d", frames, n)
	}
	checkBurst(t, out, n, `"data":"m`)
}

// checkBurst checks that out holds the burst's messages 0 to n-1, in
// order, each marked by prefix and its number.
func checkBurst(t *testing.T, out []byte, n int, prefix string) {
	t.Helper()
	at := 0
	for i := range n {
		j := bytes.Index(out[at:], []byte(prefix+strconv.Itoa(i)))
		if j < 0 {
			t.Fatalf("message %d missing or out of order in %q", i, out)
		}
		at += j + 1
	}
}

// writeLog is a server connection that records the size of each write.
type writeLog struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (w *writeLog) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, len(b))
	w.mu.Unlock()
	return w.Conn.Write(b)
}

func (w *writeLog) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.writes)
}

// logListener hands out its connections as writeLogs; such a connection is
// not a *net.TCPConn, so it cannot be parked: it stays on the goroutine
// path.
type logListener struct {
	net.Listener
	conns chan *writeLog
}

func (l logListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &writeLog{Conn: c}
	l.conns <- w
	return w, nil
}

// serveGoroutineWS serves one WebSocket on the goroutine path over
// loopback, its connection's writes logged: run gets the accepted
// connection and its log, and returns when the connection is to end.
func serveGoroutineWS(tb testing.TB, ep *Endpoint, sub *hub.Subscriber, run func(c *wsConn, log *writeLog)) *websocket.Conn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	logs := logListener{Listener: ln, conns: make(chan *writeLog, 1)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &wsConn{ep: ep, r: r, ctx: r.Context(), sub: sub}
		if !c.accept(w, r) {
			return
		}
		run(c, <-logs.conns)
		_ = c.conn.Close()
	}))
	srv.Listener = logs
	srv.Start()
	tb.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/", nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ws.Close() })
	return ws
}

// readBurst reads n messages from ws within wait and checks them as
// checkBurst does.
func readBurst(t *testing.T, ws *websocket.Conn, n int, wait time.Duration) {
	t.Helper()
	var got []byte
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	for range n {
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m...)
	}
	checkBurst(t, got, n, `"data":"m`)
}

// On the goroutine path (gorilla's connection, not parked), the messages
// queued when the writer wakes go out in one write to the socket.
func TestGoroutineWebSocketCoalescesQueuedMessages(t *testing.T) {
	const n = 20
	sub := queuedBurst(t, n)
	ep := &Endpoint{Logger: zap.NewNop(), Heartbeat: time.Hour, Hub: hub.New(hub.NewMemoryBroker(hub.Retention{}), hub.Options{})}
	t.Cleanup(func() { _ = ep.Hub.Close() })
	// The server's connection, and how many writes the handshake took.
	type upgrade struct {
		log       *writeLog
		handshake int
	}
	upgraded := make(chan upgrade, 1)
	ws := serveGoroutineWS(t, ep, sub, func(c *wsConn, log *writeLog) {
		upgraded <- upgrade{log, log.count()}
		c.serveOnGoroutine(nil, nil, func() {})
	})
	up := <-upgraded
	readBurst(t, ws, n, 10*time.Second)
	// Every message has arrived, so every write that carried one is in the
	// log; nothing else is written (no ping within the hour).
	if writes := up.log.count() - up.handshake; writes != 1 {
		t.Fatalf("%d messages took %d writes, want 1", n, writes)
	}
}

// The reader's pongs go between the writer's batches, never inside one:
// a client that pings throughout a stream of bursts gets every message,
// in order and whole, and a pong for every ping.
func TestGoroutineWebSocketPongsBetweenBatches(t *testing.T) {
	const n, pings = 400, 50
	h := hub.New(hub.NewMemoryBroker(hub.Retention{}), hub.Options{Queue: n})
	t.Cleanup(func() { _ = h.Close() })
	sub, _, _, err := h.Subscribe(context.Background(), []string{"t"}, "")
	if err != nil {
		t.Fatal(err)
	}
	ep := &Endpoint{Logger: zap.NewNop(), Heartbeat: time.Hour, Hub: h}
	ws := serveGoroutineWS(t, ep, sub, func(c *wsConn, _ *writeLog) {
		c.serveOnGoroutine(nil, nil, func() {})
	})
	pongs := make(chan struct{}, pings)
	ws.SetPongHandler(func(string) error { pongs <- struct{}{}; return nil })
	go func() {
		for i := range n {
			if _, err := h.Publish(context.Background(), hub.Message{Topic: "t", Data: "m" + strconv.Itoa(i)}); err != nil {
				t.Error(err)
				return
			}
			if i%(n/pings) == 0 {
				if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	readBurst(t, ws, n, 20*time.Second)
	// The last pongs may follow the last message: read on, which runs the
	// pong handler, until the connection closes at the test's end.
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	deadline := time.After(10 * time.Second)
	for i := range pings {
		select {
		case <-pongs:
		case <-deadline:
			t.Fatalf("%d pongs for %d pings", i, pings)
		}
	}
}
