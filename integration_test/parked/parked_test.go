package parked_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A thousand idle SSE subscribers cost the server no goroutine each: the
// process's count barely moves while they are connected, they all get a
// message published to them, and once they hang up the server counts
// none and its goroutines are back where they were. So over TLS too,
// where a writer goroutine exists only while a stream has bytes to send
// (the heartbeat is long here, so none is caught writing one).
func TestIdleSubscribersHoldNoGoroutine(t *testing.T) {
	t.Run("plain", func(t *testing.T) { idleSubscribers(t, testserver.Start(t, site)) })
	t.Run("TLS", func(t *testing.T) {
		idleSubscribers(t, startTLS(t, strings.Replace(tlsSite, "heartbeat 1s", "heartbeat 30s", 1)))
	})
}

func idleSubscribers(t *testing.T, s *testserver.Server) {
	// Start what runs once per process or once per core (the parked
	// core's workers stop with its last connection).
	warm := dialSSE(t, s.Base, "?topic=idle")
	testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"idle"}, "data": {"warm"}})
	warm.until(t, "data: warm")
	warm.conn.Close()
	waitSubscribers(t, s.Base, 0)
	before := runtime.NumGoroutine()

	const n = 1000
	subs := make([]*rawStream, n)
	for i := range subs {
		subs[i] = dialSSE(t, s.Base, "?topic=idle")
		subs[i].until(t, "retry:")
	}
	waitSubscribers(t, s.Base, n)
	// The handlers that handed their streams off return just after the
	// hand-off: give them a moment, bounded, then report what is left.
	const limit = 50
	grew := waitGoroutines(before + limit)
	if grew-before > limit {
		t.Fatalf("%d idle subscribers: %d more goroutines, want at most %d", n, grew-before, limit)
	}

	id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"idle"}, "data": {"hello"}})
	for i, sub := range subs {
		if got := sub.until(t, "data: hello"); !strings.Contains(got, "id: "+id) {
			t.Fatalf("subscriber %d got %q, want message %s", i, got, id)
		}
	}

	for _, sub := range subs {
		sub.conn.Close()
	}
	waitSubscribers(t, s.Base, 0)
	if left := waitGoroutines(before); left > before {
		t.Fatalf("after the subscribers left: %d goroutines, %d more than before", left, left-before)
	}
}

// waitGoroutines waits up to testserver.Wait for the goroutine count to
// fall to at most want, and returns the count.
func waitGoroutines(want int) int {
	deadline := time.Now().Add(testserver.Wait)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An idle parked stream gets a heartbeat comment every heartbeat, over
// TLS too.
func TestParkedStreamGetsHeartbeats(t *testing.T) {
	t.Run("plain", func(t *testing.T) { heartbeats(t, testserver.Start(t, site)) })
	t.Run("TLS", func(t *testing.T) { heartbeats(t, startTLS(t, tlsSite)) })
}

func heartbeats(t *testing.T, s *testserver.Server) {
	sub := dialSSE(t, s.Base, "?topic=quiet")
	sub.until(t, "retry:")
	start := time.Now()
	for i := range 2 {
		if c, err := sub.chunk(); err != nil || c != ":\n\n" {
			t.Fatalf("heartbeat %d: got %q, %v", i, c, err)
		}
	}
	// Not sooner than the interval allows; how much later depends on the
	// load (each read above waits at most testserver.Wait).
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Fatalf("two heartbeats of a 1s interval took %s", took)
	}
}

// A subscriber that hangs up is noticed without a read: the server counts
// it gone and the next publish finds no one.
func TestParkedPeerCloseIsNoticed(t *testing.T) {
	s := testserver.Start(t, site)
	sub := parkedSubscriber(t, s.Base, "leaving")
	sub.conn.Close()
	waitSubscribers(t, s.Base, 0)
}

// A parked subscriber that stops reading is dropped as a slow consumer
// once its queue overflows, and, when it reads again, gets what was sent
// and then the reason, as on the goroutine path; the others never wait.
// Over TLS the writer goroutine waits on the socket instead of the core.
func TestParkedSlowConsumerIsClosed(t *testing.T) {
	const slowSite = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		queue 8
		max_message_size 1MiB
	}
	metrics /metrics
}
`
	t.Run("plain", func(t *testing.T) { slowConsumer(t, testserver.Start(t, slowSite)) })
	t.Run("TLS", func(t *testing.T) {
		slowConsumer(t, startTLS(t, withTLS(slowSite)))
	})
}

// The messages go in batches of 6, which the fast subscriber's queue of 8
// holds: once the slow one's socket is full, a batch or two overflow its
// queue, and the slow client reads well within the write timeout (10 s)
// however slowly a loaded machine publishes.
func slowConsumer(t *testing.T, s *testserver.Server) {
	slow := dialSSE(t, s.Base, "?topic=firehose")
	slow.until(t, "retry:")
	fast := testserver.Subscribe(t, nil, s.Base+"/events?topic=firehose", nil)
	message := `{"topic":"firehose","data":"` + strings.Repeat("x", 64<<10) + `"}`
	batch := "[" + strings.Repeat(message+",", 5) + message + "]"
	for i := 0; subscribers(t, s.Base) == 2; i++ {
		if i == 170 {
			t.Fatal("1020 messages of 64 KiB published and the subscriber that reads nothing is still connected")
		}
		testserver.PublishInStep(t, s.Base+"/events", batch, fast)
	}
	if got := slow.expectEnd(t, ": closed: slow consumer"); !strings.Contains(got, "\nid: ") {
		t.Fatalf("slow subscriber got no message before the reason")
	}
}

// caddy.Stop ends a parked stream with the shutdown reason and the
// response's last chunk, as a stop ends every stream, over TLS too.
func TestStopEndsParkedStream(t *testing.T) {
	t.Run("plain", func(t *testing.T) { stopEnds(t, testserver.Start(t, site)) })
	t.Run("TLS", func(t *testing.T) { stopEnds(t, startTLS(t, tlsSite)) })
}

func stopEnds(t *testing.T, s *testserver.Server) {
	sub := parkedSubscriber(t, s.Base, "stop")
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	sub.expectEnd(t, ": closed: server shutting down")
}

// A reload that keeps the hub leaves a parked stream delivering; one that
// replaces the hub (another broker) ends it with the reason, so the
// client reconnects to the new one.
func TestReloadAndParkedStreams(t *testing.T) {
	s := testserver.Start(t, site)
	sub := parkedSubscriber(t, s.Base, "reload")

	s.Load(strings.Replace(site, "heartbeat 1s", "heartbeat 2s", 1))
	id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"reload"}, "data": {"kept"}})
	if got := sub.until(t, "data: kept"); !strings.Contains(got, "id: "+id) {
		t.Fatalf("after a reload that keeps the hub: got %q, want message %s", got, id)
	}

	path := filepath.Join(t.TempDir(), "pubsub.db")
	s.Load(strings.Replace(site, "heartbeat 1s", "heartbeat 1s\n\t\tbroker bolt "+path, 1))
	sub.expectEnd(t, ": closed: hub closed")
	waitSubscribers(t, s.Base, 0)
}

// HTTP/2 streams cannot leave net/http: they keep the goroutine path and
// deliver as before.
func TestHTTP2StreamsKeepTheGoroutinePath(t *testing.T) {
	s, sub := h2cSubscriber(t, site)
	for i := range 3 {
		id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"h2"}, "data": {fmt.Sprint(i)}})
		if ev := sub.Next(); ev.ID != id {
			t.Fatalf("got %+v, want %s", ev, id)
		}
	}
	if ev := sub.NextAny(); !ev.IsComment {
		t.Fatalf("got %+v, want a heartbeat", ev)
	}
}

// An HTTP/2 stream that stays idle longer than the write timeout (10 s),
// between heartbeats of the default 15 s, is not reset: the write deadline
// bounds a write that does not drain, not the quiet between writes. (Go's
// HTTP/2 server resets a stream when its deadline passes, writing or not.)
func TestIdleHTTP2StreamOutlivesWriteTimeout(t *testing.T) {
	s, sub := h2cSubscriber(t, `
http://127.0.0.1:{PORT} {
	pubsub /events*
}
`)
	id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"h2"}, "data": {"first"}})
	if ev := sub.Next(); ev.ID != id {
		t.Fatalf("got %+v, want %s", ev, id)
	}
	idle := time.Now()
	quiet := time.NewTimer(12 * time.Second)
	defer quiet.Stop()
	select {
	case ev, ok := <-sub.Events():
		if !ok {
			t.Fatalf("stream reset after %v idle", time.Since(idle).Round(time.Second))
		}
		t.Fatalf("got %+v while idle, want nothing before the heartbeat", ev)
	case <-quiet.C:
	}
	id = testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"h2"}, "data": {"second"}})
	if ev := sub.Next(); ev.ID != id {
		t.Fatalf("got %+v, want %s", ev, id)
	}
}

// h2cSubscriber starts site serving HTTP/2 without TLS too, and subscribes
// to topic "h2" over HTTP/2.
func h2cSubscriber(t *testing.T, site string) (*testserver.Server, *testserver.SSEStream) {
	t.Helper()
	s := testserver.StartWith(t, `	servers {
		protocols h1 h2c
	}`, site)
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	sub := testserver.Subscribe(t, client, s.Base+"/events?topic=h2", nil)
	if sub.Resp.ProtoMajor != 2 {
		t.Fatalf("stream is %s, want HTTP/2", sub.Resp.Proto)
	}
	return s, sub
}

// An HTTP/1.0 response has no chunks: such a stream is not parked (its
// body would get chunk framing it cannot carry) and delivers as before.
func TestHTTP10StreamIsNotParked(t *testing.T) {
	s := testserver.Start(t, site)
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /events?topic=old HTTP/1.0\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", strings.TrimPrefix(s.Base, "http://"))
	r := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(testserver.Wait))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, s.Base, 1)
	testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"old"}, "data": {"from 1996"}})
	var body strings.Builder
	for !strings.Contains(body.String(), "data: from 1996\n\n") {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the body: %v after %q", err, body.String())
		}
		body.WriteString(line)
	}
	if strings.Contains(body.String(), "\r") || resp.TransferEncoding != nil {
		t.Fatalf("HTTP/1.0 body %q (transfer encoding %v): chunked", body.String(), resp.TransferEncoding)
	}
}
