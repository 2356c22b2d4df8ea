package hooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// The shared secret, handed to Caddy through the environment as a real
// deployment would.
const (
	hookSecret    = "hook-test-secret-0123456789abcdef-0123456789"
	hookSecretEnv = "PUBSUB_TEST_HOOK_SECRET"
)

// call is a hook request as the backend reads it (docs/hooks.md).
type call struct {
	Hook     string `json:"hook"`
	Endpoint string `json:"endpoint"`
	Time     int64  `json:"time"`
	Caller   struct {
		Sub       string          `json:"sub"`
		Claims    json.RawMessage `json:"claims"`
		IP        string          `json:"ip"`
		Transport string          `json:"transport"`
	} `json:"caller"`
	Topics   []string `json:"topics"`
	Messages []struct {
		Topic    string `json:"topic"`
		Event    string `json:"event"`
		Data     string `json:"data"`
		Encoding string `json:"encoding"`
	} `json:"messages"`
	Subscription string `json:"subscription"`
	Topic        string `json:"topic"`
}

// answerFunc decides a backend's answer: a status and a body.
type answerFunc func(c call) (int, string)

func allowAll(call) (int, string) { return 200, `{"allow":true}` }

// backend is the application's backend: it verifies each request's
// signature, records it by hook, and answers with its answerFunc.
type backend struct {
	t      *testing.T
	URL    string
	secret string
	// forged: the test sends requests signed with another secret, so a
	// failed verification is refused without failing the test.
	forged bool
	answer atomic.Pointer[answerFunc]
	// block, when set, holds every request until the test ends or the
	// request is abandoned: a backend that never answers.
	block atomic.Bool

	mu    sync.Mutex
	calls map[string]chan call
	count atomic.Int64 // requests received
}

func startBackend(t *testing.T, answer answerFunc) *backend {
	t.Helper()
	b, srv := newBackend(t, answer)
	srv.Start()
	b.URL = srv.URL + "/hooks"
	return b
}

// startTLSBackend is startBackend over HTTPS, with a certificate of its
// own; it returns the PEM file of that certificate, for Caddy to trust.
func startTLSBackend(t *testing.T, answer answerFunc) (*backend, string) {
	t.Helper()
	b, srv := newBackend(t, answer)
	srv.StartTLS()
	b.URL = srv.URL + "/hooks"
	ca := filepath.Join(t.TempDir(), "backend.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return b, ca
}

func newBackend(t *testing.T, answer answerFunc) (*backend, *httptest.Server) {
	b := &backend{t: t, secret: hookSecret, calls: make(map[string]chan call)}
	b.setAnswer(answer)
	stop := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(b.serve(stop)))
	// Refused handshakes are what some tests are about.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(func() {
		close(stop)
		srv.Close()
	})
	return b, srv
}

func (b *backend) setAnswer(a answerFunc) { b.answer.Store(&a) }

func (b *backend) serve(stop <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b.count.Add(1)
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return
		}
		if err := verify([]byte(b.secret), r.Header, body, time.Now()); err != nil {
			if !b.forged {
				b.t.Errorf("hook request failed verification: %v", err)
			}
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var c call
		if err := json.Unmarshal(body, &c); err != nil {
			b.t.Errorf("hook request %q: %v", body, err)
			return
		}
		if c.Hook != r.Header.Get("Pubsub-Hook") {
			b.t.Errorf("hook %q in the body, %q in the header", c.Hook, r.Header.Get("Pubsub-Hook"))
		}
		b.record(c)
		if b.block.Load() {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		status, answer := (*b.answer.Load())(c)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}
}

// verify checks a hook request as docs/hooks.md tells a backend to: the
// timestamp is within five minutes of now (older ones are replays), and
// the signature is the HMAC-SHA256 of timestamp + "." + body.
func verify(secret []byte, h http.Header, body []byte, now time.Time) error {
	ts := h.Get("Pubsub-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("no timestamp")
	}
	if math.Abs(float64(now.Unix()-sec)) > 300 {
		return errors.New("timestamp outside the window: a replay?")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(h.Get("Pubsub-Signature"))) {
		return errors.New("bad signature")
	}
	return nil
}

func (b *backend) ch(hook string) chan call {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.calls[hook]
	if !ok {
		c = make(chan call, 4096)
		b.calls[hook] = c
	}
	return c
}

func (b *backend) record(c call) {
	select {
	case b.ch(c.Hook) <- c:
	default:
		b.t.Errorf("backend: too many %s calls unread", c.Hook)
	}
}

// next returns the next call of hook, waiting for it.
func (b *backend) next(hook string) call {
	b.t.Helper()
	select {
	case c := <-b.ch(hook):
		return c
	case <-time.After(testserver.Wait):
		b.t.Fatalf("no %s hook call within %s", hook, testserver.Wait)
	}
	return call{}
}

// none checks that no call of hook is waiting to be read.
func (b *backend) none(hook string) {
	b.t.Helper()
	select {
	case c := <-b.ch(hook):
		b.t.Fatalf("unexpected %s hook call: %+v", hook, c)
	default:
	}
}

// site serves /events with hooks to url, with extra lines in the hooks
// block and in the pubsub block.
func site(url, hooksExtra, pubsubExtra string) string {
	return `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		poll_timeout 1s
		` + pubsubExtra + `
		hooks ` + url + ` {
			secret {env.` + hookSecretEnv + `}
			` + hooksExtra + `
		}
	}
}
`
}

// metric sums the series of name whose labels hold every one of labels
// (`hook="subscribe"`), scraped from url.
func metric(t *testing.T, url, name string, labels ...string) float64 {
	t.Helper()
	code, body := status(t, "GET", url, nil)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d", url, code)
	}
	sum := 0.0
	for line := range strings.Lines(body) {
		series, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !strings.HasPrefix(series, name+"{") {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(series, l)
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil && match {
			sum += v
		}
	}
	return sum
}

// start runs the site and returns its endpoint URL.
func start(t *testing.T, s string) string {
	t.Helper()
	t.Setenv(hookSecretEnv, hookSecret)
	return testserver.Start(t, s).Base + "/events"
}

// status sends a GET with header and returns its status and body, for a
// request that is refused (or answers at once).
func status(t *testing.T, method, url string, header http.Header) (int, string) {
	t.Helper()
	code, body, _ := testserver.Request(t, method, url, "", "", header)
	return code, strings.TrimSpace(body)
}

var sseHeader = http.Header{"Accept": {"text/event-stream"}}
