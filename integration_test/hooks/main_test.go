// Package hooks_test runs the application's backend hooks end to end: a
// real Caddy loaded from Caddyfile text in this process (or several Caddy
// processes on one Redis), a real backend (an HTTP server in the test that
// checks every signature as docs/hooks.md tells a backend to), and real
// SSE, WebSocket, long-poll and publish clients on loopback sockets.
package hooks_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
