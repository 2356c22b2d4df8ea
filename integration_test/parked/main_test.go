// Package parked_test covers SSE streams handed off to the parked core
// (package park) over HTTP/1.1 on Linux: idle subscribers hold no
// goroutine, yet get messages and heartbeats, slow and vanished peers are
// dropped, a stop or a reload that drops their hub ends them with the
// reason, and HTTP/2 streams keep the goroutine path.
package parked_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
