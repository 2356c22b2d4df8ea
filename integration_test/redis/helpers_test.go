package redis_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// redisSite is a site whose pubsub endpoint at /events keeps hub in Redis
// at url. options go into the broker block.
func redisSite(url, hub, options string) string {
	return fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub %s
		heartbeat 1s
		history 100 1h
		broker redis %s {
			dial_timeout 1s
			%s
		}
	}
}
`, hub, url, options)
}

// expect reads the next events of s and checks their IDs and data.
func expect(t *testing.T, s *testserver.SSEStream, ids, data []string) {
	t.Helper()
	for i, id := range ids {
		ev := s.Next()
		if ev.Event != "" || ev.ID != id || (data != nil && ev.Data != data[i]) {
			t.Fatalf("event %d: got %+v, want id %s", i, ev, id)
		}
	}
}

// expectGap reads a gap event from s and checks what it says.
func expectGap(t *testing.T, s *testserver.SSEStream, lastID, firstID string) {
	t.Helper()
	ev := s.Next()
	var gap struct {
		LastID  string `json:"last_id"`
		FirstID string `json:"first_id"`
	}
	if ev.Event != "gap" || json.Unmarshal([]byte(ev.Data), &gap) != nil || gap.LastID != lastID || gap.FirstID != firstID {
		t.Fatalf("want gap from %s to %s, got %+v", lastID, firstID, ev)
	}
}

// expectHeartbeat waits for a heartbeat comment: the stream is alive.
func expectHeartbeat(t *testing.T, s *testserver.SSEStream) {
	t.Helper()
	for {
		ev := s.NextAny()
		if ev.IsComment && ev.Comment == "" {
			return
		}
		if !ev.IsComment {
			t.Fatalf("want a heartbeat, got %+v", ev)
		}
	}
}

// expectClosed reads s up to the comment that ends it and checks its
// reason; heartbeats before it are skipped, messages are not expected.
func expectClosed(t *testing.T, s *testserver.SSEStream, reason string) {
	t.Helper()
	for {
		ev := s.NextAny()
		switch {
		case !ev.IsComment:
			t.Fatalf("want the stream closed for %q, got %+v", reason, ev)
		case strings.HasPrefix(ev.Comment, "closed: "):
			if !strings.Contains(ev.Comment, reason) {
				t.Fatalf("stream closed with %q, want %q", ev.Comment, reason)
			}
			return
		}
	}
}

// publishWhenUp publishes once the endpoint takes publishes again (Redis
// back after an outage) and returns the ID.
func publishWhenUp(t *testing.T, endpoint, topic, data string) string {
	t.Helper()
	deadline := time.Now().Add(testserver.Wait)
	for {
		code, body, _ := testserver.Request(t, "POST", endpoint, "application/x-www-form-urlencoded",
			url.Values{"topic": {topic}, "data": {data}}.Encode(), nil)
		if code == http.StatusOK {
			var out struct{ ID string }
			if err := json.Unmarshal([]byte(body), &out); err != nil {
				t.Fatal(err)
			}
			return out.ID
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("publish after Redis came back: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastEventID(id string) http.Header { return http.Header{"Last-Event-Id": {id}} }

// startChild runs the built Caddy on site as a child process.
func startChild(t *testing.T, site string) *testserver.Child {
	t.Helper()
	return testserver.StartChild(t, site)
}
