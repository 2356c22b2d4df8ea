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

// startChild runs the built Caddy on site ({PORT}: a free port) and stops
// it when the test ends.
func startChild(t *testing.T, site string) *testserver.Child {
	t.Helper()
	return testserver.StartChild(t, testserver.BuildCaddy(t), "", site)
}

// redisLink is the state of hub's Redis link on the instance whose admin
// endpoint is admin: from GET /pubsub/stats, and the link's series in
// /metrics, which must agree with it.
type redisLink struct {
	Name       string `json:"name"`
	Reconnects uint64 `json:"reconnects"`
	Losses     uint64 `json:"losses"`
	Failovers  uint64 `json:"failovers"`
	Server     string `json:"server"`
	Gaps       uint64 // the hub's gaps_total
}

func linkOf(t *testing.T, admin, hub string) redisLink {
	t.Helper()
	code, body, _ := testserver.Request(t, http.MethodGet, admin+"/pubsub/stats?hub="+hub, "", "", nil)
	var answer struct {
		Hubs map[string]struct {
			Gaps  uint64
			Links []struct {
				Kind string
				redisLink
			}
		}
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &answer) != nil {
		t.Fatalf("stats: %d %s", code, body)
	}
	var l redisLink
	for _, x := range answer.Hubs[hub].Links {
		if x.Kind == "redis" {
			l = x.redisLink
		}
	}
	if l.Name == "" {
		t.Fatalf("stats of hub %s show no redis link: %s", hub, body)
	}
	l.Gaps = answer.Hubs[hub].Gaps
	labels := fmt.Sprintf(`{hub=%q,kind="redis",link=%q}`, hub, l.Name)
	testserver.Scrape(t, admin+"/metrics").Want(t, map[string]float64{
		"caddy_pubsub_link_reconnects_total" + labels:       float64(l.Reconnects),
		"caddy_pubsub_link_losses_total" + labels:           float64(l.Losses),
		"caddy_pubsub_link_failovers_total" + labels:        float64(l.Failovers),
		fmt.Sprintf(`caddy_pubsub_gaps_total{hub=%q}`, hub): float64(l.Gaps),
	})
	return l
}
