package redis_test

import (
	"fmt"
	"testing"

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
