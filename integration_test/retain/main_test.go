// Package retain_test runs retention rules end to end: a real Caddy loaded
// from Caddyfile text, real SSE subscribers and publishers on loopback.
// `retain metrics/+ 1` is a last-value cache beside the hub's history, a
// resume that missed a superseded value is told so with a gap, and a rule
// is refused where it cannot be kept.
package retain_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
