// Package transports_test runs the SSE, WebSocket and long-poll transports
// end to end: a real Caddy loaded from Caddyfile text in this process, real
// clients on loopback sockets. Whatever transport a client uses, it gets
// the same messages, IDs, resume and gaps; SSE keeps its framing behind
// encode and over HTTP/2, and history keeps what it is configured to.
package transports_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
