package parked_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// wsSite is site pinging seldom, so WebSockets the test does not read for
// a while are not dropped for their silence, and taking small messages.
var wsSite = strings.Replace(site, "heartbeat 1s", "heartbeat 30s\n\t\tmax_message_size 1KiB", 1)

// A thousand idle WebSocket subscribers cost the server no goroutine each,
// as SSE ones do: they all get a message published to them, a frame on
// one is answered, and once they hang up the server counts none and its
// goroutines are back where they were. So over TLS too.
func TestIdleWebSocketsHoldNoGoroutine(t *testing.T) {
	t.Run("plain", func(t *testing.T) { idleWebSockets(t, testserver.Start(t, wsSite)) })
	t.Run("TLS", func(t *testing.T) { idleWebSockets(t, startTLS(t, withTLS(wsSite))) })
}

func idleWebSockets(t *testing.T, s *testserver.Server) {
	warm := dialWS(t, s.Base, "?topic=idle")
	testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"idle"}, "data": {"warm"}})
	if got, err := readWS(warm); !strings.Contains(got, "warm") {
		t.Fatalf("warm-up: %q, %v", got, err)
	}
	warm.Close()
	waitSubscribersOf(t, s.Base, "ws", 0)
	before := runtime.NumGoroutine()

	// One without topics waits for the hub's end through a goroutine
	// shared by all such, which stops with the last of them.
	bare := dialWS(t, s.Base, "")
	const n = 1000
	subs := make([]*websocket.Conn, n)
	for i := range subs {
		subs[i] = dialWS(t, s.Base, "?topic=idle")
	}
	waitSubscribersOf(t, s.Base, "ws", n)
	const limit = 50
	if grew := waitGoroutines(before + limit); grew-before > limit {
		t.Fatalf("%d idle WebSockets: %d more goroutines, want at most %d", n, grew-before, limit)
	}

	id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"idle"}, "data": {"hello"}})
	for i, sub := range subs {
		if got, err := readWS(sub); !strings.Contains(got, `"id":"`+id+`"`) {
			t.Fatalf("subscriber %d got %q, %v; want message %s", i, got, err, id)
		}
	}
	if err := subs[0].WriteJSON(map[string]any{"type": "publish", "ref": 1, "topic": "idle", "data": "from a parked socket"}); err != nil {
		t.Fatal(err)
	}
	// The message and the ack, in either order.
	var answers string
	for range 2 {
		got, err := readWS(subs[0])
		if err != nil {
			t.Fatalf("after a publish frame: %q, %v", answers, err)
		}
		answers += got
	}
	if !strings.Contains(answers, `"type":"message"`) || !strings.Contains(answers, `"type":"ack"`) {
		t.Fatalf("after a publish frame: %q, want the message and the ack", answers)
	}

	bare.Close()
	for _, sub := range subs {
		sub.Close()
	}
	waitSubscribersOf(t, s.Base, "ws", 0)
	if left := waitGoroutines(before); left > before {
		t.Fatalf("after the subscribers left: %d goroutines, %d more than before", left, left-before)
	}
}

// The parked reader takes frames as gorilla does: a publish sent at once
// after the handshake, in fragments with a ping between them, is answered
// (the pong first) and delivered; a message over max_message_size in
// fragments gets 1009, an unmasked frame 1002, and a client's close is
// echoed with its code. Over TLS too, where crypto/tls reads them.
func TestParkedWebSocketReadsFrames(t *testing.T) {
	t.Run("plain", func(t *testing.T) { readsFrames(t, testserver.Start(t, wsSite)) })
	t.Run("TLS", func(t *testing.T) { readsFrames(t, startTLS(t, withTLS(wsSite))) })
}

func readsFrames(t *testing.T, s *testserver.Server) {
	c := dialRawWS(t, s.Base, "/events?topic=raw")
	publish := `{"type":"publish","ref":7,"topic":"raw","data":"in pieces"}`
	var burst []byte
	burst = append(burst, rawFrame(false, websocket.TextMessage, publish[:20])...)
	burst = append(burst, rawFrame(true, websocket.PingMessage, "are you there")...)
	burst = append(burst, rawFrame(true, 0, publish[20:])...)
	if _, err := c.conn.Write(burst); err != nil {
		t.Fatal(err)
	}
	op, p, err := c.next()
	if err != nil || op != websocket.PongMessage || p != "are you there" {
		t.Fatalf("first frame: op %d %q, %v; want the pong", op, p, err)
	}
	var got []string
	for len(got) < 2 {
		op, p, err := c.next()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		if op == websocket.TextMessage {
			var f struct{ Type, Data string }
			_ = json.Unmarshal([]byte(p), &f)
			got = append(got, f.Type+":"+f.Data)
		}
	}
	if !strings.Contains(strings.Join(got, " "), "message:in pieces") || !strings.Contains(strings.Join(got, " "), "ack:") {
		t.Fatalf("got %q, want the message and the ack", got)
	}

	big := dialRawWS(t, s.Base, "/events?topic=raw")
	big.conn.Write(append(rawFrame(false, websocket.TextMessage, strings.Repeat("x", 600)), rawFrame(true, 0, strings.Repeat("x", 600))...))
	if code, _ := big.closeFrame(t); code != websocket.CloseMessageTooBig {
		t.Fatalf("message of 1200 bytes over 1 KiB: close %d, want 1009", code)
	}

	bare := dialRawWS(t, s.Base, "/events?topic=raw")
	frame := rawFrame(true, websocket.TextMessage, "{}")
	frame[1] &^= 0x80
	bare.conn.Write(append(frame[:2], "{}"...))
	if code, reason := bare.closeFrame(t); code != websocket.CloseProtocolError || reason != "bad MASK" {
		t.Fatalf("unmasked frame: close %d %q, want 1002 bad MASK", code, reason)
	}

	c.conn.Close()
	bye := dialRawWS(t, s.Base, "/events?topic=raw")
	bye.conn.Write(rawFrame(true, websocket.CloseMessage, "\x0f\xa0leaving"))
	if code, _ := bye.closeFrame(t); code != 4000 {
		t.Fatalf("client closed with 4000: echoed %d", code)
	}
	waitSubscribersOf(t, s.Base, "ws", 0)
}

// A reload that keeps the hub leaves parked WebSockets delivering; a stop
// closes them with 1001 and the reason at once, also one that holds no
// subscription and so has nothing queued to wake it before its next ping.
func TestStopClosesParkedWebSockets(t *testing.T) {
	s := testserver.Start(t, wsSite)
	sub := dialWS(t, s.Base, "?topic=kept")
	idle := dialWS(t, s.Base, "")
	waitSubscribersOf(t, s.Base, "ws", 1)

	s.Load(strings.Replace(wsSite, "heartbeat 30s", "heartbeat 20s", 1))
	id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"kept"}, "data": {"after reload"}})
	if got, err := readWS(sub); !strings.Contains(got, id) {
		t.Fatalf("after a reload: %q, %v; want message %s", got, err, id)
	}

	start := time.Now()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*websocket.Conn{"subscribed": sub, "without topics": idle} {
		_, err := readWS(c)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != "server shutting down" {
			t.Fatalf("%s, on stop: %v, want close 1001 server shutting down", name, err)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("stop and its close frames took %s", took)
	}
}
