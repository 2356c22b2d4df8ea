package hooks_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// narrowing allows what a subscribe call asks, but never "secret/…"
// topics, and denies any request naming "forbidden".
func narrowing(c call) (int, string) {
	if c.Hook != "subscribe" {
		return 200, `{"allow":true}`
	}
	var keep []string
	for _, t := range c.Topics {
		if t == "forbidden" {
			return 200, `{"allow":false,"reason":"not for you\nsecond line \u0007dropped"}`
		}
		if !strings.HasPrefix(t, "secret/") {
			keep = append(keep, t)
		}
	}
	b, _ := json.Marshal(map[string]any{"allow": true, "topics": keep})
	return 200, string(b)
}

// The subscribe hook decides every transport's subscription: the backend
// allows, refuses with its reason (403, one line), or narrows the topics;
// a WebSocket's upgrade request and its subscribe frames go through the
// same hook.
func TestSubscribeHookAllowsDeniesNarrows(t *testing.T) {
	b := startBackend(t, narrowing)
	ep := start(t, site(b.URL, "on subscribe", ""))

	t.Run("sse", func(t *testing.T) {
		code, body := status(t, "GET", ep+"?topic=forbidden", sseHeader)
		if code != http.StatusForbidden || body != "not for you" {
			t.Fatalf("denied SSE: %d %q", code, body)
		}
		c := b.next("subscribe")
		if c.Caller.Transport != "sse" || c.Caller.IP != "127.0.0.1" || !slices.Equal(c.Topics, []string{"forbidden"}) {
			t.Errorf("subscribe call: %+v", c)
		}
		s := testserver.Subscribe(t, nil, ep+"?topic=news&topic=secret/a", nil)
		b.next("subscribe")
		testserver.Publish(t, ep, url.Values{"topic": {"secret/a"}, "data": {"hidden"}})
		testserver.Publish(t, ep, url.Values{"topic": {"news"}, "data": {"shown"}})
		if ev := s.Next(); ev.Data != "shown" {
			t.Fatalf("narrowed SSE got %q, want only news", ev.Data)
		}
	})
	t.Run("poll", func(t *testing.T) {
		code, body := status(t, "GET", ep+"?topic=forbidden", nil)
		if code != http.StatusForbidden || body != "not for you" {
			t.Fatalf("denied poll: %d %q", code, body)
		}
		if c := b.next("subscribe"); c.Caller.Transport != "poll" {
			t.Errorf("subscribe call: %+v", c)
		}
		first := testserver.Poll(t, ep, "", "news", "secret/a")
		b.next("subscribe")
		testserver.Publish(t, ep, url.Values{"topic": {"secret/a"}, "data": {"hidden"}})
		testserver.Publish(t, ep, url.Values{"topic": {"news"}, "data": {"shown"}})
		a := testserver.Poll(t, ep, first.LastID, "news", "secret/a")
		b.next("subscribe")
		if len(a.Messages) != 1 || a.Messages[0].Data != "shown" {
			t.Fatalf("narrowed poll got %+v, want only news", a.Messages)
		}
	})
	t.Run("ws upgrade", func(t *testing.T) {
		code, body := testserver.DialWSStatus(t, ep+"?topic=forbidden", nil)
		if code != http.StatusForbidden || !strings.Contains(body, "not for you") {
			t.Fatalf("denied WebSocket: %d %q", code, body)
		}
		if c := b.next("subscribe"); c.Caller.Transport != "ws" {
			t.Errorf("subscribe call: %+v", c)
		}
		ws := testserver.DialWS(t, ep+"?topic=news&topic=secret/a", nil)
		b.next("subscribe")
		testserver.Publish(t, ep, url.Values{"topic": {"secret/a"}, "data": {"hidden"}})
		testserver.Publish(t, ep, url.Values{"topic": {"news"}, "data": {"shown"}})
		if f := ws.NextOf("message"); f.Data != "shown" {
			t.Fatalf("narrowed WebSocket got %q, want only news", f.Data)
		}
	})
	t.Run("ws frames", func(t *testing.T) {
		ws := testserver.DialWS(t, ep, nil)
		for _, topics := range [][]string{{"forbidden"}, {"news", "secret/a"}, {"forbidden"}, {"more", "secret/b"}} {
			ws.Send(map[string]any{"type": "subscribe", "topics": topics, "ref": 1})
			f := ws.Next()
			c := b.next("subscribe")
			if !slices.Equal(c.Topics, topics) {
				t.Errorf("subscribe call asked %v, want %v", c.Topics, topics)
			}
			if topics[0] == "forbidden" {
				if f.Type != "error" || f.Reason != "not for you" {
					t.Fatalf("denied frame: %+v", f)
				}
			} else if f.Type != "ack" {
				t.Fatalf("allowed frame: %+v", f)
			}
		}
		for _, topic := range []string{"secret/a", "secret/b", "news", "more"} {
			testserver.Publish(t, ep, url.Values{"topic": {topic}, "data": {topic}})
		}
		for _, want := range []string{"news", "more"} {
			if f := ws.NextOf("message"); f.Data != want {
				t.Fatalf("narrowed WebSocket got %q, want %q", f.Data, want)
			}
		}
	})
}

// The publish hook refuses a publish with its reason, or rewrites the
// message's topic, event and data, on HTTP and on a WebSocket; a rewrite
// must still be a valid message.
func TestPublishHookAllowsDeniesRewrites(t *testing.T) {
	b := startBackend(t, func(c call) (int, string) {
		if c.Hook != "publish" {
			return 200, `{"allow":true}`
		}
		m := c.Messages[0]
		switch m.Data {
		case "spam":
			return 200, `{"allow":false,"reason":"looks like spam"}`
		case "rewrite":
			return 200, `{"allow":true,"messages":[{"topic":"moderated/` + m.Topic + `","event":"note","data":"{\"text\":\"rewritten\",\"by\":\"backend\"}"}]}`
		case "bad rewrite":
			return 200, `{"allow":true,"messages":[{"topic":"a/#","data":"x"}]}`
		}
		return 200, `{"allow":true}`
	})
	ep := start(t, site(b.URL, "on publish", ""))
	s := testserver.Subscribe(t, nil, ep+"?topic=%23&format=json", nil)

	code, body, _ := testserver.Request(t, "POST", ep, "application/x-www-form-urlencoded", "topic=chat&data=spam", nil)
	if code != http.StatusForbidden || strings.TrimSpace(body) != "looks like spam" {
		t.Fatalf("denied publish: %d %q", code, body)
	}
	if c := b.next("publish"); c.Caller.Transport != "http" || c.Messages[0].Topic != "chat" {
		t.Errorf("publish call: %+v", c)
	}
	code, body, _ = testserver.Request(t, "POST", ep, "application/x-www-form-urlencoded", "topic=chat&data=bad+rewrite", nil)
	if code != http.StatusBadGateway {
		t.Fatalf("invalid rewrite: %d %q", code, body)
	}
	b.next("publish")
	testserver.Publish(t, ep, url.Values{"topic": {"chat"}, "data": {"rewrite"}})
	b.next("publish")
	var env testserver.Envelope
	if err := json.Unmarshal([]byte(s.Next().Data), &env); err != nil {
		t.Fatal(err)
	}
	if env.Topic != "moderated/chat" || env.Event != "note" || env.Data != `{"text":"rewritten","by":"backend"}` {
		t.Fatalf("rewritten message: %+v", env)
	}

	ws := testserver.DialWS(t, ep, nil)
	ws.Send(map[string]any{"type": "publish", "topic": "chat", "data": "spam", "ref": 1})
	if f := ws.Next(); f.Type != "error" || f.Reason != "looks like spam" {
		t.Fatalf("denied WebSocket publish: %+v", f)
	}
	if c := b.next("publish"); c.Caller.Transport != "ws" {
		t.Errorf("publish call: %+v", c)
	}
	ws.Send(map[string]any{"type": "publish", "topic": "chat", "data": "plain", "ref": 2})
	if f := ws.Next(); f.Type != "ack" {
		t.Fatalf("allowed WebSocket publish: %+v", f)
	}
	b.next("publish")
	if err := json.Unmarshal([]byte(s.Next().Data), &env); err != nil || env.Data != "plain" {
		t.Fatalf("allowed WebSocket publish delivered %+v (%v)", env, err)
	}
}

// The connect hook decides whether a WebSocket may open, and the backend
// learns who asks: the token's subject and claims, the client's address.
func TestConnectHookSeesIdentity(t *testing.T) {
	const jwtSecret = "hook-test-jwt-secret-0123456789abcdef"
	t.Setenv("PUBSUB_TEST_HOOK_JWT", jwtSecret)
	b := startBackend(t, func(c call) (int, string) {
		if c.Caller.Sub == "mallory" {
			return 200, `{"allow":false,"reason":"banned"}`
		}
		return 200, `{"allow":true}`
	})
	ep := start(t, site(b.URL, "on connect", "jwt {\n\t\t\tsecret {env.PUBSUB_TEST_HOOK_JWT}\n\t\t}"))
	token := func(sub string) http.Header {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "room": "blue",
			"pubsub": map[string]any{"subscribe": []string{"#"}},
		})
		raw, err := tok.SignedString([]byte(jwtSecret))
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Bearer " + raw}}
	}

	code, body := testserver.DialWSStatus(t, ep+"?topic=a", token("mallory"))
	if code != http.StatusForbidden || !strings.Contains(body, "banned") {
		t.Fatalf("denied connect: %d %q", code, body)
	}
	b.next("connect")
	ws := testserver.DialWS(t, ep+"?topic=a", &testserver.WSOptions{Header: token("alice")})
	c := b.next("connect")
	var claims struct {
		Sub  string `json:"sub"`
		Room string `json:"room"`
	}
	if err := json.Unmarshal(c.Caller.Claims, &claims); err != nil {
		t.Fatal(err)
	}
	if c.Caller.Sub != "alice" || claims.Room != "blue" || c.Caller.IP != "127.0.0.1" || c.Caller.Transport != "ws" || c.Endpoint == "" {
		t.Errorf("connect call: %+v (claims %s)", c, c.Caller.Claims)
	}
	ws.Send(map[string]any{"type": "subscribe", "topics": []string{"b"}, "ref": 1})
	if f := ws.Next(); f.Type != "ack" {
		t.Fatalf("subscribe frame: %+v", f)
	}
	// Only the hooks listed in on are called: SSE has no connect hook.
	testserver.Subscribe(t, nil, ep+"?topic=a", token("mallory"))
	b.none("connect")
	b.none("subscribe")
}

// Binary data goes to the publish hook in base64, marked with its
// encoding, over HTTP and in a WebSocket binary frame; the backend's
// rewrite may give text or bytes (in base64), and a rewrite whose base64
// or encoding is wrong answers 502.
func TestPublishHookSeesBinaryData(t *testing.T) {
	b := startBackend(t, func(c call) (int, string) {
		if c.Hook != "publish" {
			return 200, `{"allow":true}`
		}
		m := c.Messages[0]
		switch {
		case m.Encoding == "base64" && m.Data == "AP4=": // 00 fe
			return 200, `{"allow":true,"messages":[{"topic":"chat","data":"AQID","encoding":"base64"}]}`
		case m.Encoding == "base64":
			return 200, `{"allow":true}`
		case m.Data == "make binary":
			return 200, `{"allow":true,"messages":[{"topic":"chat","data":"3q0=","encoding":"base64"}]}`
		case m.Data == "bad base64":
			return 200, `{"allow":true,"messages":[{"topic":"chat","data":"not base64!","encoding":"base64"}]}`
		case m.Data == "bad encoding":
			return 200, `{"allow":true,"messages":[{"topic":"chat","data":"x","encoding":"hex"}]}`
		}
		return 200, `{"allow":true}`
	})
	ep := start(t, site(b.URL, "on publish", ""))
	s := testserver.Subscribe(t, nil, ep+"?topic=chat&format=json", nil)
	delivered := func(data, encoding string) {
		t.Helper()
		var env testserver.Envelope
		if err := json.Unmarshal([]byte(s.Next().Data), &env); err != nil || env.Data != data || env.Encoding != encoding {
			t.Fatalf("delivered %+v (%v), want %q in %q", env, err, data, encoding)
		}
	}

	// As published: the backend sees the bytes in base64.
	code, body, _ := testserver.Request(t, "POST", ep+"?topic=chat", "application/octet-stream", "\x00\xff", nil)
	if code != http.StatusOK {
		t.Fatalf("binary publish with a publish hook: %d %q", code, body)
	}
	if c := b.next("publish"); c.Messages[0].Data != "AP8=" || c.Messages[0].Encoding != "base64" {
		t.Fatalf("the backend was asked about %+v, want AP8= in base64", c.Messages)
	}
	delivered("AP8=", "base64")

	// A WebSocket binary frame, rewritten to other bytes.
	ws := testserver.DialWS(t, ep, nil)
	header := `{"type":"publish","topic":"chat","ref":1}`
	ws.SendRaw(websocket.BinaryMessage, append([]byte{0, byte(len(header))}, header+"\x00\xfe"...))
	if f := ws.Next(); f.Type != "ack" {
		t.Fatalf("binary frame with a publish hook: %+v", f)
	}
	b.next("publish")
	delivered("AQID", "base64")

	// Text rewritten to bytes; rewrites that do not decode are refused.
	testserver.Publish(t, ep, url.Values{"topic": {"chat"}, "data": {"make binary"}})
	b.next("publish")
	delivered("3q0=", "base64")
	for _, data := range []string{"bad base64", "bad encoding"} {
		code, body, _ := testserver.Request(t, "POST", ep, "application/x-www-form-urlencoded", url.Values{"topic": {"chat"}, "data": {data}}.Encode(), nil)
		if code != http.StatusBadGateway || !strings.Contains(body, "rewrite") {
			t.Fatalf("%s: %d %q, want 502", data, code, body)
		}
		b.next("publish")
	}
}
