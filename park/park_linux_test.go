package park

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const wait = 10 * time.Second

// testStream sends what the test queues, and reports how it closed.
type testStream struct {
	mu     sync.Mutex
	queued []byte
	end    bool
	closed chan error
}

func newTestStream() *testStream { return &testStream{closed: make(chan error, 1)} }

func (s *testStream) queue(p []byte, end bool) {
	s.mu.Lock()
	s.queued = append(s.queued, p...)
	s.end = s.end || end
	s.mu.Unlock()
}

func (s *testStream) Send(buf []byte, _ time.Time) ([]byte, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf = append(buf, s.queued...)
	s.queued = nil
	return buf, time.Time{}, s.end
}

func (s *testStream) Closed(err error) { s.closed <- err }

func (s *testStream) waitClosed(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.closed:
		return err
	case <-time.After(wait):
		t.Fatal("parked connection not closed")
		return nil
	}
}

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return server, client
}

// parked parks the server end of a new connection on a new test stream.
func parked(t *testing.T, writeTimeout time.Duration) (*Conn, *testStream, net.Conn) {
	t.Helper()
	server, client := pair(t)
	s := newTestStream()
	c, err := Park(server, s, writeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return c, s, client
}

// Notify makes the stream's bytes go out; ending it closes the
// connection after them, and the core stops with its last connection.
func TestNotifiedStreamIsWrittenAndEnds(t *testing.T) {
	c, s, client := parked(t, time.Second)
	s.queue([]byte("hello "), false)
	c.Notify()
	s.queue([]byte("bye"), true)
	c.Notify()
	client.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "hello bye" {
		t.Fatalf("client read %q, %v; want %q", got, err, "hello bye")
	}
	if err := s.waitClosed(t); err != nil {
		t.Fatalf("closed with %v, want nil (the stream ended)", err)
	}
	if !Wait(wait) {
		t.Fatal("the core still runs with no connection parked")
	}
}

// A peer that closes, or sends anything, is noticed without a read.
func TestPeerCloseAndDataAreNoticed(t *testing.T) {
	_, s, client := parked(t, time.Second)
	client.Close()
	if err := s.waitClosed(t); !errors.Is(err, ErrPeerGone) {
		t.Fatalf("closed with %v, want ErrPeerGone", err)
	}
	_, s, client = parked(t, time.Second)
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.waitClosed(t); !errors.Is(err, ErrUnexpectedData) {
		t.Fatalf("closed with %v, want ErrUnexpectedData", err)
	}
}

// Bytes a peer does not read wait in the connection, never in a worker:
// the other connections go on, and after the write timeout the one that
// stopped reading is closed. Once the peer reads, the rest goes out.
func TestUnreadBytesTimeOutWithoutStallingOthers(t *testing.T) {
	const timeout = 500 * time.Millisecond
	c, s, _ := parked(t, timeout)
	big := make([]byte, 32<<20) // more than the socket buffers hold
	// The core may run c as soon as the bytes are queued (an EPOLLOUT),
	// so the timeout is measured from before.
	start := time.Now()
	s.queue(big, false)
	c.Notify()

	other, os, oclient := parked(t, timeout)
	os.queue([]byte("still served"), true)
	other.Notify()
	oclient.SetReadDeadline(time.Now().Add(wait))
	if got, err := io.ReadAll(oclient); err != nil || string(got) != "still served" {
		t.Fatalf("other connection read %q, %v", got, err)
	}

	if err := s.waitClosed(t); !errors.Is(err, ErrWriteTimeout) {
		t.Fatalf("closed with %v, want ErrWriteTimeout", err)
	}
	if took := time.Since(start); took < timeout {
		t.Fatalf("closed after %s, before the write timeout %s", took, timeout)
	}

	c, s, client := parked(t, wait)
	some := big[:4<<20] // more than one write takes
	s.queue(some, true)
	c.Notify()
	client.SetReadDeadline(time.Now().Add(wait))
	n, err := io.Copy(io.Discard, client)
	if err != nil || n != int64(len(some)) {
		t.Fatalf("read %d bytes, %v; want all %d", n, err, len(some))
	}
	if err := s.waitClosed(t); err != nil {
		t.Fatalf("closed with %v, want nil", err)
	}
}

// wrapped is a connection as a listener wrapper hands it over: not a
// *net.TCPConn.
type wrapped struct{ net.Conn }

// A connection Park cannot take is served by Blocking the same way:
// notified bytes go out, and a peer that hangs up ends it.
func TestBlockingServesWhatParkCannot(t *testing.T) {
	server, client := pair(t)
	s := newTestStream()
	if _, err := Park(wrapped{server}, s, time.Second); err == nil {
		t.Fatal("Park took a connection that is not plain TCP")
	}
	b := NewBlocking(wrapped{server}, s, time.Second)
	go b.Run()
	s.queue([]byte("hello"), false)
	b.Notify()
	client.SetReadDeadline(time.Now().Add(wait))
	got := make([]byte, 5)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "hello" {
		t.Fatalf("client read %q, %v", got, err)
	}
	client.Close()
	if err := s.waitClosed(t); !errors.Is(err, ErrPeerGone) {
		t.Fatalf("closed with %v, want ErrPeerGone", err)
	}
}

// echoStream is a Receiver that sends back what it reads, a few bytes at
// a time, and waits while the test holds it paused.
type echoStream struct {
	*testStream
	chunk   int
	paused  chan struct{} // closed to let it read
	receive chan struct{} // a token per Receive
}

func (s *echoStream) Receive(read func([]byte) (int, error)) error {
	select {
	case s.receive <- struct{}{}:
	default:
	}
	select {
	case <-s.paused:
	default:
		return nil
	}
	for {
		b := make([]byte, s.chunk)
		n, err := read(b)
		switch {
		case errors.Is(err, ErrWouldBlock):
			return nil
		case err != nil:
			return err
		}
		s.queue(b[:n], false)
	}
}

// A Receiver reads what the peer sends, also what it sent before the
// connection was parked, and what comes in while it did not want to read
// waits in the socket until it does; the peer's close reaches it as
// io.EOF from read.
func TestReceiverReadsWhatThePeerSends(t *testing.T) {
	server, client := pair(t)
	if _, err := client.Write([]byte("before ")); err != nil {
		t.Fatal(err)
	}
	s := &echoStream{testStream: newTestStream(), chunk: 3, paused: make(chan struct{}), receive: make(chan struct{}, 16)}
	c, err := Park(server, s, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.receive:
	case <-time.After(wait):
		t.Fatal("bytes sent before the connection was parked: no Receive")
	}
	close(s.paused)
	c.Notify()
	if _, err := client.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(wait))
	want := "before after"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != want {
		t.Fatalf("echoed %q, %v; want %q", got, err, want)
	}
	client.Close()
	if err := s.waitClosed(t); !errors.Is(err, io.EOF) {
		t.Fatalf("closed with %v, want io.EOF (the peer's FIN, read)", err)
	}
}

// tlsPair returns both ends of a loopback TLS connection, handshaken.
func tlsPair(t *testing.T) (server, client *tls.Conn) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	defer ts.Close()
	clientConfig := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	clientConfig.ServerName = "example.com"
	s, c := pair(t)
	server, client = tls.Server(s, ts.TLS), tls.Client(c, clientConfig)
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return server, client
}

// Over TLS the stream's bytes go out through crypto/tls, and bytes the
// peer does not read close the connection after the write timeout; a
// Receiver gets what the peer sends through crypto/tls, and its close.
func TestTLSStreamIsWrittenThroughCryptoTLS(t *testing.T) {
	server, client := tlsPair(t)
	s := newTestStream()
	c, err := Park(server, s, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.queue([]byte("hello "), false)
	c.Notify()
	s.queue([]byte("over TLS"), true)
	c.Notify()
	client.SetReadDeadline(time.Now().Add(wait))
	got := make([]byte, len("hello over TLS"))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "hello over TLS" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if err := s.waitClosed(t); err != nil {
		t.Fatalf("closed with %v, want nil", err)
	}

	const timeout = 500 * time.Millisecond
	server, _ = tlsPair(t)
	s = newTestStream()
	if c, err = Park(server, s, timeout); err != nil {
		t.Fatal(err)
	}
	s.queue(make([]byte, 32<<20), false)
	c.Notify()
	if err := s.waitClosed(t); !errors.Is(err, ErrWriteTimeout) {
		t.Fatalf("closed with %v, want ErrWriteTimeout", err)
	}

	server, client = tlsPair(t)
	e := &echoStream{testStream: newTestStream(), chunk: 3, paused: make(chan struct{}), receive: make(chan struct{}, 1)}
	close(e.paused)
	if _, err := Park(server, e, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("through TLS")); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len("through TLS"))
	client.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "through TLS" {
		t.Fatalf("echoed %q, %v", got, err)
	}
	client.Close()
	if err := e.waitClosed(t); !errors.Is(err, io.EOF) {
		t.Fatalf("closed with %v, want io.EOF", err)
	}
}

// onceStream sends msg each time it is armed, without allocating.
type onceStream struct {
	msg   []byte
	armed atomic.Bool
}

func (s *onceStream) Send(buf []byte, _ time.Time) ([]byte, time.Time, bool) {
	if s.armed.Swap(false) {
		buf = append(buf, s.msg...)
	}
	return buf, time.Time{}, false
}

func (s *onceStream) Closed(error) {}

// A delivery (Notify, the worker's Send and its write) allocates nothing:
// with thousands of deliveries a second, each allocation is GC work.
func TestDeliveryAllocatesNothing(t *testing.T) {
	server, client := pair(t)
	s := &onceStream{msg: []byte("data: hello\n\n")}
	c, err := Park(server, s, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(s.msg))
	deliver := func() {
		s.armed.Store(true)
		c.Notify()
		if _, err := io.ReadFull(client, buf); err != nil {
			t.Fatal(err)
		}
	}
	client.SetReadDeadline(time.Now().Add(wait))
	deliver() // the worker's buffers grow once
	// Many runs: a connection of an earlier test that its worker closes
	// meanwhile allocates, but not once per delivery.
	if n := testing.AllocsPerRun(2000, deliver); n > 0 {
		t.Fatalf("%.1f allocations per delivery, want 0", n)
	}
}

// BenchmarkDelivery is one Notify, Send and write, read by the peer.
func BenchmarkDelivery(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	ln.Close()
	if err != nil {
		b.Fatal(err)
	}
	s := &onceStream{msg: []byte("data: hello\n\n")}
	c, err := Park(server, s, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, len(s.msg))
	b.ReportAllocs()
	for b.Loop() {
		s.armed.Store(true)
		c.Notify()
		if _, err := io.ReadFull(client, buf); err != nil {
			b.Fatal(err)
		}
	}
}
