// Package wsh2_test runs WebSockets over HTTP/2 (RFC 8441) end to end: a
// Caddy over TLS whose HTTP/2 server offers extended CONNECT, and a client
// that opens WebSockets as streams of one connection, speaking the frames
// of RFC 6455 itself (client_test.go).
package wsh2_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// xconnect is the setting under which Go's HTTP/2 server offers extended
// CONNECT.
const xconnect = "http2xconnect=1"

func TestMain(m *testing.M) { testserver.MainGODEBUG(m, xconnect) }
