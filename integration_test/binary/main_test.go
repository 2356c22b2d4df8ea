// Package binary_test runs binary messages and WebSocket compression end
// to end: binary data published over HTTP and WebSocket reaches WebSocket
// subscribers as binary frames (parked, and on the goroutine path over a
// Unix socket), SSE and long-poll subscribers as base64 marked by an
// encoding field, resumes from every broker, and permessage-deflate is
// negotiated only when asked, compresses, and refuses decompression bombs.
package binary_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
