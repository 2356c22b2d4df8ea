package parked_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

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

// dialSSE subscribes over HTTP/1.1 and reads the response's headers; an
// https:// base is reached over TLS (tlsSite).
func dialSSE(t testing.TB, base, query string) *rawStream {
	t.Helper()
	conn, r, resp := openRequest(t, base, "/events"+query, "Accept: text/event-stream\r\n")
	s := &rawStream{conn: conn, r: r}
	if resp.StatusCode != http.StatusOK || resp.TransferEncoding == nil {
		t.Fatalf("subscribe: %s, transfer encoding %v", resp.Status, resp.TransferEncoding)
	}
	return s
}

// openRequest sends GET path with the header lines to base, over TLS when
// it is https://, on a connection of its own, and reads the response's
// head; the connection is closed when the test ends.
func openRequest(t testing.TB, base, path, header string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	host := strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
	var conn net.Conn
	var err error
	if strings.HasPrefix(base, "https://") {
		conn, err = tls.Dial("tcp", host, testCert(t).client)
	} else {
		conn, err = net.Dial("tcp", host)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", path, host, header)
	r := bufio.NewReaderSize(conn, 512)
	conn.SetReadDeadline(time.Now().Add(testserver.Wait))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, r, resp
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

var subscribersRe = regexp.MustCompile(`(?m)^caddy_pubsub_subscribers\{hub="default",transport="(\w+)"\} (\d+)$`)

// subscribers returns the SSE subscriber count from the metrics route.
func subscribers(t testing.TB, base string) int { return subscribersOf(t, base, "sse") }

// subscribersOf returns the subscriber count of a transport from the
// metrics route.
func subscribersOf(t testing.TB, base, transport string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, m := range subscribersRe.FindAllSubmatch(b, -1) {
		if string(m[1]) == transport {
			n, _ := strconv.Atoi(string(m[2]))
			return n
		}
	}
	return 0
}

// waitSubscribers waits until the server counts n SSE subscribers.
func waitSubscribers(t testing.TB, base string, n int) { waitSubscribersOf(t, base, "sse", n) }

// waitSubscribersOf waits until the server counts n subscribers of a
// transport.
func waitSubscribersOf(t testing.TB, base, transport string, n int) {
	t.Helper()
	testserver.Eventually(t, fmt.Sprintf("%d %s subscribers", n, transport), func() bool { return subscribersOf(t, base, transport) == n })
}

// dialWS opens a WebSocket that nothing reads in the background: the test
// reads it with readWS, and the process's goroutine count is the server's.
func dialWS(t testing.TB, base, query string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: testserver.Wait}
	if strings.HasPrefix(base, "https://") {
		d.TLSClientConfig = testCert(t).client
	}
	u := strings.Replace(strings.Replace(base, "https://", "wss://", 1), "http://", "ws://", 1)
	c, _, err := d.Dial(u+"/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readWS returns the next text frame (answering pings on the way), or the
// error that ended the connection: a *websocket.CloseError when the
// server sent a close frame.
func readWS(c *websocket.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(testserver.Wait))
	_, b, err := c.ReadMessage()
	return string(b), err
}

// rawFrame is a client's frame, masked, as a test writes it byte by byte.
func rawFrame(final bool, op int, payload string) []byte {
	b0 := byte(op)
	if final {
		b0 |= 0x80
	}
	key := [4]byte{1, 2, 3, 4}
	var b []byte
	switch n := len(payload); {
	case n < 126:
		b = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		b = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		b = []byte{b0, 0x80 | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	b = append(b, key[:]...)
	for i := range len(payload) {
		b = append(b, payload[i]^key[i%4])
	}
	return b
}

// rawWS is a WebSocket client on a bare TCP connection, for frames no
// client library would send.
type rawWS struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialRawWS makes the handshake for path and returns once it is answered;
// an https:// base is reached over TLS.
func dialRawWS(t testing.TB, base, path string) *rawWS {
	t.Helper()
	conn, r, resp := openRequest(t, base, path, "Upgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	w := &rawWS{conn: conn, r: r}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return w
}

// next reads the server's next frame; io.EOF when the server closed.
func (w *rawWS) next() (op int, payload string, err error) {
	w.conn.SetReadDeadline(time.Now().Add(testserver.Wait))
	var h [2]byte
	if _, err := io.ReadFull(w.r, h[:]); err != nil {
		return 0, "", err
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		return 0, "", fmt.Errorf("server frame %x: fragmented or masked", h)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126, 127:
		ext := make([]byte, map[int]int{126: 2, 127: 8}[n])
		if _, err := io.ReadFull(w.r, ext); err != nil {
			return 0, "", err
		}
		n = 0
		for _, b := range ext {
			n = n<<8 | int(b)
		}
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(w.r, b); err != nil {
		return 0, "", err
	}
	return int(h[0] & 0x0f), string(b), nil
}

// closeFrame reads until the server's close frame and returns its code and
// reason; the server then closes the connection.
func (w *rawWS) closeFrame(t testing.TB) (int, string) {
	t.Helper()
	for {
		op, p, err := w.next()
		if err != nil {
			t.Fatalf("waiting for a close frame: %v", err)
		}
		if op == websocket.CloseMessage {
			if len(p) < 2 {
				return websocket.CloseNoStatusReceived, ""
			}
			code := int(p[0])<<8 | int(p[1])
			if _, _, err := w.next(); err != io.EOF {
				t.Fatalf("after the close frame: %v, want the connection closed", err)
			}
			return code, p[2:]
		}
	}
}

// withTLS turns a site's http:// address into https:// with the test's
// certificate, for startTLS.
func withTLS(site string) string {
	return strings.Replace(site, "http://127.0.0.1:{PORT} {", "https://127.0.0.1:{PORT} {\n\ttls {CERT} {KEY}", 1)
}

// tlsSite is site over HTTPS with the test's certificate ({CERT},
// {KEY}); its Base is https://.
const tlsSite = `
https://127.0.0.1:{PORT} {
	tls {CERT} {KEY}
	pubsub /events* {
		heartbeat 1s
	}
	metrics /metrics
}
`

// startTLS starts site (with {CERT} and {KEY}) and returns it with its
// https:// Base.
func startTLS(t testing.TB, site string) *testserver.Server {
	t.Helper()
	c := testCert(t)
	s := testserver.Start(t, strings.NewReplacer("{CERT}", c.certFile, "{KEY}", c.keyFile).Replace(site))
	s.Base = strings.Replace(s.Base, "http://", "https://", 1)
	return s
}

// cert is a self-signed certificate for 127.0.0.1, in files for Caddy, and
// a client configuration that trusts it and speaks HTTP/1.1 only.
type cert struct {
	certFile, keyFile string
	client            *tls.Config
}

var (
	certOnce sync.Once
	theCert  cert
)

// testCert returns the package's certificate, made once (in
// testserver.Main's directory, removed when the tests end), and makes
// http.DefaultClient (which testserver.Publish uses) trust it.
func testCert(t testing.TB) cert {
	t.Helper()
	certOnce.Do(func() {
		certFile, keyFile, roots := testserver.SelfSignedIn(t, os.Getenv("XDG_DATA_HOME"))
		theCert = cert{certFile: certFile, keyFile: keyFile, client: &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}}}
		http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	})
	if theCert.client == nil {
		t.Fatal("the package's certificate could not be made (see the first test that asked)")
	}
	return theCert
}
