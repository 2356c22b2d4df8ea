package hooks

import (
	"sync"
	"sync/atomic"
	"time"
)

// LatencyBuckets are the upper bounds, in seconds, of the call latency
// histogram.
var LatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// stats counts a client's calls for metrics.
type stats struct {
	dropped atomic.Uint64

	mu      sync.Mutex
	calls   map[[2]string]uint64 // by hook and outcome
	buckets map[string][]uint64  // by hook: counts per LatencyBuckets, then +Inf
	sum     map[string]float64   // by hook: seconds
}

func (s *stats) observe(hook, outcome string, took time.Duration) {
	secs := took.Seconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = make(map[[2]string]uint64)
		s.buckets = make(map[string][]uint64)
		s.sum = make(map[string]float64)
	}
	s.calls[[2]string{hook, outcome}]++
	b := s.buckets[hook]
	if b == nil {
		b = make([]uint64, len(LatencyBuckets)+1)
		s.buckets[hook] = b
	}
	i := 0
	for i < len(LatencyBuckets) && secs > LatencyBuckets[i] {
		i++
	}
	b[i]++
	s.sum[hook] += secs
}

// Latency is one hook's call latency histogram.
type Latency struct {
	// Buckets counts the calls at or under each of LatencyBuckets
	// (cumulative, as Prometheus has them).
	Buckets []uint64
	Count   uint64
	Sum     float64 // seconds
}

// Stats is a snapshot of a client's counts.
type Stats struct {
	// Calls counts calls by hook and outcome: for decisions allow, deny,
	// timeout, error, invalid, busy, breaker_open or canceled; for
	// events sent, timeout, error, breaker_open or canceled (each
	// attempt).
	Calls   map[[2]string]uint64
	Latency map[string]Latency
	// Breaker is BreakerClosed, BreakerOpen or BreakerHalfOpen.
	Breaker int
	// Dropped counts events given up: their queue was full, or every
	// attempt failed.
	Dropped uint64
}

// Stats returns the client's counts.
func (c *Client) Stats() Stats {
	st := Stats{Breaker: c.breaker.state(c.now()), Dropped: c.stats.dropped.Load()}
	s := &c.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Calls = make(map[[2]string]uint64, len(s.calls))
	for k, v := range s.calls {
		st.Calls[k] = v
	}
	st.Latency = make(map[string]Latency, len(s.buckets))
	for hook, b := range s.buckets {
		l := Latency{Buckets: make([]uint64, len(LatencyBuckets)), Sum: s.sum[hook]}
		for i := range b {
			l.Count += b[i]
			if i < len(l.Buckets) {
				l.Buckets[i] = l.Count
			}
		}
		st.Latency[hook] = l
	}
	return st
}
