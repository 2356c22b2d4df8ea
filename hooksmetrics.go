package pubsub

// Metrics of the endpoints' hooks, reported with the hubs' (metrics.go):
// calls by hook and outcome, their latency, the breaker's state and the
// events given up. The hooks clients count; the collector reads them when
// scraped.

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-pubsub/caddy-pubsub/hooks"
)

var (
	descHookCalls = prometheus.NewDesc("caddy_pubsub_hook_calls_total",
		"Calls to the application's backend by endpoint, hook and outcome (allow, deny, timeout, error, invalid, busy, breaker_open, canceled; events: sent or the failure, per attempt).",
		[]string{"endpoint", "hook", "outcome"}, nil)
	descHookLatency = prometheus.NewDesc("caddy_pubsub_hook_duration_seconds",
		"Time a call to the application's backend took, by endpoint and hook.", []string{"endpoint", "hook"}, nil)
	descHookBreaker = prometheus.NewDesc("caddy_pubsub_hook_breaker_state",
		"The hooks circuit breaker by endpoint: 0 closed, 1 open, 2 half-open (a trial call may go).", []string{"endpoint"}, nil)
	descHookDropped = prometheus.NewDesc("caddy_pubsub_hook_events_dropped_total",
		"Hook events given up: their queue was full, or every attempt failed.", []string{"endpoint"}, nil)
)

// addHooks reports c's counts under endpoint until removeHooks.
func (c *collector) addHooks(endpoint string, client *hooks.Client) {
	c.hooksMu.Lock()
	defer c.hooksMu.Unlock()
	if c.hooks == nil {
		c.hooks = make(map[*hooks.Client]string)
	}
	c.hooks[client] = endpoint
}

func (c *collector) removeHooks(client *hooks.Client) {
	c.hooksMu.Lock()
	defer c.hooksMu.Unlock()
	delete(c.hooks, client)
}

func describeHooks(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHookCalls, descHookLatency, descHookBreaker, descHookDropped} {
		ch <- d
	}
}

// collectHooks reports every hooks client's counts. Two configs' clients
// of one endpoint (during a reload) add up, as Prometheus wants one
// series per label set.
func (c *collector) collectHooks(ch chan<- prometheus.Metric) {
	c.hooksMu.Lock()
	clients := make(map[*hooks.Client]string, len(c.hooks))
	for k, v := range c.hooks {
		clients[k] = v
	}
	c.hooksMu.Unlock()
	calls := make(map[[3]string]uint64)
	latency := make(map[[2]string]hooks.Latency)
	breaker := make(map[string]int)
	dropped := make(map[string]uint64)
	for client, ep := range clients {
		st := client.Stats()
		for k, n := range st.Calls {
			calls[[3]string{ep, k[0], k[1]}] += n
		}
		for hook, l := range st.Latency {
			sum := latency[[2]string{ep, hook}]
			if sum.Buckets == nil {
				sum.Buckets = make([]uint64, len(l.Buckets))
			}
			for i := range l.Buckets {
				sum.Buckets[i] += l.Buckets[i]
			}
			sum.Count += l.Count
			sum.Sum += l.Sum
			latency[[2]string{ep, hook}] = sum
		}
		breaker[ep] = max(breaker[ep], st.Breaker)
		dropped[ep] += st.Dropped
	}
	for k, n := range calls {
		ch <- prometheus.MustNewConstMetric(descHookCalls, prometheus.CounterValue, float64(n), k[0], k[1], k[2])
	}
	for k, l := range latency {
		buckets := make(map[float64]uint64, len(l.Buckets))
		for i, b := range hooks.LatencyBuckets {
			buckets[b] = l.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(descHookLatency, l.Count, l.Sum, buckets, k[0], k[1])
	}
	for ep, s := range breaker {
		ch <- prometheus.MustNewConstMetric(descHookBreaker, prometheus.GaugeValue, float64(s), ep)
	}
	for ep, n := range dropped {
		ch <- prometheus.MustNewConstMetric(descHookDropped, prometheus.CounterValue, float64(n), ep)
	}
}
