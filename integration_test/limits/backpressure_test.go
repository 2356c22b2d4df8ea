package limits_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Each publisher has its own rate: an anonymous loopback publisher is its
// address. One from 127.0.0.2, over its burst, gets 429 with Retry-After
// and a reason, while one from 127.0.0.1 still publishes; once the first
// one's bucket refills it publishes again.
func TestPublishRatePerPublisher(t *testing.T) {
	ep := start(t, "limits {\n\t\t\tpublish_rate 3/s\n\t\t\tpublish_burst 3\n\t\t}")
	heavy := fromAddress(t, "127.0.0.2")
	form := url.Values{"topic": {"x"}, "data": {"d"}}.Encode()
	post := func(c *http.Client) (int, string, http.Header) {
		resp, err := c.Post(ep, "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	for i := range 3 {
		if got, body, _ := post(heavy); got != http.StatusOK {
			t.Fatalf("publish %d within the burst: %d %s", i, got, body)
		}
	}
	got, body, header := post(heavy)
	if got != http.StatusTooManyRequests || !strings.HasPrefix(body, "publish rate exceeded: retry in ") || header.Get("Retry-After") != "1" {
		t.Fatalf("publish over the rate: %d %q Retry-After %q, want 429, a reason, Retry-After 1", got, body, header.Get("Retry-After"))
	}
	for i := range 3 {
		if got, body, _ := post(http.DefaultClient); got != http.StatusOK {
			t.Fatalf("publish %d from another address while the first is limited: %d %s", i, got, body)
		}
	}
	testserver.Eventually(t, "the limited publisher publishes again once its bucket refilled", func() bool {
		got, _, _ := post(heavy)
		return got == http.StatusOK
	})
}

// fromAddress returns a client whose connections come from the loopback
// address ip.
func fromAddress(t *testing.T, ip string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	transport := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
}

// When publishers outrun delivery, a publish waits at most publish_wait
// for the fan-out to catch up and then gets 503 with Retry-After, so no
// publish waits longer and delivery never falls far behind; once the
// backlog drains, publishes succeed again.
func TestOverloadAnswers503WithinPublishWait(t *testing.T) {
	const wait = 50 * time.Millisecond
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		queue 1000000
		limits {
			publish_wait 50ms
		}
	}
}
`)
	ep := s.Base + "/events"
	// Fan-out work: subscribers that never read, each costing the fan-out
	// a queued message per message published.
	for range 300 {
		idleSubscriber(t, s.Base, "/events?topic=x")
	}

	type answer struct {
		status     int
		body       string
		retryAfter string
		took       time.Duration
	}
	answers := make(chan answer, 1024)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				got, body, header := testserver.Request(t, http.MethodPost, ep, "application/json", batch("x", 20), nil)
				select {
				case answers <- answer{got, body, header.Get("Retry-After"), time.Since(start)}:
				case <-stop:
					return
				}
			}
		}()
	}
	deadline := time.After(30 * time.Second)
	var refused answer
	var accepted int
	var slowest time.Duration
	for refused.status == 0 {
		select {
		case a := <-answers:
			slowest = max(slowest, a.took)
			if a.took > wait+2*time.Second {
				t.Errorf("a publish took %v under overload, want at most publish_wait (%v) and its own work", a.took, wait)
			}
			switch a.status {
			case http.StatusOK:
				accepted++
			case http.StatusServiceUnavailable:
				refused = a
			default:
				t.Fatalf("publish under overload: %d %s", a.status, a.body)
			}
		case <-deadline:
			t.Fatal("publishers outran 300 subscribers for 30s and were never held back")
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d publishes accepted before the first 503, which came after %v; the slowest answer took %v", accepted, refused.took, slowest)
	if !strings.HasPrefix(refused.body, "delivery is behind: retry in ") {
		t.Errorf("503 reason %q", refused.body)
	}
	if n, err := strconv.Atoi(refused.retryAfter); err != nil || n < 1 {
		t.Errorf("503 Retry-After %q, want whole seconds, at least 1", refused.retryAfter)
	}
	if refused.took < wait {
		t.Errorf("503 after %v, want after waiting publish_wait (%v)", refused.took, wait)
	}
	testserver.Eventually(t, "publishes succeed once the backlog drained", func() bool {
		got, _ := publishJSON(t, ep, batch("x", 1))
		return got == http.StatusOK
	})
}

// idleSubscriber opens an SSE stream to path, waits for its response
// headers (it is subscribed then), and never reads again.
func idleSubscriber(t *testing.T, base, path string) {
	t.Helper()
	u, _ := url.Parse(base)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, u.Host); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("idle subscriber: %v %v", resp, err)
	}
}
