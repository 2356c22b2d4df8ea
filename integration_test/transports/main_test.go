// Package transports_test runs the WebSocket and long-poll transports end
// to end beside SSE: a real Caddy loaded from Caddyfile text in this
// process, real clients on loopback sockets. Whatever transport a client
// uses, it gets the same messages, IDs, resume and gaps.
package transports_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
