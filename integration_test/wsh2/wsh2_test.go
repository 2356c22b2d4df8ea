package wsh2_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// site serves /events over TLS with the certificate of certFile, with
// options added to the pubsub block.
func site(certFile, keyFile string, options ...string) string {
	return fmt.Sprintf(`
https://127.0.0.1:{PORT} {
	tls %s %s
	pubsub /events* {
		max_message_size 16KiB
		publish_key k
		%s
	}
}
`, certFile, keyFile, strings.Join(options, "\n\t\t"))
}

// start runs Caddy over TLS in this process and returns its https:// base
// and a client that trusts it.
func start(t *testing.T, options ...string) (string, *h2Client) {
	t.Helper()
	cert, key, roots := testserver.SelfSigned(t)
	s := testserver.Start(t, site(cert, key, options...))
	return strings.Replace(s.Base, "http://", "https://", 1), newH2Client(t, roots)
}

// A WebSocket opened by extended CONNECT is answered 200 over HTTP/2, with
// none of HTTP/1.1's handshake headers, and gets what is published over
// HTTP on the same connection, in the frames an HTTP/1.1 WebSocket gets.
func TestSubscribeOverHTTP2(t *testing.T) {
	base, c := start(t)
	ws := dialH2(t, c, base, "?topic=news", nil)
	if ws.Resp.ProtoMajor != 2 || ws.Resp.Header.Get("Sec-WebSocket-Accept") != "" || ws.Resp.Header.Get("Sec-WebSocket-Extensions") != "" {
		t.Fatalf("answered %s %s, headers %v", ws.Resp.Proto, ws.Resp.Status, ws.Resp.Header)
	}
	id := c.publish(t, base, "news", "hello")
	m := ws.nextText("message")
	if m.ID != id || m.Topic != "news" || m.Data != "hello" {
		t.Fatalf("got %s, want message %s", m.Raw, id)
	}
	if n := c.dials.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// Two WebSockets and an SSE stream share one TCP connection with the
// publishes, each stream getting what it subscribed to.
func TestStreamsShareOneConnection(t *testing.T) {
	base, c := start(t)
	a := dialH2(t, c, base, "?topic=a", nil)
	b := dialH2(t, c, base, "", nil)
	if ack := b.request(map[string]any{"type": "subscribe", "topics": []string{"b"}, "ref": 1}); ack.Type != "ack" {
		t.Fatalf("subscribe frame answered %s", ack.Raw)
	}
	sse := testserver.Subscribe(t, c.Client, base+"/events?topic=a&topic=b", nil)
	if sse.Resp.ProtoMajor != 2 {
		t.Fatalf("SSE over %s", sse.Resp.Proto)
	}
	ida := c.publish(t, base, "a", "to a")
	idb := c.publish(t, base, "b", "to b")
	if m := a.nextText("message"); m.ID != ida {
		t.Fatalf("WebSocket a got %s, want %s", m.Raw, ida)
	}
	if m := b.nextText("message"); m.ID != idb {
		t.Fatalf("WebSocket b got %s, want %s", m.Raw, idb)
	}
	for _, id := range []string{ida, idb} {
		if e := sse.Next(); e.ID != id {
			t.Fatalf("SSE got %+v, want %s", e, id)
		}
	}
	if n := c.dials.Load(); n != 1 {
		t.Fatalf("%d TCP connections, want 1", n)
	}
}

// request sends frame and returns the server's answer to it (the frame
// with its ref), skipping others.
func (w *h2WS) request(frame map[string]any) testserver.WSFrame {
	w.t.Helper()
	w.sendJSON(frame)
	ref, _ := json.Marshal(frame["ref"])
	for {
		f := w.nextText("")
		if string(f.Ref) == string(ref) {
			return f
		}
	}
}

// A publish frame is acked with the message's ID, a binary publish frame
// reaches a subscriber as a binary frame, and the subscriber replays
// history from last_id as over HTTP/1.1.
func TestPublishFramesAndBinary(t *testing.T) {
	base, c := start(t)
	sub := dialH2(t, c, base, "?topic=t", nil)
	pub := dialH2(t, c, base, "", nil)
	ack := pub.request(map[string]any{"type": "publish", "topic": "t", "data": "text", "ref": "p1"})
	if ack.Type != "ack" || ack.ID == "" {
		t.Fatalf("publish frame answered %s", ack.Raw)
	}
	if m := sub.nextText("message"); m.ID != ack.ID || m.Data != "text" {
		t.Fatalf("got %s, want %s", m.Raw, ack.ID)
	}

	blob := "\x00\xff binary \x80"
	header := `{"type":"publish","topic":"t","ref":2}`
	pub.send(opBinary, append(binary.BigEndian.AppendUint16(nil, uint16(len(header))), header+blob...))
	bin := pub.nextText("ack")
	sub.nextBinary(bin.ID, blob)
	// History replays it as a binary frame too.
	replay := dialH2(t, c, base, "?topic=t&last_id="+ack.ID, nil)
	replay.nextBinary(bin.ID, blob)
	var env testserver.Envelope
	if sse := testserver.Subscribe(t, c.Client, base+"/events?format=json&last_id="+ack.ID+"&topic=t", nil); json.Unmarshal([]byte(sse.Next().Data), &env) != nil || env.Data != base64.StdEncoding.EncodeToString([]byte(blob)) {
		t.Fatalf("SSE replay %+v", env)
	}
}

// nextBinary reads the next frame, which must be the binary message id
// with data.
func (w *h2WS) nextBinary(id, data string) {
	w.t.Helper()
	f := w.next()
	var h testserver.WSFrame
	if f.op == opBinary && len(f.payload) >= 2 {
		n := min(int(binary.BigEndian.Uint16(f.payload)), len(f.payload)-2)
		if json.Unmarshal(f.payload[2:2+n], &h) == nil && h.ID == id && string(f.payload[2+n:]) == data {
			return
		}
	}
	w.t.Fatalf("got frame (opcode %d) %q, want the binary message %s", f.op, f.payload, id)
}

// permessage-deflate is negotiated without context takeover, as over
// HTTP/1.1: the server's messages come compressed, and a compressed
// message from the client is inflated.
func TestCompression(t *testing.T) {
	base, c := start(t)
	ws := dialH2(t, c, base, "?topic=z", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate; client_max_window_bits"}})
	if got := ws.Resp.Header.Get("Sec-WebSocket-Extensions"); got != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" {
		t.Fatalf("negotiated %q", got)
	}
	data := strings.Repeat("compressible ", 100)
	frame, _ := json.Marshal(map[string]any{"type": "publish", "topic": "z", "data": data, "ref": 1})
	ws.sendCompressed(frame)
	// The ack and the message, in either order: the connection is its
	// own subscriber.
	var ack, m testserver.WSFrame
	var compressed bool
	for range 2 {
		f := ws.next()
		var got testserver.WSFrame
		if json.Unmarshal(f.payload, &got) != nil {
			t.Fatalf("got frame %q", f.payload)
		}
		if got.Type == "ack" {
			ack = got
		} else {
			m, compressed = got, f.rsv1
		}
	}
	if !compressed || m.Type != "message" || m.ID != ack.ID || m.Data != data {
		t.Fatalf("got %.80q (compressed %v) and ack %q, want the message compressed", m.Data, compressed, ack.ID)
	}
}

// A client's close frame is answered with its code, and the stream ends.
func TestClientClose(t *testing.T) {
	base, c := start(t)
	ws := dialH2(t, c, base, "?topic=c", nil)
	ws.send(opClose, binary.BigEndian.AppendUint16(nil, 4000))
	if code, _ := ws.expectClose(); code != 4000 {
		t.Fatalf("close answered with %d, want 4000", code)
	}
}

// Breaches of the protocol close with gorilla's codes: an unmasked frame
// 1002, a message over max_message_size 1009, plain or compressed.
func TestProtocolBreaches(t *testing.T) {
	base, c := start(t)
	for _, tc := range []struct {
		name string
		send func(ws *h2WS)
		code int
	}{
		{"unmasked", func(ws *h2WS) { ws.raw(0x80|opText, []byte(`{"type":"subscribe"}`), false) }, 1002},
		{"oversized", func(ws *h2WS) { ws.send(opText, make([]byte, 17<<10)) }, 1009},
		{"inflates too large", func(ws *h2WS) { ws.sendCompressed(make([]byte, 1<<20)) }, 1009},
		{"reserved bits", func(ws *h2WS) { ws.raw(0x80|0x20|opText, []byte("x"), true) }, 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := dialH2(t, c, base, "?topic=x", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate"}})
			tc.send(ws)
			if code, reason := ws.expectClose(); code != tc.code {
				t.Fatalf("closed with %d %q, want %d", code, reason, tc.code)
			}
		})
	}
}

// Stopping Caddy closes a WebSocket over HTTP/2 with 1001 and the reason,
// after the messages queued for it.
func TestShutdownCloses(t *testing.T) {
	base, c := start(t)
	ws := dialH2(t, c, base, "?topic=s", nil)
	id := c.publish(t, base, "s", "last")
	if m := ws.nextText("message"); m.ID != id {
		t.Fatalf("got %s", m.Raw)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if code, reason := ws.expectClose(); code != 1001 || reason != "server shutting down" {
		t.Fatalf("closed with %d %q, want 1001 \"server shutting down\"", code, reason)
	}
}

// The server pings every heartbeat; a client that answers stays, one that
// stops answering is dropped after two heartbeats and a half: its stream
// ends.
func TestHeartbeat(t *testing.T) {
	base, c := start(t, "heartbeat 1s")
	alive := dialH2(t, c, base, "?topic=h", nil)
	dead := dialH2(t, c, base, "?topic=h", nil)
	dead.ignorePings.Store(true)
	t0 := time.Now()
	select {
	case <-dead.done:
	case <-time.After(testserver.Wait):
		t.Fatal("a client that answers no ping is still connected")
	}
	// Dropped for want of a pong 2.5 heartbeats after its last read: after
	// a ping at least, and not at the first unanswered one. (How many
	// pings it read depends on the load: a second one may be late, or lost
	// with the reset of the stream.)
	if n, after := dead.pings.Load(), time.Since(t0); n < 1 || after < 1500*time.Millisecond {
		t.Fatalf("dropped after %d pings and %s (%v), want at least 1 and 1.5s", n, after, dead.err)
	}
	testserver.Eventually(t, "pings to the live client", func() bool { return alive.pings.Load() >= 3 })
	id := c.publish(t, base, "h", "still here")
	if m := alive.nextText("message"); m.ID != id {
		t.Fatalf("live client got %s, want %s", m.Raw, id)
	}
}

// The origin check of an HTTP/1.1 upgrade applies: a page of another site
// not listed in cors is refused, one listed is served.
func TestOrigin(t *testing.T) {
	base, c := start(t, "cors https://app.example.com")
	ws, err := tryH2(t, c, base, "?topic=o", http.Header{"Origin": {"https://evil.example.com"}})
	if err != nil || ws.Resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a foreign page's WebSocket: %v, want 403", err)
	}
	ok := dialH2(t, c, base, "?topic=o", http.Header{"Origin": {"https://app.example.com"}})
	id := c.publish(t, base, "o", "x")
	if m := ok.nextText("message"); m.ID != id {
		t.Fatalf("got %s, want %s", m.Raw, id)
	}
}

// testSecret signs the tokens of TestJWT and the hook calls of
// TestConnectHook.
const testSecret = "wsh2-test-secret-wsh2-test-secret"

// token is a token of subject tester, expiring after ttl, that may
// subscribe to filters.
func token(t *testing.T, ttl time.Duration, filters ...string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "tester", "exp": time.Now().Add(ttl).Unix(), "pubsub": map[string]any{"subscribe": filters}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// With jwt, the extended CONNECT needs a token as an upgrade does; a
// refresh frame replaces it in place, so the connection outlives the first
// token's expiry, and a refresh to a token whose grant no longer covers
// the connection's topics closes it with 1008.
func TestJWT(t *testing.T) {
	base, c := start(t, "jwt {\n\t\t\tsecret "+testSecret+"\n\t\t}")
	ws, err := tryH2(t, c, base, "?topic=chat/a", http.Header{"Authorization": nil})
	if err != nil || ws.Resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %v, want 401", err)
	}

	expires := time.Now().Add(2 * time.Second)
	ws = dialH2(t, c, base, "?topic=chat/a", http.Header{"Authorization": {"Bearer " + token(t, time.Until(expires), "chat/#")}})
	if ack := ws.request(map[string]any{"type": "refresh", "token": token(t, time.Hour, "chat/#"), "ref": 1}); ack.Type != "ack" {
		t.Fatalf("refresh answered %s", ack.Raw)
	}
	<-time.After(time.Until(expires) + 500*time.Millisecond)
	id := c.publish(t, base, "chat/a", "after the first token")
	if m := ws.nextText("message"); m.ID != id {
		t.Fatalf("after the refresh: %s, want %s", m.Raw, id)
	}
	ws.sendJSON(map[string]any{"type": "refresh", "token": token(t, time.Hour, "news/#"), "ref": 2})
	if code, reason := ws.expectClose(); code != 1008 || !strings.Contains(reason, "does not allow the connection's topics") {
		t.Fatalf("refresh to a token without the topics: closed with %d %q, want 1008", code, reason)
	}
}

// The connect hook decides whether a WebSocket over HTTP/2 may open, as
// it does for an upgrade, and is told the transport ws.
func TestConnectHook(t *testing.T) {
	var allow atomic.Bool
	calls := make(chan string, 4)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var call struct {
			Caller struct{ Transport string } `json:"caller"`
		}
		_ = json.NewDecoder(r.Body).Decode(&call)
		calls <- call.Caller.Transport
		if allow.Load() {
			fmt.Fprint(w, `{"allow":true}`)
			return
		}
		fmt.Fprint(w, `{"allow":false,"reason":"banned"}`)
	}))
	t.Cleanup(backend.Close)
	base, c := start(t, "hooks "+backend.URL+" {\n\t\t\tsecret "+testSecret+"\n\t\t\ton connect\n\t\t}")

	ws, err := tryH2(t, c, base, "?topic=k", nil)
	if err != nil || ws.Resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied by the hook: %v, want 403", err)
	}
	if body, _ := io.ReadAll(ws.Resp.Body); !strings.Contains(string(body), "banned") {
		t.Fatalf("denied with %q, want the backend's reason", body)
	}
	allow.Store(true)
	ws = dialH2(t, c, base, "?topic=k", nil)
	for range 2 {
		if transport := <-calls; transport != "ws" {
			t.Fatalf("the hook was told transport %q, want ws", transport)
		}
	}
	id := c.publish(t, base, "k", "allowed")
	if m := ws.nextText("message"); m.ID != id {
		t.Fatalf("got %s, want %s", m.Raw, id)
	}
}
