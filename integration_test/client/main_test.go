// Package client_test checks the JavaScript client package and the
// pubsub_client handler that serves it: the files Caddy serves and how,
// and the client's node test suite (client/test) run against a real Caddy.
// The browser side is in integration_test/browser.
package client_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
