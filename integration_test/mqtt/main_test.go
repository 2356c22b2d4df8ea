// Package mqtt_test runs the upstream MQTT subscription end to end: a real
// Caddy loaded from Caddyfile text in this process, a real MQTT broker on
// loopback (the embedded one always, Debian's mosquitto when installed),
// and real SSE, WebSocket and long-poll clients. Each story runs against
// every broker.
package mqtt_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
