// Package lifecycle_test checks how caddy-pubsub streams live through
// Caddy's lifecycle: a reload keeps them open and delivering, a stop ends
// them cleanly and promptly (SSE gets its last messages and the reason,
// WebSocket a 1001 close, long-polls an answer), and nothing is left
// running afterwards; a reload Caddy refuses changes nothing that runs.
// The stop and reload stories of the binary build ./cmd/caddy and drive it
// with its own CLI; the others run Caddy in this process.
package lifecycle_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
