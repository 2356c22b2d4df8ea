// Package wsh2_test runs WebSockets over HTTP/2 (RFC 8441) end to end: a
// Caddy over TLS whose HTTP/2 server offers extended CONNECT, and a client
// that opens WebSockets as streams of one connection (net/http's HTTP/2
// client sends an extended CONNECT when the request carries :protocol),
// speaking the frames of RFC 6455 itself (client_test.go).
package wsh2_test

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// xconnect is the setting under which Go's HTTP/2 server offers extended
// CONNECT. net/http reads it from the environment once, at start, and
// knows no //go:debug line for it (the go command refuses the line: an
// unknown setting), so the test binary runs itself again with it.
const xconnect = "http2xconnect=1"

func TestMain(m *testing.M) {
	if godebug := os.Getenv("GODEBUG"); !strings.Contains(godebug, xconnect) {
		if godebug != "" {
			godebug += ","
		}
		env := append(os.Environ(), "GODEBUG="+godebug+xconnect)
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, os.Args, env)
		}
		panic("running the test binary again with GODEBUG=" + xconnect + ": " + err.Error())
	}
	testserver.Main(m)
}
