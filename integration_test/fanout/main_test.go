// Package fanout_test checks, end to end, the fan-out machinery tuned for
// speed and memory (see BENCHMARKS.md): heartbeats from the shared wheel
// reach every stream on time, and bursts taken from the lazily grown
// subscriber queues arrive complete and in order over every transport.
package fanout_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
