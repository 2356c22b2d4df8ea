// Package publish_test runs HTTP publishing end to end: who may publish
// (loopback-only anonymous publishing, publish keys, cross-origin posts,
// the server's reserved topics), the documented status and one-line
// reason for bad input, and the default topic taken from the request
// path. A real Caddy loaded from Caddyfile text in this process, real
// clients on loopback sockets.
package publish_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
