//go:build unix

package hub

import (
	"context"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPublishManyTopics measures a publish and its delivery with
// 1,000 subscribers, each on a topic of its own and drained by its own
// goroutine, the publishes spread over the topics (per-user
// notifications), one at a time as at a paced rate: each finds the hub
// idle. Beside the time it reports the process's CPU time per publish
// (cpu-µs), which a loaded machine disturbs less.
func BenchmarkPublishManyTopics(b *testing.B) {
	const n = 1_000
	h, _ := newTestHub(b, Options{Queue: 16})
	subs := make([]*Subscriber, n)
	for i := range subs {
		subs[i] = subscribe(b, h, "user/"+strconv.Itoa(i))
	}
	var received sync.WaitGroup
	defer drainAll(subs, received.Done)()
	ctx := context.Background()
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Topic: "user/" + strconv.Itoa(i), Data: "hello"}
	}
	b.ReportAllocs()
	cpu := cpuTime()
	i := 0
	for b.Loop() {
		received.Add(1)
		if _, err := h.Publish(ctx, msgs[i%n]); err != nil {
			b.Fatal(err)
		}
		received.Wait()
		i++
	}
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
