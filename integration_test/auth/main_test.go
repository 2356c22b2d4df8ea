// Package auth_test runs JWT authorisation and CORS end to end: a real
// Caddy loaded from Caddyfile text in this process, tokens really signed
// with HMAC, RSA and ECDSA keys made by the tests, and real SSE, WebSocket,
// long-poll and publish clients on loopback sockets.
package auth_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
