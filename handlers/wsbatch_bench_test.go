package handlers

import (
	"context"
	"io"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// BenchmarkGoroutineWebSocketBurst measures the goroutine path's writer
// sending a burst of 20 queued messages to one subscriber over loopback:
// ns/msg is the time per message; allocs/op count for the 20.
func BenchmarkGoroutineWebSocketBurst(b *testing.B) {
	const n = 20
	h := hub.New(hub.NewMemoryBroker(hub.Retention{Count: 100}), hub.Options{Queue: 100})
	b.Cleanup(func() { _ = h.Close() })
	sub, _, _, err := h.Subscribe(context.Background(), []string{"t"}, "")
	if err != nil {
		b.Fatal(err)
	}
	ep := &Endpoint{Logger: zap.NewNop(), Heartbeat: time.Hour, Hub: h}
	conns := make(chan *wsConn, 1)
	release := make(chan struct{})
	ws := serveGoroutineWS(b, ep, sub, func(c *wsConn, _ *writeLog) {
		conns <- c
		<-release
	})
	defer close(release)
	go func() { _, _ = io.Copy(io.Discard, ws.NetConn()) }()
	c := <-conns
	data := make([]string, n)
	for i := range data {
		data[i] = "message " + strconv.Itoa(i) + " of a burst, about as long as a chat line"
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for _, d := range data {
			if _, err := h.Publish(context.Background(), hub.Message{Topic: "t", Data: d}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := c.writeQueued(n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
}
