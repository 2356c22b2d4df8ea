package hub

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkMatch measures Match on filters of the usual shapes.
func BenchmarkMatch(b *testing.B) {
	for _, bc := range []struct{ filter, topic string }{
		{"chat/room42", "chat/room42"},
		{"chat/+/messages", "chat/room42/messages"},
		{"sensors/#", "sensors/kitchen/temp/celsius"},
		{"chat/+/messages", "news/today"},
	} {
		b.Run(bc.filter+"~"+bc.topic, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Match(bc.filter, bc.topic)
			}
		})
	}
}

// drainAll starts a goroutine per subscriber that takes its messages as a
// transport's writer would, calling got for each; stop ends them.
func drainAll(subs []*Subscriber, got func()) (stop func()) {
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch [8]*Message
			// Ready also fires when the subscription ends.
			for range s.Ready() {
				for msgs := s.Take(batch[:0]); len(msgs) > 0; msgs = s.Take(batch[:0]) {
					for range msgs {
						got()
					}
				}
				select {
				case <-s.Done():
					return
				default:
				}
			}
		}()
	}
	return func() {
		for _, s := range subs {
			s.Close()
		}
		wg.Wait()
	}
}

// BenchmarkPublishLatency measures how long Publish takes with n
// subscribers, each drained by its own goroutine, and reports, beside it,
// how long until every subscriber had the message (fanout-µs).
func BenchmarkPublishLatency(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h, _ := newTestHub(b, Options{Queue: 16})
			subs := make([]*Subscriber, n)
			for i := range subs {
				subs[i] = subscribe(b, h, "room/+/messages")
			}
			var received sync.WaitGroup
			defer drainAll(subs, received.Done)()
			ctx := context.Background()
			msg := Message{Topic: "room/42/messages", Data: "hello"}
			var publishing, all time.Duration
			b.ReportAllocs()
			for b.Loop() {
				received.Add(n)
				start := time.Now()
				if _, err := h.Publish(ctx, msg); err != nil {
					b.Fatal(err)
				}
				publishing += time.Since(start)
				received.Wait()
				all += time.Since(start)
			}
			b.ReportMetric(float64(publishing.Microseconds())/float64(b.N), "publish-µs")
			b.ReportMetric(float64(all.Microseconds())/float64(b.N), "fanout-µs")
		})
	}
}

// BenchmarkPublishParallel measures publish throughput into one hub from 8
// goroutines per CPU, with one subscriber on the topic taking everything.
func BenchmarkPublishParallel(b *testing.B) {
	h, _ := newTestHub(b, Options{Queue: 1 << 20})
	sub := subscribe(b, h, "bench/+")
	var got atomic.Int64
	defer drainAll([]*Subscriber{sub}, func() { got.Add(1) })()
	ctx := context.Background()
	b.SetParallelism(8)
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		msg := Message{Topic: "bench/x", Data: "0123456789012345678901234567890123456789"}
		for pb.Next() {
			if _, err := h.Publish(ctx, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
