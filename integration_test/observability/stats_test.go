package observability_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// hubStats is one hub in GET /pubsub/stats, as the README documents it.
type hubStats struct {
	Broker      string         `json:"broker"`
	Subscribers int            `json:"subscribers"`
	Transports  map[string]int `json:"transports"`
	Filters     []struct {
		Filter      string `json:"filter"`
		Subscribers int    `json:"subscribers"`
	} `json:"filters"`
	FiltersTotal  int    `json:"filters_total"`
	Published     uint64 `json:"published"`
	Delivered     uint64 `json:"delivered"`
	Dropped       uint64 `json:"dropped"`
	SlowConsumers uint64 `json:"slow_consumers"`
	Queue         int    `json:"queue"`
	History       struct {
		Limit    int    `json:"limit"`
		MaxAge   string `json:"max_age"`
		Messages int    `json:"messages"`
		FirstID  string `json:"first_id"`
		LastID   string `json:"last_id"`
	} `json:"history"`
	Presence struct {
		Enabled bool   `json:"enabled"`
		Dropped uint64 `json:"dropped"`
	} `json:"presence"`
	Links []struct {
		Kind       string    `json:"kind"`
		Name       string    `json:"name"`
		Status     string    `json:"status"`
		Up         bool      `json:"up"`
		Since      time.Time `json:"since"`
		Reconnects uint64    `json:"reconnects"`
	} `json:"links"`
}

// stats returns the hubs of GET /pubsub/stats on s's admin endpoint.
func stats(t *testing.T, s *server) map[string]hubStats {
	t.Helper()
	code, body := get(t, s.Admin+"/pubsub/stats", nil)
	if code != http.StatusOK {
		t.Fatalf("stats: %d %s", code, body)
	}
	var answer struct{ Hubs map[string]hubStats }
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatalf("stats %q: %v", body, err)
	}
	return answer.Hubs
}

// The admin API's stats show each hub's subscribers by transport and by
// filter, its counters, its settings and its history.
func TestAdminStats(t *testing.T) {
	s := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub main
		queue 16
		history 100 1h
		heartbeat 30s
	}
	pubsub /other* {
		hub other
		presence
	}
}
`)
	ep := s.Base + "/events"
	testserver.Subscribe(t, nil, ep+"?topic=news/%23", nil)
	ws := testserver.DialWS(t, ep+"?topic=news/%23&topic=alerts", nil)
	poll := testserver.StartPoll(ep, "", "alerts")
	testserver.Eventually(t, "three subscribers", func() bool { return stats(t, s)["main"].Subscribers == 3 })

	first := testserver.Publish(t, ep, url.Values{"topic": {"news/a"}, "data": {"1"}})
	last := testserver.Publish(t, ep, url.Values{"topic": {"news/b"}, "data": {"2"}})
	ws.NextOf("message")
	ws.NextOf("message")

	st := stats(t, s)["main"]
	var filters []string
	for _, f := range st.Filters {
		filters = append(filters, f.Filter+"="+strings.Repeat("|", f.Subscribers))
	}
	switch {
	case st.Broker != "memory" || st.Subscribers != 3 || st.Transports["sse"] != 1 || st.Transports["ws"] != 1 || st.Transports["poll"] != 1:
		t.Errorf("subscribers: %+v", st)
	case !slices.Equal(filters, []string{"alerts=||", "news/#=||"}) || st.FiltersTotal != 2:
		t.Errorf("filters %v (%d)", filters, st.FiltersTotal)
	case st.Published != 2 || st.Delivered != 4 || st.Dropped != 0 || st.SlowConsumers != 0:
		t.Errorf("counters: %+v", st)
	case st.Queue != 16 || st.History.Limit != 100 || st.History.MaxAge != "1h0m0s":
		t.Errorf("settings: queue %d, history %+v", st.Queue, st.History)
	case st.History.Messages != 2 || st.History.FirstID != first || st.History.LastID != last:
		t.Errorf("history %+v, want 2 messages from %s to %s", st.History, first, last)
	case st.Presence.Enabled || len(st.Links) != 0:
		t.Errorf("presence %+v, links %+v", st.Presence, st.Links)
	}
	if other := stats(t, s)["other"]; !other.Presence.Enabled || other.Subscribers != 0 || other.History.Limit != 1000 {
		t.Errorf("hub other: %+v", other)
	}

	// One hub by name; unknown hubs and other methods are refused.
	code, body := get(t, s.Admin+"/pubsub/stats?hub=other", nil)
	if code != http.StatusOK || strings.Contains(body, `"main"`) || !strings.Contains(body, `"other"`) {
		t.Errorf("?hub=other: %d %s", code, body)
	}
	if code, body := get(t, s.Admin+"/pubsub/stats?hub=nope", nil); code != http.StatusNotFound {
		t.Errorf("?hub=nope: %d %s", code, body)
	}
	if code, _, _ := testserver.Request(t, http.MethodPost, s.Admin+"/pubsub/stats", "", "", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", code)
	}
	id := testserver.Publish(t, ep, url.Values{"topic": {"alerts"}, "data": {"3"}})
	if a := poll.Wait(t); len(a.Messages) != 1 || a.Messages[0].ID != id {
		t.Errorf("long-poll on alerts answered %+v", a)
	}
}
