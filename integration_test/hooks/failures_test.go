package hooks_test

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A backend that never answers costs a decision its timeout and no more:
// failure closed refuses (503, saying why), failure open lets the request
// through unchanged.
func TestSlowBackendTimesOutByPolicy(t *testing.T) {
	b := startBackend(t, allowAll)
	b.block.Store(true)
	for _, c := range []struct {
		policy string
		want   int
	}{{"closed", http.StatusServiceUnavailable}, {"open", http.StatusOK}} {
		t.Run(c.policy, func(t *testing.T) {
			ep := start(t, site(b.URL, "on subscribe\n\t\t\ttimeout 300ms\n\t\t\tfailure "+c.policy, ""))
			began := time.Now()
			code, body := status(t, "GET", ep+"?topic=a&transport=poll&last_id=earliest", nil)
			took := time.Since(began)
			if code != c.want {
				t.Fatalf("%d %q, want %d", code, body, c.want)
			}
			if c.want != http.StatusOK && !strings.Contains(body, "timed out") {
				t.Errorf("reason %q does not say the backend timed out", body)
			}
			if took < 300*time.Millisecond || took > 2*time.Second {
				t.Errorf("answered after %s, want the 300ms timeout", took)
			}
		})
	}
}

// A backend that is down (connection refused) or answers garbage fails
// the decision by the policy.
func TestBackendDownOrGarbage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String() + "/hooks"
	l.Close()
	ep := start(t, site(down, "on subscribe publish", ""))
	code, body := status(t, "GET", ep+"?topic=a&last_id=earliest", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "unreachable") || strings.Contains(body, "127.0.0.1") {
		t.Fatalf("backend down: %d %q", code, body)
	}

	garbage := map[string]struct {
		status int
		body   string
		reason string
	}{
		"not json":     {200, "<html>oops</html>", "invalid hook answer"},
		"no allow":     {200, `{"reason":"x"}`, `no "allow"`},
		"unknown":      {200, `{"allow":true,"extra":1}`, "unknown field"},
		"wider topics": {200, `{"allow":true,"topics":["a","b"]}`, `"b" was not asked for`},
		"server error": {500, `{"allow":true}`, "answered 500"},
		"too large":    {200, `{"allow":true,"reason":"` + strings.Repeat("x", 200<<10) + `"}`, "larger than"},
		"redirect":     {302, ``, "answered 302"},
	}
	b := startBackend(t, nil)
	ep = start(t, site(b.URL, "on subscribe\n\t\t\tbreaker 1000 1s", ""))
	for name, g := range garbage {
		t.Run(name, func(t *testing.T) {
			b.setAnswer(func(call) (int, string) { return g.status, g.body })
			code, body := status(t, "GET", ep+"?topic=a&last_id=earliest", nil)
			if code != http.StatusServiceUnavailable || !strings.Contains(body, g.reason) {
				t.Fatalf("%d %q, want 503 saying %q", code, body, g.reason)
			}
			b.next("subscribe")
		})
	}
}

// After a run of failures the breaker opens: calls fail at once without
// reaching the backend; after its open time one trial call goes, and its
// success closes the breaker.
func TestBreakerOpensAndCloses(t *testing.T) {
	b := startBackend(t, func(call) (int, string) { return 500, "" })
	ep := start(t, strings.Replace(site(b.URL, "on subscribe\n\t\t\tbreaker 2 1s", ""), "\tpubsub", "\tmetrics /metrics\n\tpubsub", 1))
	metrics := strings.TrimSuffix(ep, "/events") + "/metrics"
	poll := ep + "?topic=a&last_id=earliest"
	for range 2 {
		if code, body := status(t, "GET", poll, nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "500") {
			t.Fatalf("failing backend: %d %q", code, body)
		}
	}
	opened := time.Now()
	code, body := status(t, "GET", poll, nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "breaker open") {
		t.Fatalf("open breaker: %d %q", code, body)
	}
	if n := b.count.Load(); n != 2 {
		t.Fatalf("the backend got %d calls, want 2: the open breaker let one through", n)
	}
	if state := metric(t, metrics, "caddy_pubsub_hook_breaker_state"); state != 1 {
		t.Errorf("breaker state metric %v while open, want 1", state)
	}
	b.setAnswer(allowAll)
	testserver.Eventually(t, "the breaker lets a trial call through", func() bool {
		code, _ := status(t, "GET", poll, nil)
		return code == http.StatusOK
	})
	if took := time.Since(opened); took < 900*time.Millisecond {
		t.Errorf("the breaker closed after %s, before its 1s", took)
	}
	if n := b.count.Load(); n != 3 {
		t.Errorf("the backend got %d calls, want 3 (two failures and one trial)", n)
	}
	if code, _ := status(t, "GET", poll, nil); code != http.StatusOK {
		t.Errorf("closed breaker: %d", code)
	}
	for outcome, want := range map[string]float64{"error": 2, "allow": 2} {
		if got := metric(t, metrics, "caddy_pubsub_hook_calls_total", `hook="subscribe"`, `outcome="`+outcome+`"`); got != want {
			t.Errorf("%s calls metric %v, want %v", outcome, got, want)
		}
	}
	if got := metric(t, metrics, "caddy_pubsub_hook_calls_total", `outcome="breaker_open"`); got < 1 {
		t.Errorf("breaker_open calls metric %v, want at least 1", got)
	}
	if got := metric(t, metrics, "caddy_pubsub_hook_duration_seconds_count", `hook="subscribe"`); got < 4 {
		t.Errorf("latency histogram counted %v calls, want at least 4", got)
	}
	if state := metric(t, metrics, "caddy_pubsub_hook_breaker_state"); state != 0 {
		t.Errorf("breaker state metric %v once closed, want 0", state)
	}
}

// A thousand decisions against a backend that never answers leave no
// goroutine behind: each waits its timeout at most, and the bounded
// concurrency refuses the rest at once.
func TestSlowBackendLeavesNoGoroutines(t *testing.T) {
	b := startBackend(t, allowAll)
	b.block.Store(true)
	ep := start(t, site(b.URL, "on publish\n\t\t\ttimeout 100ms\n\t\t\tconcurrency 8\n\t\t\tbreaker 100000 1s", ""))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	publish := func() int {
		resp, err := client.Post(ep, "application/x-www-form-urlencoded", strings.NewReader("topic=a&data=x"))
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	publish()
	settle := func() int {
		runtime.GC()
		return runtime.NumGoroutine()
	}
	before := settle()
	var wg sync.WaitGroup
	codes := make(chan int, 1000)
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 1000; i += 20 {
				codes <- publish()
			}
		}()
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusServiceUnavailable {
			t.Fatalf("publish against a silent backend: %d, want 503", code)
		}
	}
	testserver.Eventually(t, fmt.Sprintf("goroutines back to %d", before), func() bool { return settle() <= before+2 })
}
