// Package bolt_test runs caddy-pubsub end to end on the bolt broker: a real
// Caddy keeps a hub's history in a file across restarts.
package bolt_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
