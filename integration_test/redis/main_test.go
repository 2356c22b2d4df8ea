// Package redis_test runs caddy-pubsub end to end on the Redis broker: real
// Caddy instances (in this process, and one built from ./cmd/caddy and run
// as a child process) sharing hubs through a redis-server the tests start
// and kill themselves.
package redis_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
