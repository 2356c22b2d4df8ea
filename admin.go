package pubsub

// The admin API: GET /pubsub/stats on Caddy's admin endpoint, a JSON view
// of every hub of the running config.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/mqtt"
)

func init() {
	caddy.RegisterModule(AdminStats{})
}

// running is the app of the config Caddy runs, for the admin API.
var running atomic.Pointer[App]

// AdminStats serves the pubsub routes of Caddy's admin API: GET
// /pubsub/stats, a JSON view of every hub of the running config, and the
// control routes of admincontrol.go. See docs/operations.md.
type AdminStats struct{}

// CaddyModule returns the Caddy module information.
func (AdminStats) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.pubsub",
		New: func() caddy.Module { return new(AdminStats) },
	}
}

// Routes implements caddy.AdminRouter.
func (AdminStats) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/pubsub/stats", Handler: caddy.AdminHandlerFunc(serveStats)},
		{Pattern: "/pubsub/publish", Handler: caddy.AdminHandlerFunc(servePublish)},
		{Pattern: "/pubsub/disconnect", Handler: caddy.AdminHandlerFunc(serveDisconnect)},
	}
}

// Limits of the stats view.
const (
	// statsFilters caps the filters listed per hub, most subscribed first.
	statsFilters = 1000
	// statsTimeout bounds reading a broker's history for its size.
	statsTimeout = 2 * time.Second
)

// Stats JSON, documented in the README.
type (
	statsAnswer struct {
		Hubs map[string]statsHub `json:"hubs"`
	}
	statsHub struct {
		Broker        string         `json:"broker"`
		Subscribers   int            `json:"subscribers"`
		Transports    map[string]int `json:"transports"`
		Filters       []statsFilter  `json:"filters"`
		FiltersTotal  int            `json:"filters_total"`
		Published     uint64         `json:"published"`
		Delivered     uint64         `json:"delivered"`
		Dropped       uint64         `json:"dropped"`
		SlowConsumers uint64         `json:"slow_consumers"`
		Gaps          uint64         `json:"gaps"`
		Queue         int            `json:"queue"`
		History       statsHistory   `json:"history"`
		Presence      statsPresence  `json:"presence"`
		Links         []statsLink    `json:"links"`
	}
	statsFilter struct {
		Filter      string `json:"filter"`
		Subscribers int    `json:"subscribers"`
	}
	statsHistory struct {
		Limit    int    `json:"limit"`
		MaxAge   string `json:"max_age,omitempty"`
		Messages int    `json:"messages"`
		FirstID  string `json:"first_id"`
		LastID   string `json:"last_id"`
		Error    string `json:"error,omitempty"`
	}
	statsPresence struct {
		Enabled bool   `json:"enabled"`
		Dropped uint64 `json:"dropped"`
	}
	statsLink struct {
		Kind       string    `json:"kind"`
		Name       string    `json:"name"`
		Status     string    `json:"status"`
		Up         bool      `json:"up"`
		Since      time.Time `json:"since"`
		Reconnects uint64    `json:"reconnects"`
		Losses     uint64    `json:"losses"`
		LastError  string    `json:"last_error,omitempty"`
		// Redis links only: failovers seen and the server that holds
		// the data now.
		Failovers *uint64 `json:"failovers,omitempty"`
		Server    string  `json:"server,omitempty"`
		// MQTT links only: messages received again (DUP) and who holds
		// the link.
		Redelivered *uint64          `json:"redelivered,omitempty"`
		Lease       *mqtt.LeaseState `json:"lease,omitempty"`
	}
)

func serveStats(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use GET")}
	}
	answer := statsAnswer{Hubs: make(map[string]statsHub)}
	if a := running.Load(); a != nil {
		for _, v := range a.obs.list() {
			answer.Hubs[v.name] = hubStats(r.Context(), v)
		}
	}
	if name := r.URL.Query().Get("hub"); name != "" {
		one, ok := answer.Hubs[name]
		if !ok {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no hub %q in the running config", name)}
		}
		answer.Hubs = map[string]statsHub{name: one}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(answer)
}

func hubStats(ctx context.Context, v hubView) statsHub {
	st := v.hub.Stats()
	filters, total := v.hub.Filters(statsFilters)
	out := statsHub{
		Broker:        v.broker,
		Subscribers:   st.Subscribers,
		Transports:    st.Transports,
		Filters:       make([]statsFilter, len(filters)),
		FiltersTotal:  total,
		Published:     st.Published,
		Delivered:     st.Delivered,
		Dropped:       st.Dropped,
		SlowConsumers: st.SlowConsumers,
		Gaps:          st.Gaps,
		Queue:         st.Options.Queue,
		History:       statsHistory{Limit: st.Options.Retention.Count},
		Presence:      statsPresence{Enabled: st.Options.Presence, Dropped: st.PresenceDropped},
		Links:         make([]statsLink, len(v.links)),
	}
	for i, f := range filters {
		out.Filters[i] = statsFilter(f)
	}
	if age := st.Options.Retention.MaxAge; age > 0 {
		out.History.MaxAge = age.String()
	}
	if r, ok := v.hub.Retained(); ok {
		out.History.Messages, out.History.FirstID, out.History.LastID = r.Messages, r.FirstID, r.LastID
	} else {
		// Other brokers: page through what a resume from the start would
		// get.
		ctx, cancel := context.WithTimeout(ctx, statsTimeout)
		q := hub.Query{After: hub.Earliest, Upto: st.Head}
		for {
			page, err := v.hub.History(ctx, q)
			if err != nil {
				out.History.Error = err.Error()
				break
			}
			if n := len(page.Messages); n > 0 {
				if out.History.FirstID == "" {
					out.History.FirstID = page.Messages[0].ID
				}
				out.History.Messages += n
				out.History.LastID = page.Messages[n-1].ID
			}
			if !page.More {
				break
			}
			q.Next(page)
		}
		cancel()
	}
	for i, l := range v.links {
		out.Links[i] = statsLink{Kind: l.Kind, Name: l.Name, Status: l.Status, Up: l.Up, Since: l.Since,
			Reconnects: l.Reconnects, Losses: l.Losses, LastError: l.LastError}
		if l.Kind == "redis" {
			out.Links[i].Failovers, out.Links[i].Server = &l.Failovers, l.Server
		}
		if l.mqtt != nil {
			out.Links[i].Redelivered, out.Links[i].Lease = &l.mqtt.Redelivered, &l.mqtt.Lease
		}
	}
	return out
}

// Interface guard
var _ caddy.AdminRouter = AdminStats{}
