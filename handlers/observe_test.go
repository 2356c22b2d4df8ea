package handlers

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// wait bounds every wait in these tests.
const wait = 10 * time.Second

func newHub(t *testing.T, opts hub.Options) *hub.Hub {
	t.Helper()
	h := hub.New(hub.NewMemoryBroker(opts.Retention), opts)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// waitSubscribers waits until h has n subscribers.
func waitSubscribers(t *testing.T, h *hub.Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for h.Subscribers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d subscribers, want %d", h.Subscribers(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gatedWriter is an SSE response whose writes block until the gate opens:
// a client that is not reading, so messages pile up in the subscriber's
// queue.
type gatedWriter struct {
	gate   chan struct{}
	header http.Header
	mu     sync.Mutex
	body   strings.Builder
}

func (g *gatedWriter) Header() http.Header { return g.header }
func (g *gatedWriter) WriteHeader(int)     {}
func (g *gatedWriter) Flush()              {}

func (g *gatedWriter) Write(b []byte) (int, error) {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.body.Write(b)
}

// On shutdown an SSE stream sends everything still queued, however much
// (more than one write batch), then the reason: a stopping server loses
// nothing it accepted.
func TestShutdownFlushesTheWholeSSEQueue(t *testing.T) {
	h := newHub(t, hub.Options{Queue: 1024, Retention: hub.Retention{Count: 10}})
	ep := &Endpoint{Hub: h, Heartbeat: time.Hour, Logger: zap.NewNop()}
	w := &gatedWriter{gate: make(chan struct{}), header: make(http.Header)}
	r := httptest.NewRequest(http.MethodGet, "/?topic=t", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ep.serveSSE(w, r, Request{})
	}()
	waitSubscribers(t, h, 1)

	var ids []string
	data := strings.Repeat("x", 1<<10)
	for range 4 * sseBatch >> 10 {
		got, err := h.Publish(context.Background(), hub.Message{Topic: "t", Data: data})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
	}
	h.Disconnect(hub.ErrShutdown)
	close(w.gate)
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("SSE handler still running after the shutdown")
	}

	body := w.body.String()
	var got []string
	for line := range strings.SplitSeq(body, "\n") {
		if id, ok := strings.CutPrefix(line, "id: "); ok {
			got = append(got, id)
		}
	}
	if strings.Join(got, " ") != strings.Join(ids, " ") {
		t.Fatalf("stream sent %d of the %d queued messages", len(got), len(ids))
	}
	if !strings.HasSuffix(body, ": closed: server shutting down\n\n") {
		t.Fatalf("stream ends with %q, want the shutdown reason", body[max(0, len(body)-80):])
	}
}

// Without JWT, the hub's own "$" topics are for the clients that may
// publish; other topics are open to all.
func TestMayWatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		key      string // configured publish_key
		sentKey  bool
		loopback bool
		filters  []string
		allowed  bool
	}{
		{"plain topic from anywhere", "", false, false, []string{"chat/#"}, true},
		{"presence from loopback", "", false, true, []string{"$pubsub/#"}, true},
		{"presence from elsewhere", "", false, false, []string{"a", "$pubsub/#"}, false},
		{"presence from loopback once a key is set", "k", false, true, []string{"$pubsub/subscribe"}, false},
		{"presence with the key", "k", true, false, []string{"$pubsub/#"}, true},
		{"other $ topic", "", false, false, []string{"$SYS/x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := identity{ep: &Endpoint{PublishKey: tc.key}, key: tc.sentKey, loopback: tc.loopback}
			d := id.mayWatch(tc.filters)
			if (d == nil) != tc.allowed {
				t.Fatalf("mayWatch(%q) = %+v, want allowed %v", tc.filters, d, tc.allowed)
			}
			if d != nil && d.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403", d.status)
			}
		})
	}
}

// Messages flowing through every transport write no log line at info or
// above: per-message logging stays at debug.
func TestNoInfoLogPerMessage(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := newHub(t, hub.Options{Queue: 64, Retention: hub.Retention{Count: 100}})
	ep := &Endpoint{Hub: h, Heartbeat: time.Hour, PollTimeout: wait, MaxMessageSize: 1 << 16, Logger: zap.New(core)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			ep.Publish(w, r, Request{})
		default:
			t, err := SelectTransport(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			t.Serve(ep, w, r, Request{})
		}
	}))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/?topic=t", nil)
	req.Header.Set("Accept", "text/event-stream")
	sse, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Body.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/?topic=t", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	waitSubscribers(t, h, 2)

	const n = 50
	lastID := ""
	for i := range n {
		resp, err := http.PostForm(srv.URL, url.Values{"topic": {"t"}, "data": {fmt.Sprint(i)}})
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("publish: %d", resp.StatusCode)
		}
	}
	lines := bufio.NewScanner(sse.Body)
	for got := 0; got < n && lines.Scan(); {
		if id, ok := strings.CutPrefix(lines.Text(), "id: "); ok {
			got, lastID = got+1, id
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	for range n {
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Get(srv.URL + "/?topic=t&last_id=earliest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if lastID == "" {
		t.Fatal("SSE got no message")
	}

	if loud := logs.FilterLevelExact(zapcore.InfoLevel).Len() + logs.FilterLevelExact(zapcore.WarnLevel).Len() +
		logs.FilterLevelExact(zapcore.ErrorLevel).Len(); loud != 0 {
		t.Fatalf("%d log lines at info or above for %d messages: %v", loud, n, logs.All())
	}
}
