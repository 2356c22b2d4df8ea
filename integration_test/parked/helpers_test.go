package parked_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// site has a short heartbeat and the metrics route, whose subscriber
// gauge tells when the server noticed a subscriber come or go.
const site = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
	}
	metrics /metrics
}
`

// rawStream is an SSE subscriber on a bare TCP connection: it holds no
// goroutine in the test process, so the process's goroutine count is the
// server's.
type rawStream struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialSSE subscribes over HTTP/1.1 and reads the response's headers.
func dialSSE(t testing.TB, base, query string) *rawStream {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /events%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", query, strings.TrimPrefix(base, "http://"))
	s := &rawStream{conn: conn, r: bufio.NewReaderSize(conn, 512)}
	conn.SetReadDeadline(time.Now().Add(testserver.Wait))
	resp, err := http.ReadResponse(s.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.TransferEncoding == nil {
		t.Fatalf("subscribe: %s, transfer encoding %v", resp.Status, resp.TransferEncoding)
	}
	return s
}

// chunk reads the next chunk of the response body; io.EOF after the last.
func (s *rawStream) chunk() (string, error) {
	s.conn.SetReadDeadline(time.Now().Add(testserver.Wait))
	line, err := s.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
	if err != nil {
		return "", fmt.Errorf("chunk size %q: %w", line, err)
	}
	if n == 0 {
		return "", io.EOF
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(s.r, b); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// until reads chunks until one contains want and returns everything read.
func (s *rawStream) until(t testing.TB, want string) string {
	t.Helper()
	var all strings.Builder
	for !strings.Contains(all.String(), want) {
		c, err := s.chunk()
		if err != nil {
			t.Fatalf("waiting for %q: %v after %q", want, err, all.String())
		}
		all.WriteString(c)
	}
	return all.String()
}

// expectEnd reads until the reason comment, which must be followed by the
// response's last chunk, and returns everything read.
func (s *rawStream) expectEnd(t testing.TB, reason string) string {
	t.Helper()
	got := s.until(t, reason)
	if _, err := s.chunk(); err != io.EOF {
		t.Fatalf("after %q: %v, want the last chunk", reason, err)
	}
	return got
}

// parkedSubscriber subscribes to topic, alone on the server, and returns
// once the server counts it.
func parkedSubscriber(t testing.TB, base, topic string) *rawStream {
	t.Helper()
	s := dialSSE(t, base, "?topic="+topic)
	s.until(t, "retry:")
	waitSubscribers(t, base, 1)
	return s
}

var subscribersRe = regexp.MustCompile(`(?m)^caddy_pubsub_subscribers\{hub="default",transport="sse"\} (\d+)$`)

// subscribers returns the SSE subscriber count from the metrics route.
func subscribers(t testing.TB, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := subscribersRe.FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// waitSubscribers waits until the server counts n SSE subscribers.
func waitSubscribers(t testing.TB, base string, n int) {
	t.Helper()
	testserver.Eventually(t, fmt.Sprintf("%d SSE subscribers", n), func() bool { return subscribers(t, base) == n })
}
