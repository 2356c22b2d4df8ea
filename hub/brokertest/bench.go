package brokertest

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// BenchDelivery publishes b.N messages through pub and measures how long
// each takes to reach a subscriber of sub (pub itself, or a hub on another
// instance of the same broker). inFlight publishers each publish one
// message and wait for its delivery before the next, so the latency is the
// broker's, not that of a backlog: inFlight 1 measures latency alone, more
// measure throughput under load. It reports the latency median and 99th
// percentile in microseconds and the messages delivered per second.
func BenchDelivery(b *testing.B, pub, sub *hub.Hub, inFlight int) {
	ctx := context.Background()
	s, _, _, err := sub.Subscribe(ctx, []string{"bench/#"}, "")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	n := b.N
	sent := make([]atomic.Int64, n) // publish start, Unix nanoseconds
	latencies := make([]time.Duration, 0, n)
	acks := make([]chan struct{}, inFlight) // per publisher: its message arrived
	for i := range acks {
		acks[i] = make(chan struct{}, 1)
	}
	received := make(chan struct{})
	go func() {
		defer close(received)
		for len(latencies) < n {
			m, ok := s.Next()
			if !ok {
				select {
				case <-s.Ready():
					continue
				case <-s.Done():
					b.Errorf("subscription ended: %v", s.Err())
					return
				case <-time.After(Wait):
					b.Errorf("%d of %d messages within %s", len(latencies), n, Wait)
					return
				}
			}
			p, i, ok := parseBenchData(m.Data, inFlight, n)
			if !ok {
				b.Errorf("unexpected message %q", m.Data)
				return
			}
			latencies = append(latencies, time.Duration(time.Now().UnixNano()-sent[i].Load()))
			acks[p] <- struct{}{}
		}
	}()

	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for p := range inFlight {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				sent[i].Store(time.Now().UnixNano())
				msg := hub.Message{Topic: "bench/" + strconv.Itoa(p), Data: strconv.Itoa(p) + ":" + strconv.Itoa(i)}
				if _, err := pub.Publish(ctx, msg); err != nil {
					b.Errorf("Publish: %v", err)
					return
				}
				select {
				case <-acks[p]:
				case <-received:
					return
				}
			}
		})
	}
	wg.Wait()
	<-received
	elapsed := time.Since(start)
	b.StopTimer()
	if len(latencies) < n {
		return
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[n/2])/1e3, "p50-µs")
	b.ReportMetric(float64(latencies[min(n-1, n*99/100)])/1e3, "p99-µs")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
}

// parseBenchData reads the "PUBLISHER:INDEX" data of a benchmark message.
func parseBenchData(data string, publishers, n int) (p, i int, ok bool) {
	ps, is, found := strings.Cut(data, ":")
	p, err1 := strconv.Atoi(ps)
	i, err2 := strconv.Atoi(is)
	ok = found && err1 == nil && err2 == nil && p >= 0 && p < publishers && i >= 0 && i < n
	return p, i, ok
}
