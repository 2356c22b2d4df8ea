// Package browser_test drives the demo chat in a real headless Chromium:
// the page and pubsub.js served by a real Caddy from examples/Caddyfile, the
// browser speaking WebSocket, Server-Sent Events and long-poll to it.
package browser_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
