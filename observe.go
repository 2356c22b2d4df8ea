package pubsub

// Observability: what one config's hubs report to Prometheus (Caddy's
// metrics registry, so /metrics shows them), to the admin API
// (GET /pubsub/stats) and to the logs. The hubs count with atomics; the
// collector reads them when scraped, so fan-out does no Prometheus call.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/handlers"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/mqtt"
)

func init() {
	caddy.RegisterModule(AdminStats{})
}

// catalogue is what one config's hubs are: their names, brokers and
// upstream links. Handlers fill it when provisioned.
type catalogue struct {
	mu   sync.Mutex
	hubs map[string]*observedHub
}

// observedHub is a hub as one config defines it.
type observedHub struct {
	name   string
	hub    *hub.Hub
	broker string                      // broker kind
	links  map[string]hub.LinkReporter // upstream MQTT links by pool key
}

// add records hub hb under name, with the upstream links of one handler.
func (c *catalogue) add(name string, hb *hub.Hub, broker string, links map[string]hub.LinkReporter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hubs == nil {
		c.hubs = make(map[string]*observedHub)
	}
	oh := c.hubs[name]
	if oh == nil {
		oh = &observedHub{name: name, hub: hb, broker: broker, links: make(map[string]hub.LinkReporter)}
		c.hubs[name] = oh
	}
	for k, l := range links {
		oh.links[k] = l
	}
}

// list returns the hubs sorted by name, with their links sorted by name.
func (c *catalogue) list() []hubView {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]hubView, 0, len(c.hubs))
	for _, oh := range c.hubs {
		v := hubView{name: oh.name, hub: oh.hub, broker: oh.broker}
		if st, ok := oh.hub.BrokerLink(); ok {
			v.links = append(v.links, st)
		}
		for _, l := range oh.links {
			v.links = append(v.links, l.LinkState())
		}
		slices.SortFunc(v.links, func(a, b hub.LinkState) int { return cmp.Compare(a.Kind+a.Name, b.Kind+b.Name) })
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b hubView) int { return cmp.Compare(a.name, b.name) })
	return out
}

// hubView is a hub with its link states, read at one moment.
type hubView struct {
	name   string
	hub    *hub.Hub
	broker string
	links  []hub.LinkState
}

// mqttLinkState shows an MQTT link as a hub.LinkReporter.
type mqttLinkState struct{ link *mqtt.Link }

func (m mqttLinkState) LinkState() hub.LinkState {
	st := m.link.State()
	return hub.LinkState{
		Kind:       "mqtt",
		Name:       m.link.Session(),
		Status:     string(st.Status),
		Up:         st.Status == mqtt.StatusConnected,
		Since:      st.Since,
		Reconnects: st.Connects - min(st.Connects, 1),
		LastError:  st.LastError,
	}
}

// observe registers the metrics collector of the app's catalogue in the
// config's registry (or takes the one another handler of the config
// registered).
func (h *Handler) observe(ctx caddy.Context, app *App) error {
	c := newCollector(&app.obs)
	if err := ctx.GetMetricsRegistry().Register(c); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if !errors.As(err, &dup) {
			return fmt.Errorf("registering pubsub metrics: %w", err)
		}
		existing, ok := dup.ExistingCollector.(*collector)
		if !ok {
			return fmt.Errorf("registering pubsub metrics: another collector has their names: %w", err)
		}
		c = existing
	}
	h.metrics = c
	return nil
}

// Metric descriptions. Every metric has the hub label.
var (
	descSubscribers = prometheus.NewDesc("caddy_pubsub_subscribers",
		"Current subscribers by hub and transport (sse, ws, poll).", []string{"hub", "transport"}, nil)
	descPublished = prometheus.NewDesc("caddy_pubsub_messages_published_total",
		"Messages published into the hub by this instance (HTTP, WebSocket, MQTT, presence).", []string{"hub"}, nil)
	descDelivered = prometheus.NewDesc("caddy_pubsub_messages_delivered_total",
		"Messages queued for subscribers by the fan-out, one per subscriber (replays from history not counted).", []string{"hub"}, nil)
	descDropped = prometheus.NewDesc("caddy_pubsub_messages_dropped_total",
		"Messages slow consumers never got: the one that overflowed their queue and those still queued.", []string{"hub"}, nil)
	descSlow = prometheus.NewDesc("caddy_pubsub_slow_consumer_disconnects_total",
		"Subscribers disconnected because their queue overflowed.", []string{"hub"}, nil)
	descHistory = prometheus.NewDesc("caddy_pubsub_history_messages",
		"Messages retained for resume (brokers that report it cheaply: memory).", []string{"hub"}, nil)
	descPresenceDropped = prometheus.NewDesc("caddy_pubsub_presence_events_dropped_total",
		"Presence events lost because their queue was full or the broker refused them.", []string{"hub"}, nil)
	descLinkUp = prometheus.NewDesc("caddy_pubsub_link_up",
		"1 while the link to an outside server (kind mqtt or redis) is connected, else 0.", []string{"hub", "kind", "link"}, nil)
	descLinkReconnects = prometheus.NewDesc("caddy_pubsub_link_reconnects_total",
		"Connections the link made after its first.", []string{"hub", "kind", "link"}, nil)
)

// transports are always reported, so their series exist at zero.
var transports = handlers.Transports()

// collector reports one config's hubs to Prometheus when scraped, and
// holds the publish latency histogram.
type collector struct {
	cat     *catalogue
	publish *prometheus.HistogramVec
}

func newCollector(cat *catalogue) *collector {
	return &collector{
		cat: cat,
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caddy_pubsub_publish_duration_seconds",
			Help:    "Time from an HTTP publish request reaching the handler to the broker accepting its messages.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"hub"}),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSubscribers, descPublished, descDelivered, descDropped, descSlow,
		descHistory, descPresenceDropped, descLinkUp, descLinkReconnects} {
		ch <- d
	}
	c.publish.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, v := range c.cat.list() {
		st := v.hub.Stats()
		for _, t := range transports {
			gauge(descSubscribers, float64(st.Transports[t]), v.name, t)
		}
		for t, n := range st.Transports {
			if !slices.Contains(transports, t) {
				gauge(descSubscribers, float64(n), v.name, t)
			}
		}
		counter(descPublished, st.Published, v.name)
		counter(descDelivered, st.Delivered, v.name)
		counter(descDropped, st.Dropped, v.name)
		counter(descSlow, st.SlowConsumers, v.name)
		counter(descPresenceDropped, st.PresenceDropped, v.name)
		if r, ok := v.hub.Retained(); ok {
			gauge(descHistory, float64(r.Messages), v.name)
		}
		for _, l := range v.links {
			up := 0.0
			if l.Up {
				up = 1
			}
			gauge(descLinkUp, up, v.name, l.Kind, l.Name)
			counter(descLinkReconnects, l.Reconnects, v.name, l.Kind, l.Name)
		}
	}
	c.publish.Collect(ch)
}

// publish serves a publish request and, when the broker accepted it,
// observes how long that took.
func (h *Handler) publish(w http.ResponseWriter, r *http.Request, rq handlers.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	h.endpoint.Publish(rec, r, rq)
	if rec.status == http.StatusOK && h.metrics != nil {
		h.metrics.publish.WithLabelValues(h.Hub).Observe(time.Since(start).Seconds())
	}
}

// statusRecorder notes the status of a response.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// running is the app of the config Caddy runs, for the admin API.
var running atomic.Pointer[App]

// started makes a the running app and logs its hubs.
func (a *App) started() {
	running.Store(a)
	for _, v := range a.obs.list() {
		st := v.hub.Stats()
		a.logger.Info("pubsub hub ready",
			zap.String("hub", v.name),
			zap.String("broker", v.broker),
			zap.Int("subscribers", st.Subscribers),
			zap.Int("queue", st.Options.Queue),
			zap.Int("history_count", st.Options.Retention.Count),
			zap.Duration("history_age", st.Options.Retention.MaxAge),
			zap.Bool("presence", st.Options.Presence),
			zap.Int("mqtt_links", len(v.links)))
	}
}

// stopped forgets a unless a newer config's app runs.
func (a *App) stopped() { running.CompareAndSwap(a, nil) }

// logShutdown logs, per hub, the streams a stop is about to end.
func (a *App) logShutdown() {
	for _, v := range a.obs.list() {
		a.logger.Info("server stopping: ending pubsub streams",
			zap.String("hub", v.name), zap.Int("subscribers", v.hub.Subscribers()))
	}
}

// AdminStats serves GET /pubsub/stats on Caddy's admin API: a JSON view of
// every hub of the running config. See the README's "Operations" section.
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
	return []caddy.AdminRoute{{Pattern: "/pubsub/stats", Handler: caddy.AdminHandlerFunc(serveStats)}}
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
		LastError  string    `json:"last_error,omitempty"`
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
			q.After = out.History.LastID
		}
		cancel()
	}
	for i, l := range v.links {
		out.Links[i] = statsLink(l)
	}
	return out
}

// Interface guards
var (
	_ caddy.AdminRouter    = AdminStats{}
	_ prometheus.Collector = (*collector)(nil)
	_ hub.LinkReporter     = mqttLinkState{}
)
