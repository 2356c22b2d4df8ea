package hub_test

import (
	"fmt"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/hub/brokertest"
)

// BenchmarkMemoryDelivery measures publish → delivery to a subscriber on
// the memory broker: the baseline for the Redis broker's
// BenchmarkDeliveryToOtherInstance.
func BenchmarkMemoryDelivery(b *testing.B) {
	for _, inFlight := range []int{1, 8} {
		b.Run(fmt.Sprintf("in-flight=%d", inFlight), func(b *testing.B) {
			r := hub.Retention{Count: 1000}
			h := hub.New(hub.NewMemoryBroker(r), hub.Options{Queue: max(b.N, 1024), Retention: r})
			defer h.Close()
			brokertest.BenchDelivery(b, h, h, inFlight)
		})
	}
}
