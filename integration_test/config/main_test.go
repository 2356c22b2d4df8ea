// Package config_test checks how caddy-pubsub reads its configuration: the
// pubsub directive and global option in Caddyfile text (mistakes name the
// file and line), the JSON form, and hubs shared by name across sites and
// endpoints; integration_test/docs adapts the documented Caddyfiles.
// Configs that load run a real Caddy in this process with clients on
// loopback sockets.
package config_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
