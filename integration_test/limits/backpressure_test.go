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
	post := func(c *http.Client) answer {
		return postTo(t, c, ep, "application/x-www-form-urlencoded", form)
	}
	for i := range 3 {
		if a := post(heavy); a.status != http.StatusOK {
			t.Fatalf("publish %d within the burst: %d %s", i, a.status, a.body)
		}
	}
	a := post(heavy)
	if a.status != http.StatusTooManyRequests || !strings.HasPrefix(a.body, "publish rate exceeded: retry in ") || a.retryAfter != "1" {
		t.Fatalf("publish over the rate: %d %q Retry-After %q, want 429, a reason, Retry-After 1", a.status, a.body, a.retryAfter)
	}
	for i := range 3 {
		if a := post(http.DefaultClient); a.status != http.StatusOK {
			t.Fatalf("publish %d from another address while the first is limited: %d %s", i, a.status, a.body)
		}
	}
	testserver.Eventually(t, "the limited publisher publishes again once its bucket refilled", func() bool {
		return post(heavy).status == http.StatusOK
	})
}

// When publishers outrun delivery, a publish waits at most publish_wait
// for the fan-out to catch up and then gets 503 with Retry-After, so no
// publish waits longer and delivery never falls far behind; once the
// backlog drains, publishes succeed again.
func TestOverloadAnswers503WithinPublishWait(t *testing.T) {
	const wait = 50 * time.Millisecond
	ep := startLoaded(t, "publish_wait 50ms")
	answers, stop := flood(t, http.DefaultClient, ep)
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
	stop()
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

// With publish_rate, one publisher flooding the same hub as above is held
// to its rate with 429s, so delivery keeps up and another publisher's
// publishes all go through: none gets 503.
func TestFloodingPublisherLeavesOthersRoom(t *testing.T) {
	// The flood's rate (20/s × 300 subscribers) is far below what even a
	// loaded CI machine under -race delivers, and publish_wait leaves room
	// for the other publisher's own fan-out; without the rate the flood
	// alone outruns delivery.
	ep := startLoaded(t, "publish_wait 1s\n\t\t\tpublish_rate 20/s")
	answers, stop := flood(t, fromAddress(t, "127.0.0.2"), ep)
	defer stop()
	deadline := time.After(30 * time.Second)
	for limited := false; !limited; {
		select {
		case a := <-answers:
			switch a.status {
			case http.StatusOK:
			case http.StatusTooManyRequests:
				limited = true
			default:
				t.Fatalf("flooding publisher: %d %s, want 200 or 429", a.status, a.body)
			}
		case <-deadline:
			t.Fatal("the flooding publisher was never held to its rate")
		}
	}
	form := url.Values{"topic": {"x"}, "data": {"light"}}.Encode()
	for i := range 15 { // within its own burst of 20
		if a := postTo(t, http.DefaultClient, ep, "application/x-www-form-urlencoded", form); a.status != http.StatusOK {
			t.Fatalf("the other publisher's publish %d, beside the flood: %d %s", i, a.status, a.body)
		}
	}
}

// startLoaded runs a hub with limits and 300 subscribers to topic x that
// never read: each costs the fan-out a queued message per message.
func startLoaded(t *testing.T, limits string) string {
	t.Helper()
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		queue 1000000
		limits {
			`+limits+`
		}
	}
}
`)
	for range 300 {
		idleSubscriber(t, s.Base, "/events?topic=x")
	}
	return s.Base + "/events"
}

// answer is what a publish got, and how long it took.
type answer struct {
	status     int
	body       string
	retryAfter string
	took       time.Duration
}

// postTo publishes body with client; a failed request answers status 0.
func postTo(t *testing.T, client *http.Client, ep, contentType, body string) answer {
	start := time.Now()
	resp, err := client.Post(ep, contentType, strings.NewReader(body))
	if err != nil {
		t.Errorf("publish: %v", err)
		return answer{body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, strings.TrimSuffix(string(b), "\n"), resp.Header.Get("Retry-After"), time.Since(start)}
}

// flood publishes batches of 20 messages to topic x from 4 goroutines
// with client, as fast as answers come, until stop is called (it returns
// once they have stopped), and sends each answer.
func flood(t *testing.T, client *http.Client, ep string) (answers <-chan answer, stop func()) {
	out := make(chan answer, 64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				case out <- postTo(t, client, ep, "application/json", batch("x", 20)):
				}
			}
		})
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return out, stop
}

// fromAddress returns a client whose connections come from the loopback
// address ip.
func fromAddress(t *testing.T, ip string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	transport := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
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
