// Package integration_test runs caddy-pubsub end to end: a real Caddy,
// loaded from Caddyfile text in this process, and real HTTP clients on
// loopback sockets. The tests read as user stories and run one at a time.
package integration_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
