package bolt_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Replay cost: with thousands of large retained messages, a resume that
// matches none of them, or a first long-poll on a restarted hub, must not
// read the history into memory. Caddy runs in this process, so the bytes
// it allocates per request show what a request read.
func TestReplayDoesNotCopyHistory(t *testing.T) {
	const messages, size = 3000, 8 << 10
	history := messages * size
	path := filepath.Join(t.TempDir(), "pubsub.db")
	site := fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		history 10000 1h
		max_message_size 1MiB
		broker bolt %s
	}
}
`, path)
	s := testserver.Start(t, site)
	ep := s.Base + "/events"
	loadHistory(t, ep, messages, size)

	// At most a twentieth of one copy of the history per request.
	limit := uint64(history / 20)
	perRequest := func(what, query string) {
		t.Helper()
		alloc, cpu := measure(t, 100, 10, func() {
			code, body, _ := testserver.Request(t, http.MethodHead, ep+"?"+query, "", "", nil)
			if code != http.StatusOK {
				t.Errorf("HEAD ?%s: %d %s", query, code, body)
			}
		})
		t.Logf("%s: %d KiB allocated, %s CPU per request (history %d MiB)", what, alloc>>10, cpu, history>>20)
		if alloc > limit {
			t.Errorf("%s: %d KiB allocated per request, want at most %d KiB: the history was read", what, alloc>>10, limit>>10)
		}
	}
	perRequest("resume matching nothing", "topic=nomatch&last_id=earliest")

	restart(t, s, site)
	perRequest("first long-poll after restart", "topic=nomatch")
	perRequest("resume matching nothing after restart", "topic=nomatch&last_id=earliest")

	// The history is still all there, in order, for a topic that matches.
	a := testserver.Poll(t, ep, "earliest", "t")
	if len(a.Messages) != 100 || a.Messages[0].Data[:8] != "00000000" {
		t.Fatalf("poll from earliest: %d messages, want the first 100", len(a.Messages))
	}
}

// loadHistory publishes n messages of size bytes on topic t, in JSON
// batches, each message's data starting with its number.
func loadHistory(t *testing.T, ep string, n, size int) {
	t.Helper()
	pad := strings.Repeat("x", size-8)
	for i := 0; i < n; i += 100 {
		var batch []map[string]string
		for j := i; j < min(n, i+100); j++ {
			batch = append(batch, map[string]string{"topic": "t", "data": fmt.Sprintf("%08d", j) + pad})
		}
		body, _ := json.Marshal(batch)
		code, answer, _ := testserver.Request(t, http.MethodPost, ep, "application/json", string(body), nil)
		if code != http.StatusOK {
			t.Fatalf("publishing batch %d: %d %s", i/100, code, answer)
		}
	}
}

// measure runs do n times, at most parallel at once, and returns the bytes
// this process allocated and the CPU time it used, per run.
func measure(t *testing.T, n, parallel int, do func()) (alloc uint64, cpu time.Duration) {
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
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
