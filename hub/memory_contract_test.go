package hub_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/hub/brokertest"
)

// The memory broker keeps the contract every broker keeps.
func TestMemoryBrokerContract(t *testing.T) {
	brokertest.Run(t, func(_ *testing.T, r hub.Retention) hub.Broker { return hub.NewMemoryBroker(r) })
}
