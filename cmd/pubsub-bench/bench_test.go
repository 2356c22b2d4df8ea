package main

import (
	"bytes"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A sustained SSE run: every subscriber gets every message exactly once.
func TestSustainedSSE(t *testing.T) {
	endpoint := startServer(t) + "/events"
	r := bench(t, endpoint, "-mode", "sustained", "-transport", "sse", "-n", "20", "-rate", "100", "-duration", "2s")
	checkDelivery(t, r, 20)
	if r.Published < 150 {
		t.Errorf("published %d messages in 2s at 100/s", r.Published)
	}
	if r.DeliveriesPerSec <= 0 || r.Server.CPUSecondsPerMillionDeliveries < 0 {
		t.Errorf("deliveries/s %.0f, CPU-s per 1M %.2f", r.DeliveriesPerSec, r.Server.CPUSecondsPerMillionDeliveries)
	}
}

// Each transport and mode, briefly; -procs 2 runs the subscribers in two
// worker processes (this test binary, re-executed).
// Publish mode posts as fast as it can: its subscribers use the
// endpoint with a deep queue, so they may fall far behind without being
// dropped.
func TestModesAndTransports(t *testing.T) {
	base := startServer(t)
	for _, tc := range []struct {
		name, path string
		n          int64
		args       []string
	}{
		{"fanout over ws", "/events", 10, []string{"-mode", "fanout", "-transport", "ws", "-count", "3", "-interval", "100ms"}},
		// Its polls go on past the end of the connect phase.
		{"sustained over poll", "/events", 10, []string{"-mode", "sustained", "-transport", "poll", "-rate", "50", "-duration", "1s", "-connect-timeout", "1s"}},
		{"two worker processes", "/events", 10, []string{"-mode", "sustained", "-transport", "sse", "-rate", "50", "-duration", "1s", "-procs", "2", "-sources", "3"}},
		{"publish throughput with batches", "/throughput", 2, []string{"-mode", "publish", "-publishers", "4", "-batch", "10", "-duration", "1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-n", strconv.FormatInt(tc.n, 10)}, tc.args...)
			r := bench(t, base+tc.path, args...)
			checkDelivery(t, r, tc.n)
		})
	}
}

// Idle mode connects, measures and publishes nothing.
func TestIdle(t *testing.T) {
	endpoint := startServer(t) + "/events"
	r := bench(t, endpoint, "-mode", "idle", "-n", "30")
	if r.Connected != 30 || r.Published != 0 || r.Expected != 0 {
		t.Errorf("connected %d, published %d, expected %d; want 30, 0, 0", r.Connected, r.Published, r.Expected)
	}
	if r.Server == nil || r.Server.RSSIdleBytes <= 0 || r.Server.RSSBaselineBytes <= 0 {
		t.Errorf("server memory not measured: %+v", r.Server)
	}
}

func TestOnlyLoopbackTargets(t *testing.T) {
	for _, tc := range []struct {
		url, addr string
		ok        bool
	}{
		{"http://127.0.0.1:8399/events", "127.0.0.1:8399", true},
		{"http://127.9.8.7/events", "127.9.8.7:80", true},
		{"http://localhost:9000/x", "127.0.0.1:9000", true},
		{"http://[::1]:9000/x", "[::1]:9000", true},
		{"http://10.1.2.3:8399/events", "", false},
		{"http://example.com/events", "", false},
		{"http://0.0.0.0:8399/events", "", false},
		{"https://127.0.0.1/events", "127.0.0.1:443", true},
		{"https://localhost:8443/events", "127.0.0.1:8443", true},
		{"https://192.0.2.1/events", "", false},
		{"ws://127.0.0.1/events", "", false},
	} {
		got, err := resolveTarget(tc.url)
		if tc.ok != (err == nil) || got.addr != tc.addr {
			t.Errorf("resolveTarget(%q) = %q, %v; want %q, ok %v", tc.url, got.addr, err, tc.addr, tc.ok)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := cli([]string{"-url", "http://192.0.2.1:8399/events"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "only loopback targets") {
		t.Errorf("a non-loopback -url: exit %d, %q; want 2 and a refusal", code, stderr.String())
	}
}

func TestPlanProcs(t *testing.T) {
	for _, tc := range []struct {
		n, procs, limit, want int
		err                   string
	}{
		{n: 100, limit: 20000, want: 1},
		{n: 19900, limit: 20000, want: 1},
		{n: 19901, limit: 20000, want: 2},
		{n: 50000, limit: 20000, want: 3},
		{n: 50000, procs: 4, limit: 20000, want: 4},
		{n: 50000, procs: 2, limit: 20000, err: "use -procs 3 or more"},
		{n: 10, limit: 50, err: "raise its hard limit"},
	} {
		cfg := Config{Subscribers: tc.n, Procs: tc.procs}
		got, err := planProcs(cfg, tc.limit)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("planProcs(n=%d, procs=%d, limit=%d): %v; want error with %q", tc.n, tc.procs, tc.limit, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("planProcs(n=%d, procs=%d, limit=%d) = %d, %v; want %d", tc.n, tc.procs, tc.limit, got, err, tc.want)
		}
	}
}

func TestSourceAddr(t *testing.T) {
	for k, want := range map[int]string{0: "127.0.0.2", 1: "127.0.0.3", 252: "127.0.0.254", 253: "127.0.1.2", 253*256 + 5: "127.1.0.7"} {
		got := sourceAddr(k)
		if got.String() != want || !got.IsLoopback() {
			t.Errorf("sourceAddr(%d) = %s; want %s", k, got, want)
		}
	}
	if _, err := net.ResolveTCPAddr("tcp", sourceAddr(7).String()+":0"); err != nil {
		t.Error(err)
	}
}

func TestParseStamp(t *testing.T) {
	want := stamp{pub: 3, seq: 42, sentNS: 1700000000123456789}
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"data", `{"pub":3,"seq":42,"sent_ns":1700000000123456789,"pad":"xx"}`, true},
		{"SSE envelope", `data: {"id":"e-1","topic":"bench/ab","data":"{\"pub\":3,\"seq\":42,\"sent_ns\":1700000000123456789,\"pad\":\"x\"}","time":"2026-01-01T00:00:00Z"}`, true},
		{"WebSocket frame", `{"type":"message","id":"e-1","topic":"t","data":"{\"pub\":3,\"seq\":42,\"sent_ns\":1700000000123456789}"}`, true},
		{"marker", `{"marker":true}`, false},
		{"no number", `{"pub":"3","seq":42,"sent_ns":1}`, false},
		{"truncated", `{"pub":3,"seq":42,"sent_ns":`, false},
		{"empty", ``, false},
	} {
		got, ok := parseStamp([]byte(tc.in))
		if ok != tc.ok || (ok && got != want) {
			t.Errorf("%s: parseStamp = %+v, %v; want %+v, %v", tc.name, got, ok, want, tc.ok)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	h.Record(-time.Millisecond) // a clock step: counted as 0, never a panic
	p := h.Snapshot().Percentiles()
	near := func(got, want float64) bool { return got >= want*0.98 && got <= want*1.02 }
	if p.Count != 1001 || !near(p.P50MS, 500) || !near(p.P90MS, 900) || !near(p.P99MS, 990) || p.MaxMS != 1000 {
		t.Errorf("percentiles %+v; want 1001 samples, p50 500, p90 900, p99 990, max 1000 (within 2%%)", p)
	}
	for _, v := range []int64{0, 1, 63, 64, 65, 1000, 123456789, 1 << 39, 1 << 45} {
		b := bucketOf(v)
		if b < 0 || b >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, b, numBuckets)
		}
		if mid := bucketValue(b); v < 1<<40 && (float64(mid) < float64(v)*0.98 || float64(mid) > float64(v)*1.02+1) {
			t.Errorf("bucket of %d has middle %d", v, mid)
		}
	}
	var merged HistogramData
	merged.Merge(h.Snapshot())
	merged.Merge(h.Snapshot())
	if m := merged.Percentiles(); m.Count != 2002 || m.P50MS != p.P50MS {
		t.Errorf("merged %+v; want 2002 samples, same p50 as %+v", m, p)
	}
}

var progressRE = regexp.MustCompile(`(?m)^progress \S+ publishing: connected (\d+) of (\d+) \(0 failed, 0 dropped\), published (\d+), delivered (\d+) of (\d+), p99 (\S+)$`)

// A long run prints progress lines while it publishes, whose counts grow
// and whose p99 comes from the deliveries so far; in one process and
// from worker processes, which send their histograms to the parent.
func TestProgressLines(t *testing.T) {
	endpoint := startServer(t) + "/events"
	for _, procs := range []string{"1", "2"} {
		t.Run("procs "+procs, func(t *testing.T) {
			r, log := benchLog(t, endpoint, "-mode", "sustained", "-n", "10", "-procs", procs, "-rate", "50", "-duration", "3s", "-progress", "400ms")
			checkDelivery(t, r, 10)
			lines := progressRE.FindAllStringSubmatch(log, -1)
			if len(lines) < 3 {
				t.Fatalf("%d progress lines while publishing for 3s every 400ms; want 3 or more:\n%s", len(lines), log)
			}
			var lastPublished, lastDelivered int64
			for i, m := range lines {
				n := func(k int) int64 { v, _ := strconv.ParseInt(m[k], 10, 64); return v }
				if n(1) != 10 || n(2) != 10 {
					t.Errorf("line %q: want 10 of 10 connected", m[0])
				}
				if n(5) != n(3)*10 || n(4) > n(5)+20 {
					t.Errorf("line %q: expected deliveries are published × 10 live subscribers, delivered at most that plus the in-flight", m[0])
				}
				if i > 0 && (n(3) <= lastPublished || n(4) <= lastDelivered) {
					t.Errorf("line %q: published and delivered should grow from %d and %d at 50 msg/s", m[0], lastPublished, lastDelivered)
				}
				lastPublished, lastDelivered = n(3), n(4)
			}
			last := lines[len(lines)-1]
			if p99, err := strconv.ParseFloat(strings.TrimSuffix(last[6], "ms"), 64); err != nil || p99 <= 0 || p99 > r.Latency.MaxMS+1 {
				t.Errorf("last progress line's p99 %q: want a latency in ms within the run's (max %.2fms)", last[6], r.Latency.MaxMS)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		_, log := benchLog(t, endpoint, "-mode", "sustained", "-n", "2", "-rate", "50", "-duration", "1s", "-progress", "0")
		if strings.Contains(log, "progress ") {
			t.Errorf("-progress 0 printed progress lines:\n%s", log)
		}
	})
}
