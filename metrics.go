package pubsub

// Metrics: what one config's hubs report to Prometheus (Caddy's metrics
// registry, so /metrics shows them). The hubs count with atomics; the
// collector reads them when scraped, so fan-out makes no Prometheus call.
// Publish latency is observed around each HTTP publish.

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-pubsub/caddy-pubsub/handlers"
	"github.com/caddy-pubsub/caddy-pubsub/hooks"
)

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
	descRefused = prometheus.NewDesc("caddy_pubsub_messages_refused_total",
		"Messages of publishes refused for back-pressure: reason overloaded (delivery stayed behind past publish_wait) or rate_limited (over publish_rate).", []string{"hub", "reason"}, nil)
	descOccupancyLost = prometheus.NewDesc("caddy_pubsub_occupancy_lost_total",
		"Changes of which topics have subscribers that the broker shared by instances did not record (for hooks).", []string{"hub"}, nil)
	descLinkUp = prometheus.NewDesc("caddy_pubsub_link_up",
		"1 while the link to an outside server (kind mqtt or redis) is connected, else 0.", []string{"hub", "kind", "link"}, nil)
	descLinkReconnects = prometheus.NewDesc("caddy_pubsub_link_reconnects_total",
		"Connections the link made after its first.", []string{"hub", "kind", "link"}, nil)
	descLinkLosses = prometheus.NewDesc("caddy_pubsub_link_losses_total",
		"Times the server was found to have lost messages it had acknowledged (a failover, a restart without persistence); clients were told with a gap.", []string{"hub", "kind", "link"}, nil)
	descLinkFailovers = prometheus.NewDesc("caddy_pubsub_link_failovers_total",
		"Times the link found the data on another server than before: Sentinel promoted a replica, a cluster moved the slot (reconnects to the same server not counted).", []string{"hub", "kind", "link"}, nil)
	descGaps = prometheus.NewDesc("caddy_pubsub_gaps_total",
		"Gaps told to resuming subscribers: resumes that missed messages the history no longer holds.", []string{"hub"}, nil)
	descMQTTLeader = prometheus.NewDesc("caddy_pubsub_mqtt_link_leader",
		"1 while this instance holds the MQTT link (the one instance sharing the hub that connects upstream), else 0.", []string{"hub", "link"}, nil)
	descMQTTAcquired = prometheus.NewDesc("caddy_pubsub_mqtt_lease_acquisitions_total",
		"Times this instance took the MQTT link's lease (hubs on a shared broker).", []string{"hub", "link"}, nil)
	descMQTTLost = prometheus.NewDesc("caddy_pubsub_mqtt_lease_losses_total",
		"Times this instance lost the MQTT link's lease without releasing it: not renewed in time, taken over, a publish refused for its fencing token.", []string{"hub", "link"}, nil)
)

// transports are always reported, so their series exist at zero.
var transports = handlers.Transports()

// collector reports one config's hubs to Prometheus when scraped, and
// holds the publish latency histogram.
type collector struct {
	cat     *catalogue
	publish *prometheus.HistogramVec

	hooksMu sync.Mutex
	hooks   map[*hooks.Client]string // the endpoints' hooks clients by endpoint (hooksmetrics.go)
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
		descHistory, descPresenceDropped, descOccupancyLost, descRefused, descLinkUp, descLinkReconnects, descLinkLosses,
		descLinkFailovers, descGaps, descMQTTLeader, descMQTTAcquired, descMQTTLost} {
		ch <- d
	}
	c.publish.Describe(ch)
	describeHooks(ch)
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
		counter(descOccupancyLost, st.OccupancyLost, v.name)
		counter(descRefused, st.Overloaded, v.name, "overloaded")
		counter(descRefused, st.RateLimited, v.name, "rate_limited")
		counter(descGaps, st.Gaps, v.name)
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
			counter(descLinkLosses, l.Losses, v.name, l.Kind, l.Name)
			if l.Kind == "redis" {
				counter(descLinkFailovers, l.Failovers, v.name, l.Kind, l.Name)
			}
			if l.mqtt != nil {
				leader := 0.0
				if l.mqtt.Lease.Holding {
					leader = 1
				}
				gauge(descMQTTLeader, leader, v.name, l.Name)
				counter(descMQTTAcquired, l.mqtt.Lease.Acquired, v.name, l.Name)
				counter(descMQTTLost, l.mqtt.Lease.Lost, v.name, l.Name)
			}
		}
	}
	c.publish.Collect(ch)
	c.collectHooks(ch)
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

// Interface guard
var _ prometheus.Collector = (*collector)(nil)
