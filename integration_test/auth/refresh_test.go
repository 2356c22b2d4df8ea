package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A WebSocket refreshes its token in place: the connection outlives the
// first token's expiry with the new one's; a token for another subject,
// an invalid one or one that no longer grants the topics is refused, the
// last by closing with 1008.
func TestWebSocketTokenRefresh(t *testing.T) {
	ep := startHMAC(t, hmacSite("0s", ""))
	short := signed(t, jwt.SigningMethodHS256, []byte(secret), 2*time.Second, grants{Subscribe: []string{"chat/#"}})
	expires := time.Now().Add(2 * time.Second)
	ws := testserver.DialWS(t, ep+"?topic=chat/a", &testserver.WSOptions{Header: bearer(short)})

	for _, tc := range []struct {
		frame  map[string]any
		reason string
	}{
		{map[string]any{"type": "refresh", "token": "not.a.token", "ref": 1}, "refresh: invalid token"},
		{map[string]any{"type": "refresh", "ref": 2}, `refresh takes "token" alone`},
		{map[string]any{"type": "refresh", "token": otherSubject(t), "ref": 3}, "another subject"},
	} {
		if f, _ := ws.Request(tc.frame); f.Type != "error" || !strings.Contains(f.Reason, tc.reason) {
			t.Fatalf("%v: %+v, want an error with %q", tc.frame, f, tc.reason)
		}
	}
	long := hs(t, grants{Subscribe: []string{"chat/#"}})
	if f, _ := ws.Request(map[string]any{"type": "refresh", "token": long, "ref": 4}); f.Type != "ack" {
		t.Fatalf("refresh: %+v", f)
	}
	// The first token's expiry passes: the connection stays, with the new
	// token's.
	<-time.After(time.Until(expires) + 500*time.Millisecond)
	publish(t, ep, "chat/a", "after the first token")
	if f := ws.NextOf("message"); f.Data != "after the first token" {
		t.Fatalf("after the refresh: %+v", f)
	}

	narrower := hs(t, grants{Subscribe: []string{"news/#"}})
	ws.Send(map[string]any{"type": "refresh", "token": narrower, "ref": 5})
	frames, err := ws.ExpectClose()
	if err == nil || !strings.Contains(err.Error(), "1008") || !strings.Contains(err.Error(), "does not allow the connection's topics") {
		t.Fatalf("refresh to a token without the topics: %v after %+v", err, frames)
	}
}

// otherSubject is a valid token of another subject.
func otherSubject(t *testing.T) string {
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "someone-else", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		PubSub:           grants{Subscribe: []string{"chat/#"}},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
