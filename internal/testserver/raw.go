package testserver

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// RawSSE opens an SSE subscription to endpoint with query on a raw TCP
// connection and returns it once the headers came, so a test can drop it
// without a word (Vanish): a client that vanishes.
func RawSSE(t testing.TB, endpoint, query string) *net.TCPConn {
	t.Helper()
	host := strings.TrimPrefix(endpoint, "http://")
	host, path, _ := strings.Cut(host, "/")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /%s?%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, query, host)
	_ = conn.SetReadDeadline(time.Now().Add(Wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("raw SSE: %d", resp.StatusCode)
	}
	return conn.(*net.TCPConn)
}

// Vanish drops conn with a reset, as a client whose machine went away.
func Vanish(conn *net.TCPConn) {
	_ = conn.SetLinger(0)
	_ = conn.Close()
}
