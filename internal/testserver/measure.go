package testserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Fill publishes n messages of size bytes on topic to endpoint, in JSON
// batches of 100 (max_message_size must allow 100 of them), each message's
// data starting with its number in 8 digits.
func Fill(t testing.TB, endpoint, topic string, n, size int) {
	t.Helper()
	pad := strings.Repeat("x", max(0, size-8))
	for i := 0; i < n; i += 100 {
		var batch []map[string]string
		for j := i; j < min(n, i+100); j++ {
			batch = append(batch, map[string]string{"topic": topic, "data": fmt.Sprintf("%08d", j) + pad})
		}
		body, _ := json.Marshal(batch)
		code, answer, _ := Request(t, http.MethodPost, endpoint, "application/json", string(body), nil)
		if code != http.StatusOK {
			t.Fatalf("publishing batch %d: %d %s", i/100, code, answer)
		}
	}
}

// Measure runs do n times, at most parallel at once, and returns the bytes
// this process allocated and the CPU time it used, per run. Caddy runs in
// the test process, so they include what the server spent.
func Measure(t testing.TB, n, parallel int, do func()) (alloc uint64, cpu time.Duration) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpuBefore := cpuTime(t)
	var wg sync.WaitGroup
	work := make(chan struct{})
	for range parallel {
		wg.Go(func() {
			for range work {
				do()
			}
		})
	}
	for range n {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	cpu = cpuTime(t) - cpuBefore
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(n), cpu / time.Duration(n)
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// HeadCost sends n HEAD requests to url, parallel at once, checks each is
// answered 200, and returns what each cost the process (see Measure).
func HeadCost(t testing.TB, url string, n, parallel int) (alloc uint64, cpu time.Duration) {
	t.Helper()
	return Measure(t, n, parallel, func() {
		code, body, _ := Request(t, http.MethodHead, url, "", "", nil)
		if code != http.StatusOK {
			t.Errorf("HEAD %s: %d %s", url, code, body)
		}
	})
}

// ExpectCheapReplays fills the endpoint ep with 3,000 retained messages of
// 8 KiB on topic "t" (its max_message_size must take 100 of them), then
// checks that requests that have nothing to replay do not read that
// history into memory: a resume matching nothing, and, after restart, a
// first long-poll and such a resume, each allocating at most a twentieth
// of one copy of it. The history is then still all there, in order.
func ExpectCheapReplays(t testing.TB, ep string, restart func()) {
	t.Helper()
	const messages, size = 3000, 8 << 10
	history := messages * size
	Fill(t, ep, "t", messages, size)
	limit := uint64(history / 20)
	perRequest := func(what, query string) {
		t.Helper()
		alloc, cpu := HeadCost(t, ep+"?"+query, 100, 10)
		t.Logf("%s: %d KiB allocated, %s CPU per request in this process (history %d MiB)", what, alloc>>10, cpu, history>>20)
		if alloc > limit {
			t.Errorf("%s: %d KiB allocated per request, want at most %d KiB: the history was read", what, alloc>>10, limit>>10)
		}
	}
	perRequest("resume matching nothing", "topic=nomatch&last_id=earliest")
	restart()
	perRequest("first long-poll after restart", "topic=nomatch")
	perRequest("resume matching nothing after restart", "topic=nomatch&last_id=earliest")

	a := Poll(t, ep, "earliest", "t")
	if len(a.Messages) != 100 || a.Messages[0].Data[:8] != "00000000" {
		t.Fatalf("poll from earliest: %d messages, want the first 100", len(a.Messages))
	}
}
