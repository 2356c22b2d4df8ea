// Package fanout_test checks, end to end, the fan-out machinery tuned for
// speed and memory (see BENCHMARKS.md): heartbeats from the shared wheel
// reach every stream on time, bursts taken from the lazily grown
// subscriber queues arrive complete and in order over every transport and
// to a thousand subscribers, a subscriber whose queue overflows is dropped
// without holding back the others, and one that goes away is released.
package fanout_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
