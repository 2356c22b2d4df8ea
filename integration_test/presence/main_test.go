// Package presence_test checks who-is-here presence: the ?presence=1
// query, authorised like subscribing, and the join and leave events with
// identities, on one Caddy and on two sharing a Redis. Each story runs a
// real Caddy loaded from Caddyfile text, with real clients on loopback
// sockets.
package presence_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
