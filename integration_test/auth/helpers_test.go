package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// The HMAC secret of the HS256 sites, handed to Caddy through the
// environment as a real deployment would, and their static publish key.
const (
	secret     = "integration-test-secret-0123456789abcdef"
	secretEnv  = "PUBSUB_TEST_JWT_SECRET"
	publishKey = "publisher-static-key-0123456789"
)

// Keys are generated once per test binary: RSA generation is slow under
// the race detector.
var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	ecKey  = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// hmacSite serves /events with an HS256 jwt block (cookie pubsub_token,
// the given leeway), the static publish_key, and extra sub-directives.
func hmacSite(leeway, extra string) string {
	return `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		poll_timeout 2s
		publish_key ` + publishKey + `
		jwt {
			secret {env.` + secretEnv + `}
			cookie pubsub_token
			leeway ` + leeway + `
		}
		` + extra + `
	}
}
`
}

// startHMAC sets the secret's environment variable and runs site.
func startHMAC(t *testing.T, site string) string {
	t.Helper()
	t.Setenv(secretEnv, secret)
	return testserver.Start(t, site).Base + "/events"
}

// grants is the pubsub claim.
type grants struct {
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
}

type claims struct {
	jwt.RegisteredClaims
	PubSub grants `json:"pubsub"`
}

// signed returns a token signed with method and key that expires after
// ttl and grants g.
func signed(t testing.TB, method jwt.SigningMethod, key any, ttl time.Duration, g grants) string {
	t.Helper()
	return signedFor(t, "tester", method, key, ttl, g)
}

// signedFor is signed for the subject sub.
func signedFor(t testing.TB, sub string, method jwt.SigningMethod, key any, ttl time.Duration, g grants) string {
	t.Helper()
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))},
		PubSub:           g,
	}
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hs is an HS256 token of the test secret, valid for an hour.
func hs(t testing.TB, g grants) string {
	t.Helper()
	return signed(t, jwt.SigningMethodHS256, []byte(secret), time.Hour, g)
}

// chatReader may receive chat/# and news/+ and publish nothing.
func chatReader(t testing.TB) string {
	return hs(t, grants{Subscribe: []string{"chat/#", "news/+"}})
}

// bearer is an Authorization header carrying token.
func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// cookie is a Cookie header carrying token as pubsub_token.
func cookie(token string) http.Header {
	return http.Header{"Cookie": {"pubsub_token=" + token}}
}

// merge returns the union of headers.
func merge(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, v := range h {
			out[k] = append(out[k], v...)
		}
	}
	return out
}

// writePEM writes the PEM PUBLIC KEY of pub to a file in a test
// directory and returns its path.
func writePEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "issuer.pem")
	if err := os.WriteFile(path, pemBytes(der), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pemBytes(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// publicKeySite serves /events with a public_key jwt block.
func publicKeySite(path string) string {
	return `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		poll_timeout 1s
		jwt {
			public_key ` + path + `
		}
	}
}
`
}

// status sends a request that the server should refuse and returns its
// status, body and headers. A stream the server accepts instead is cut
// off after its headers, so a wrong answer fails the test rather than
// hanging it.
func status(t *testing.T, method, endpoint string, header http.Header) (int, string, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testserver.Wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, endpoint, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body []byte
	if resp.StatusCode != http.StatusOK {
		body, _ = io.ReadAll(resp.Body)
	}
	return resp.StatusCode, strings.TrimSpace(string(body)), resp.Header
}

// sseStatus is status for an SSE subscribe.
func sseStatus(t *testing.T, endpoint string, header http.Header) (int, string, http.Header) {
	t.Helper()
	return status(t, http.MethodGet, endpoint, merge(header, http.Header{"Accept": {"text/event-stream"}}))
}

// expectDenied checks a refusal's status and that its reason mentions
// want.
func expectDenied(t *testing.T, what string, got int, body string, want int, reason string) {
	t.Helper()
	if got != want || !strings.Contains(body, reason) {
		t.Fatalf("%s: %d %q, want %d mentioning %q", what, got, body, want, reason)
	}
}

// publishAs posts one message with header and returns the status and
// body.
func publishAs(t *testing.T, endpoint string, header http.Header, topic, data string) (int, string) {
	t.Helper()
	code, body, _ := testserver.Request(t, http.MethodPost, endpoint, "application/x-www-form-urlencoded",
		url.Values{"topic": {topic}, "data": {data}}.Encode(), header)
	return code, strings.TrimSpace(body)
}

// publish posts one message with the static publish key and returns its
// ID.
func publish(t *testing.T, endpoint, topic, data string) string {
	t.Helper()
	code, body := publishAs(t, endpoint, bearer(publishKey), topic, data)
	if code != http.StatusOK {
		t.Fatalf("publish %s: %d %s", topic, code, body)
	}
	var out struct{ ID string }
	if err := json.Unmarshal([]byte(body), &out); err != nil || out.ID == "" {
		t.Fatalf("publish answer %q: %v", body, err)
	}
	return out.ID
}

// poll sends one long-poll with header, which must be answered 200.
func poll(t *testing.T, endpoint string, header http.Header) testserver.PollAnswer {
	t.Helper()
	code, body, _ := testserver.Request(t, http.MethodGet, endpoint, "", "", header)
	if code != http.StatusOK {
		t.Fatalf("poll %s: %d %s", endpoint, code, body)
	}
	var a testserver.PollAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("poll answer %q: %v", body, err)
	}
	return a
}

// polled is the outcome of a long-poll sent by pollAsync.
type polled struct {
	a   testserver.PollAnswer
	err error
}

// pollAsync sends a long-poll with header from a goroutine of its own and
// delivers the outcome on the returned channel.
func pollAsync(endpoint string, header http.Header) <-chan polled {
	out := make(chan polled, 1)
	go func() {
		var p polled
		defer func() { out <- p }()
		ctx, cancel := context.WithTimeout(context.Background(), testserver.Wait)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
		if err != nil {
			p.err = err
			return
		}
		req.Header = header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			p.err = err
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			p.err = fmt.Errorf("poll: %d %s", resp.StatusCode, body)
			return
		}
		p.err = json.Unmarshal(body, &p.a)
	}()
	return out
}

// answer returns the poll's answer, failing the test on error.
func (p polled) answer(t *testing.T) testserver.PollAnswer {
	t.Helper()
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.a
}

// topicOf returns the topic of an SSE ?format=json event.
func topicOf(t *testing.T, ev testserver.Event) string {
	t.Helper()
	var env testserver.Envelope
	if err := json.Unmarshal([]byte(ev.Data), &env); err != nil {
		t.Fatalf("event data %q: %v", ev.Data, err)
	}
	return env.Topic
}

// q builds a query string from alternating keys and values.
func q(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return "?" + v.Encode()
}

// unsigned builds a token from header and payload JSON with the given
// signature part: for tokens no library would sign (alg none).
func unsigned(header, payload, signature string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + signature
}

// tamper swaps token's payload for payload JSON, keeping its signature.
func tamper(token, payload string) string {
	parts := strings.Split(token, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(payload))
	return strings.Join(parts, ".")
}
