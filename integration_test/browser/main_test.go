// Package browser_test drives the demo chat in a real headless Chromium:
// the page and pubsub.js served by a real Caddy from examples/Caddyfile, the
// browser speaking WebSocket, Server-Sent Events and long-poll to it.
package browser_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// The in-process Caddy offers WebSockets over HTTP/2 to pages served over
// TLS (wsh2_test.go); the other tests' pages are http://, where nothing
// changes.
func TestMain(m *testing.M) { testserver.MainGODEBUG(m, "http2xconnect=1") }
