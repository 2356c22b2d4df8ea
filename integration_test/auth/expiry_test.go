package auth_test

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A stream ends when its token expires: SSE with a last comment, WebSocket
// with close code 1008, and a waiting long-poll answers early; the next
// request with the token is refused.
func TestStreamsEndAtExpiry(t *testing.T) {
	// leeway 0s: streams end at exp itself. The long-poll would wait 10s.
	ep := startHMAC(t, hmacSite("0s", "poll_timeout 10s"))
	// exp has whole seconds: this token lasts between 2 and 3 seconds.
	ttl := 3 * time.Second
	token := signed(t, jwt.SigningMethodHS256, []byte(secret), ttl, grants{Subscribe: []string{"chat/#"}})
	exp := time.Unix(time.Now().Add(ttl).Unix(), 0)

	sse := testserver.Subscribe(t, nil, ep+q("topic", "chat/a"), bearer(token))
	ws := testserver.DialWS(t, ep+q("topic", "chat/a", "access_token", token), nil)
	id := publish(t, ep, "chat/a", "before expiry")
	pollDone := pollAsync(ep+q("topic", "chat/a", "last_id", id), cookie(token))
	if ev := sse.Next(); ev.ID != id {
		t.Fatalf("SSE got %+v, want %s", ev, id)
	}
	if f := ws.NextOf("message"); f.ID != id {
		t.Fatalf("WebSocket got %s, want %s", f.Raw, id)
	}

	if comments := sse.ExpectEnd(); !slices.Contains(comments, "closed: token expired") {
		t.Fatalf("SSE ended with comments %q, want closed: token expired", comments)
	}
	_, err := ws.ExpectClose()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != "token expired" {
		t.Fatalf("WebSocket closed with %v, want 1008 token expired", err)
	}
	a := (<-pollDone).answer(t)
	if len(a.Messages) != 0 || a.LastID != id {
		t.Fatalf("expired poll answered %+v", a)
	}
	if late := time.Since(exp); late < -100*time.Millisecond || late > 2*time.Second {
		t.Fatalf("streams ended %s after exp", late)
	}

	code, body, _ := status(t, http.MethodGet, ep+q("topic", "chat/a", "last_id", id), cookie(token))
	expectDenied(t, "poll after expiry", code, body, 401, "token is expired")
	code, body = testserver.DialWSStatus(t, ep+q("access_token", token), nil)
	expectDenied(t, "WebSocket after expiry", code, body, 401, "token is expired")
}
