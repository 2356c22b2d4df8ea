package observability_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// With caddy_events, Caddy's own events reach the hub as $caddy/NAME: an
// upstream of reverse_proxy turning unhealthy, and a config started by a
// reload. They are "$" topics: without the publish key, only loopback
// clients read them.
func TestCaddyEventsAsTopics(t *testing.T) {
	var failing atomic.Bool
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer upstream.Close()
	up := upstream.Listener.Addr().(*net.TCPAddr)
	site := fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		caddy_events unhealthy started
	}
	reverse_proxy /app* 127.0.0.1:%d {
		health_uri /health
		health_interval 100ms
		health_timeout 1s
	}
}
`, up.Port)
	s := testserver.Start(t, site)
	watch := testserver.Subscribe(t, nil, s.Base+"/events?topic=%24caddy/%23&format=json", nil)

	failing.Store(true)
	ev := next(t, watch)
	if ev.Topic != "$caddy/unhealthy" || !strings.Contains(ev.Data, fmt.Sprintf(`"host":"127.0.0.1:%d"`, up.Port)) || !strings.Contains(ev.Data, `"origin":"http.handlers.reverse_proxy"`) {
		t.Fatalf("after the upstream failed: %+v", ev)
	}

	// The reloaded config's health checker finds the upstream down again
	// on its own; then the config has started.
	s.Load(site)
	for ev := next(t, watch); ev.Topic != "$caddy/started"; ev = next(t, watch) {
		if ev.Topic != "$caddy/unhealthy" {
			t.Fatalf("after a reload: %+v, want $caddy/started", ev)
		}
	}
	// A client of another site may not read them.
	code, body, _ := testserver.Request(t, "GET", s.Base+"/events?topic=%24caddy/%23", "", "", http.Header{"X-Forwarded-For": {"203.0.113.9"}, "Host": {"example.com"}})
	if code != http.StatusForbidden {
		t.Fatalf("a non-loopback client reading $caddy/#: %d %s", code, body)
	}
}

// next reads the next message event of a ?format=json stream.
func next(t *testing.T, s *testserver.SSEStream) testserver.Envelope {
	t.Helper()
	var env testserver.Envelope
	if err := json.Unmarshal([]byte(s.Next().Data), &env); err != nil {
		t.Fatal(err)
	}
	return env
}
