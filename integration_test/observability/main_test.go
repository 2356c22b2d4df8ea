// Package observability_test checks what operators see of caddy-pubsub:
// its Prometheus metrics on Caddy's /metrics (the metrics handler and the
// admin endpoint), the admin API's GET /pubsub/stats, presence events, and
// the logs. Each story runs a real Caddy in this process, loaded from
// Caddyfile text, with real clients on loopback sockets.
package observability_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
