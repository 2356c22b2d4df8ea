// Package limits_test runs the endpoint's limits end to end: a real Caddy
// loaded from Caddyfile text in this process, real SSE, WebSocket and
// long-poll clients on loopback sockets. Each limit is hit and answered
// with its documented status and one-line reason.
package limits_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
