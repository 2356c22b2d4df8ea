package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// signClaims signs c as given (for exp, nbf edge cases).
func signClaims(t *testing.T, method jwt.SigningMethod, key any, c claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A subscriber needs a valid token: none, expired, not yet valid, signed
// with another key or algorithm, alg none, tampered, or without exp gets
// 401; a valid token for other topics gets 403.
func TestSubscribeNeedsValidToken(t *testing.T) {
	ep := startHMAC(t, hmacSite("30s", ""))
	reader := grants{Subscribe: []string{"chat/#"}}
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }
	valid := chatReader(t)

	tests := []struct {
		name   string
		header http.Header
		status int
		reason string
		topic  string // default chat/a
	}{
		{"no token", nil, 401, "missing token", ""},
		{"expired", bearer(signClaims(t, jwt.SigningMethodHS256, []byte(secret), claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: at(-time.Hour)}, PubSub: reader})), 401, "token is expired", ""},
		{"not yet valid", bearer(signClaims(t, jwt.SigningMethodHS256, []byte(secret), claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: at(2 * time.Hour), NotBefore: at(time.Hour)}, PubSub: reader})), 401, "token is not valid yet", ""},
		{"no exp", bearer(signClaims(t, jwt.SigningMethodHS256, []byte(secret), claims{PubSub: reader})), 401, "missing required claim", ""},
		{"wrong secret", bearer(signed(t, jwt.SigningMethodHS256, []byte(strings.Repeat("w", 40)), time.Hour, reader)), 401, "signature is invalid", ""},
		{"RS256 token", bearer(signed(t, jwt.SigningMethodRS256, rsaKey(), time.Hour, reader)), 401, "signing method RS256 is invalid", ""},
		{"alg none", bearer(unsigned(`{"alg":"none","typ":"JWT"}`, `{"exp":9999999999,"pubsub":{"subscribe":["#"]}}`, "")), 401, "signing method none is invalid", ""},
		{"tampered grant", bearer(tamper(valid, `{"exp":9999999999,"pubsub":{"subscribe":["#"]}}`)), 401, "signature is invalid", ""},
		{"garbage", bearer("not-a-token"), 401, "malformed", ""},
		{"topic outside the grant", bearer(valid), 403, `does not allow subscribing to "sport/a"`, "sport/a"},
		{"publish key", bearer(publishKey), 403, "publishing only", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := "chat/a"
			if tt.topic != "" {
				topic = tt.topic
			}
			code, body, h := sseStatus(t, ep+q("topic", topic), tt.header)
			expectDenied(t, "SSE", code, body, tt.status, tt.reason)
			if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), `Bearer realm="pubsub"`) {
				t.Fatalf("401 without a Bearer challenge: %q", h.Get("WWW-Authenticate"))
			}
			if tt.header != nil && code == 401 && !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("a refused token's challenge lacks invalid_token: %q", h.Get("WWW-Authenticate"))
			}
		})
	}
}

// The token may come from the Authorization header, the cookie or
// ?access_token=. The first present wins, header first, and a bad token
// there is refused even when a later source holds a good one.
func TestTokenSourcesAndPrecedence(t *testing.T) {
	ep := startHMAC(t, hmacSite("30s", ""))
	good, bad := chatReader(t), hs(t, grants{Subscribe: []string{"news/+"}})
	expired := signed(t, jwt.SigningMethodHS256, []byte(secret), -time.Hour, grants{Subscribe: []string{"chat/#"}})

	for name, tc := range map[string]struct {
		header http.Header
		query  string
		status int
	}{
		"header":                         {bearer(good), "", 200},
		"cookie":                         {cookie(good), "", 200},
		"query":                          {nil, good, 200},
		"header wins over cookie":        {merge(bearer(good), cookie(expired)), "", 200},
		"expired header, good cookie":    {merge(bearer(expired), cookie(good)), "", 401},
		"header for other topics wins":   {merge(bearer(bad), cookie(good)), "", 403},
		"cookie wins over query":         {cookie(expired), good, 401},
		"basic auth header is not a JWT": {merge(http.Header{"Authorization": {"Basic dTpw"}}, cookie(good)), "", 200},
	} {
		t.Run(name, func(t *testing.T) {
			u := ep + q("topic", "chat/a")
			if tc.query != "" {
				u = ep + q("topic", "chat/a", "access_token", tc.query)
			}
			if tc.status != 200 {
				code, body, _ := sseStatus(t, u, tc.header)
				if code != tc.status {
					t.Fatalf("got %d %q, want %d", code, body, tc.status)
				}
				return
			}
			s := testserver.Subscribe(t, nil, u, tc.header)
			id := publish(t, ep, "chat/a", name)
			if ev := s.Next(); ev.ID != id || ev.Data != name {
				t.Fatalf("got %+v, want %s", ev, id)
			}
		})
	}
}

// With public_key, the key decides the algorithm: RS256 (RSA) or ES256
// (P-256) tokens of the issuer pass; an HS256 token signed with the public
// key's PEM as the HMAC secret (the algorithm confusion attack), alg none,
// and tokens of other keys or algorithms do not.
func TestPublicKeyAlgorithms(t *testing.T) {
	reader := grants{Subscribe: []string{"chat/#"}}
	otherRSA := must(rsa.GenerateKey(rand.Reader, 2048))
	for _, tc := range []struct {
		name   string
		pub    any
		good   func(t *testing.T) string
		others map[string]func(t *testing.T) string
	}{
		{
			name: "RS256",
			pub:  &rsaKey().PublicKey,
			good: func(t *testing.T) string { return signed(t, jwt.SigningMethodRS256, rsaKey(), time.Hour, reader) },
			others: map[string]func(t *testing.T) string{
				"HS256 with the public PEM as secret": func(t *testing.T) string {
					der := must(x509.MarshalPKIXPublicKey(&rsaKey().PublicKey))
					return signed(t, jwt.SigningMethodHS256, pemBytes(der), time.Hour, reader)
				},
				"another RSA key": func(t *testing.T) string { return signed(t, jwt.SigningMethodRS256, otherRSA, time.Hour, reader) },
				"ES256":           func(t *testing.T) string { return signed(t, jwt.SigningMethodES256, ecKey(), time.Hour, reader) },
				"alg none": func(*testing.T) string {
					return unsigned(`{"alg":"none"}`, `{"exp":9999999999,"pubsub":{"subscribe":["#"]}}`, "")
				},
			},
		},
		{
			name: "ES256",
			pub:  &ecKey().PublicKey,
			good: func(t *testing.T) string { return signed(t, jwt.SigningMethodES256, ecKey(), time.Hour, reader) },
			others: map[string]func(t *testing.T) string{
				"HS256 with the public PEM as secret": func(t *testing.T) string {
					der := must(x509.MarshalPKIXPublicKey(&ecKey().PublicKey))
					return signed(t, jwt.SigningMethodHS256, pemBytes(der), time.Hour, reader)
				},
				"RS256": func(t *testing.T) string { return signed(t, jwt.SigningMethodRS256, rsaKey(), time.Hour, reader) },
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := testserver.Start(t, publicKeySite(writePEM(t, tc.pub))).Base + "/events"
			u := ep + q("topic", "chat/a")
			if code, body, _ := sseStatus(t, u, bearer(tc.good(t))); code != 200 {
				t.Fatalf("issuer's token: %d %s", code, body)
			}
			for name, token := range tc.others {
				code, body, _ := sseStatus(t, u, bearer(token(t)))
				expectDenied(t, name, code, body, 401, "invalid token")
			}
		})
	}
}

// HTTP publish: the static key, or a token whose publish grant allows
// every topic of the request; loopback gets no exception once jwt is set.
func TestPublishAuthorisation(t *testing.T) {
	ep := startHMAC(t, hmacSite("30s", ""))
	writer := hs(t, grants{Publish: []string{"chat/#"}, Subscribe: []string{"chat/#", "news/+"}})
	everything := hs(t, grants{Publish: []string{"#"}})
	expired := signed(t, jwt.SigningMethodHS256, []byte(secret), -time.Hour, grants{Publish: []string{"#"}})

	tests := []struct {
		name   string
		header http.Header
		url    string
		topic  string
		status int
		reason string
	}{
		{"loopback without credentials", nil, ep, "chat/a", 401, "missing token or publish key"},
		{"publish key", bearer(publishKey), ep, "chat/a", 200, ""},
		{"wrong publish key", bearer("nope"), ep, "chat/a", 401, "wrong publish key"},
		{"token without publish grant", bearer(chatReader(t)), ep, "chat/a", 403, "grants no publishing"},
		{"token, allowed topic", bearer(writer), ep, "chat/a", 200, ""},
		{"token, other topic", bearer(writer), ep, "news/a", 403, `does not allow publishing to "news/a"`},
		{"token in cookie", cookie(writer), ep, "chat/b", 200, ""},
		{"token in query", nil, ep + q("access_token", writer), "chat/c", 200, ""},
		{"expired token", bearer(expired), ep, "chat/a", 401, "token is expired"},
		{"# does not reach $ topics", bearer(everything), ep, "$pubsub/x", 403, `topic "$pubsub/x" is reserved`},
		{"nor does a grant naming them", bearer(hs(t, grants{Publish: []string{"$pubsub/#"}})), ep, "$pubsub/subscribe", 403, "written by the server only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := publishAs(t, tt.url, tt.header, tt.topic, tt.name)
			if tt.status == 200 {
				if code != 200 {
					t.Fatalf("%d %s", code, body)
				}
				return
			}
			expectDenied(t, "publish", code, body, tt.status, tt.reason)
		})
	}

	// A batch with one topic outside the grant publishes nothing.
	batch := `[{"topic":"chat/ok","data":"first"},{"topic":"news/no","data":"second"}]`
	code, body, _ := testserver.Request(t, http.MethodPost, ep, "application/json", batch, bearer(writer))
	expectDenied(t, "batch", code, body, 403, `"news/no"`)
	a := poll(t, ep+q("topic", "chat/#", "last_id", "earliest"), bearer(writer))
	for _, m := range a.Messages {
		if m.Data == "first" {
			t.Fatalf("a refused batch published %+v", m)
		}
	}
}

// Long-poll: a token is needed, checked against the topics, and the answer
// holds only what it allows.
func TestLongPollAuthorisation(t *testing.T) {
	ep := startHMAC(t, hmacSite("30s", ""))
	id := publish(t, ep, "chat/a", "hello")
	code, body, _ := status(t, http.MethodGet, ep+q("topic", "chat/a"), nil)
	expectDenied(t, "no token", code, body, 401, "missing token")
	code, body, _ = status(t, http.MethodGet, ep+q("topic", "sport/a"), bearer(chatReader(t)))
	expectDenied(t, "other topic", code, body, 403, "does not allow subscribing")

	a := poll(t, ep+q("topic", "chat/a", "last_id", "earliest"), cookie(chatReader(t)))
	if len(a.Messages) != 1 || a.Messages[0].ID != id {
		t.Fatalf("poll answer %+v, want %s", a, id)
	}
}

// WebSocket: the upgrade needs a token (or the publish key, to publish
// only); subscribe and publish frames are checked against its grants.
func TestWebSocketAuthorisation(t *testing.T) {
	ep := startHMAC(t, hmacSite("30s", ""))
	code, body := testserver.DialWSStatus(t, ep, nil)
	expectDenied(t, "no token", code, body, 401, "missing token")
	code, body = testserver.DialWSStatus(t, ep, bearer("junk"))
	expectDenied(t, "bad token", code, body, 401, "invalid token")
	code, body = testserver.DialWSStatus(t, ep+q("topic", "sport/a"), bearer(chatReader(t)))
	expectDenied(t, "other topic", code, body, 403, "does not allow subscribing")

	t.Run("reader", func(t *testing.T) {
		c := testserver.DialWS(t, ep, &testserver.WSOptions{Header: cookie(chatReader(t))})
		if f, _ := c.Request(map[string]any{"type": "subscribe", "ref": 1, "topics": []string{"sport/#"}}); f.Type != "error" || !strings.Contains(f.Reason, `does not allow subscribing to "sport/#"`) {
			t.Fatalf("subscribe outside the grant: %s", f.Raw)
		}
		if f, _ := c.Request(map[string]any{"type": "subscribe", "ref": 2, "topics": []string{"chat/#"}}); f.Type != "ack" {
			t.Fatalf("subscribe: %s", f.Raw)
		}
		if f, _ := c.Request(map[string]any{"type": "publish", "ref": 3, "topic": "chat/a", "data": "x"}); f.Type != "error" || !strings.Contains(f.Reason, "grants no publishing") {
			t.Fatalf("publish without grant: %s", f.Raw)
		}
		id := publish(t, ep, "chat/a", "to the reader")
		if f := c.NextOf("message"); f.ID != id {
			t.Fatalf("got %s, want %s", f.Raw, id)
		}
	})

	t.Run("writer", func(t *testing.T) {
		writer := hs(t, grants{Publish: []string{"chat/#"}, Subscribe: []string{"chat/#"}})
		c := testserver.DialWS(t, ep+q("access_token", writer), nil)
		if f, _ := c.Request(map[string]any{"type": "publish", "ref": 1, "topic": "chat/w", "data": "x"}); f.Type != "ack" || f.ID == "" {
			t.Fatalf("publish: %s", f.Raw)
		}
		if f, _ := c.Request(map[string]any{"type": "publish", "ref": 2, "topic": "news/w", "data": "x"}); f.Type != "error" || !strings.Contains(f.Reason, `does not allow publishing to "news/w"`) {
			t.Fatalf("publish outside the grant: %s", f.Raw)
		}
		batch := []map[string]string{{"topic": "chat/ok", "data": "1"}, {"topic": "news/no", "data": "2"}}
		if f, _ := c.Request(map[string]any{"type": "publish", "ref": 3, "messages": batch}); f.Type != "error" || !strings.Contains(f.Reason, `"news/no"`) {
			t.Fatalf("batch outside the grant: %s", f.Raw)
		}
	})

	t.Run("publish key", func(t *testing.T) {
		c := testserver.DialWS(t, ep, &testserver.WSOptions{Header: bearer(publishKey)})
		if f, _ := c.Request(map[string]any{"type": "publish", "ref": 1, "topic": "anything/at/all", "data": "x"}); f.Type != "ack" {
			t.Fatalf("publish: %s", f.Raw)
		}
		if f, _ := c.Request(map[string]any{"type": "subscribe", "ref": 2, "topics": []string{"chat/#"}}); f.Type != "error" || !strings.Contains(f.Reason, "publishing only") {
			t.Fatalf("subscribe with the publish key: %s", f.Raw)
		}
	})
}

// wsSubscribe sends a subscribe frame that must be acked and returns the
// frames that came before the ack.
func wsSubscribe(t *testing.T, c *testserver.WSConn, ref int, lastID string, topics ...string) []testserver.WSFrame {
	t.Helper()
	frame := map[string]any{"type": "subscribe", "ref": ref, "topics": topics}
	if lastID != "" {
		frame["last_id"] = lastID
	}
	ack, before := c.Request(frame)
	if ack.Type != "ack" {
		b, _ := json.Marshal(frame)
		t.Fatalf("%s: %s", b, ack.Raw)
	}
	return before
}
