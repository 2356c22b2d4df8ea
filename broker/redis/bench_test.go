package redis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/hub/brokertest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// BenchmarkDeliveryToOtherInstance measures publish on one instance →
// delivery to a subscriber on another: two hubs, each with its own broker
// and connections, on one stream of a local redis-server.
func BenchmarkDeliveryToOtherInstance(b *testing.B) {
	srv := testserver.StartRedis(b)
	for _, inFlight := range []int{1, 8} {
		b.Run(fmt.Sprintf("in-flight=%d", inFlight), func(b *testing.B) {
			r := hub.Retention{Count: 1000}
			opts := hub.Options{Queue: max(b.N, 1024), Retention: r}
			key := streamKey()
			pub := hub.New(newBroker(b, srv.URL, key, r), opts)
			sub := hub.New(newBroker(b, srv.URL, key, r), opts)
			defer pub.Close()
			defer sub.Close()
			brokertest.BenchDelivery(b, pub, sub, inFlight)
		})
	}
}

// BenchmarkPublishReplicated measures one publish answered at once and one
// answered after a replica has it (replicas 1: WAIT in the same round
// trip), on a local master with one replica.
func BenchmarkPublishReplicated(b *testing.B) {
	master, _ := startReplicated(b)
	for _, replicas := range []int{0, 1} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			br, err := redis.New(redis.Config{URL: master.URL, Stream: streamKey(), Replicas: replicas}, hub.Retention{Count: 1000})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			if err := br.Start(func(*hub.Message) {}); err != nil {
				b.Fatal(err)
			}
			msgs := []hub.Message{{Topic: "t", Data: "x"}}
			for b.Loop() {
				if _, err := br.Publish(context.Background(), msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
