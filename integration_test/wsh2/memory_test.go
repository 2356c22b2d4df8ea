package wsh2_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// idleConns is how many idle WebSockets BenchmarkIdleWebSocketRSS opens.
const idleConns = 2000

// BenchmarkIdleWebSocketRSS measures the resident memory of a Caddy (a
// child process, TLS throughout) per idle WebSocket subscriber: over
// HTTP/1.1 (parked: no goroutine), over HTTP/2 as streams of shared
// connections, and over HTTP/2 each on a connection of its own, as
// browsers' pages are. Run it with
//
//	go test ./integration_test/wsh2 -run '^$' -bench IdleWebSocketRSS -benchtime 1x
func BenchmarkIdleWebSocketRSS(b *testing.B) {
	bin := testserver.BuildCaddy(b)
	cert, key, roots := testserver.SelfSigned(b)
	for _, tc := range []struct {
		name string
		dial func(b *testing.B, base string) func() // returns a reader of its first message
	}{
		{"http1.1", dialH1(roots)},
		{"http2-shared", dialShared(roots)},
		{"http2-own-conn", dialOwn(roots)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				child := testserver.StartChildEnv(b, bin, nil, "", site(cert, key, "heartbeat 5m"))
				base := strings.Replace(child.Base, "http://", "https://", 1)
				// Warm up: the first connections grow pools and buffers
				// that do not grow per connection.
				warm := newH2Client(b, roots)
				for range 50 {
					tc.dial(b, base)
				}
				warm.publish(b, base, "idle", "warm")
				before := rss(b, child.Pid())
				reads := make([]func(), idleConns)
				for i := range reads {
					reads[i] = tc.dial(b, base)
				}
				// Every subscriber is live once each has this message.
				warm.publish(b, base, "idle", "all")
				for _, read := range reads {
					read()
				}
				after := rss(b, child.Pid())
				b.ReportMetric(float64(after-before)/idleConns, "B/conn")
				child.Stop(b)
			}
		})
	}
}

// dialH1 opens WebSockets over HTTP/1.1 and TLS.
func dialH1(roots *x509.CertPool) func(*testing.B, string) func() {
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots}, HandshakeTimeout: testserver.Wait}
	return func(b *testing.B, base string) func() {
		conn, _, err := d.Dial(strings.Replace(base, "https://", "wss://", 1)+"/events?topic=idle", nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		return func() {
			if _, _, err := conn.ReadMessage(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// dialShared opens WebSockets over HTTP/2, as streams of as few
// connections as the server's stream limit allows.
func dialShared(roots *x509.CertPool) func(*testing.B, string) func() {
	var c *h2Client
	return func(b *testing.B, base string) func() {
		if c == nil {
			c = newH2Client(b, roots)
		}
		ws := dialH2(b, c, base, "?topic=idle", nil)
		return func() { ws.nextText("") }
	}
}

// dialOwn opens WebSockets over HTTP/2, each on a connection of its own.
func dialOwn(roots *x509.CertPool) func(*testing.B, string) func() {
	return func(b *testing.B, base string) func() {
		ws := dialH2(b, newH2Client(b, roots), base, "?topic=idle", nil)
		return func() { ws.nextText("") }
	}
}

// rss is process pid's resident memory, from /proc/PID/status.
func rss(b *testing.B, pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/PID/status")
	return 0
}
