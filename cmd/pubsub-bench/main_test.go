package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// TestMain doubles as the worker process: -procs re-executes the test
// binary, which then holds its share of subscribers instead of testing.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		os.Exit(workerMain(os.Stdin, os.Stdout))
	}
	testserver.Main(m)
}

const testKey = "bench-test-key"

// startServer runs a real Caddy in this process, with the endpoints of
// the benchmark's Caddyfile, which need testKey to publish, and returns
// its base URL.
func startServer(t *testing.T) string {
	t.Helper()
	srv := testserver.Start(t, `http://127.0.0.1:{PORT} {
	pubsub /events* {
		publish_key `+testKey+`
	}
	pubsub /throughput* {
		hub throughput
		queue 100000
		publish_key `+testKey+`
	}
}`)
	return srv.Base
}

// bench runs the tool as its command line does, against endpoint, with
// the server's PID being this process's, and returns its JSON report. With
// no endpoint, args name the server (-start).
func bench(t *testing.T, endpoint string, args ...string) Report {
	t.Helper()
	r, _ := benchLog(t, endpoint, args...)
	return r
}

// benchLog is bench that also returns what the tool wrote on stderr.
func benchLog(t *testing.T, endpoint string, args ...string) (Report, string) {
	t.Helper()
	var target []string
	if endpoint != "" {
		target = []string{"-url", endpoint, "-key", testKey, "-pid", strconv.Itoa(os.Getpid())}
	}
	out := filepath.Join(t.TempDir(), "report.json")
	args = append(append(target,
		"-settle", "200ms", "-idle", "200ms", "-drain", "5s", "-connect-timeout", "20s",
		"-out", out,
	), args...)
	var stdout, stderr bytes.Buffer
	if code := cli(args, &stdout, &stderr); code != 0 {
		t.Fatalf("pubsub-bench %v: exit %d\n%s", args, code, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report %s: %v", b, err)
	}
	t.Logf("%s", stdout.String())
	return r, stderr.String()
}

// checkDelivery asserts that every subscriber got every message once,
// with sane latency figures.
func checkDelivery(t *testing.T, r Report, subscribers int64) {
	t.Helper()
	checkDeliveryTo(t, r, subscribers, subscribers)
}

// checkDeliveryTo is checkDelivery where each message goes to perMessage
// of the subscribers (-topics).
func checkDeliveryTo(t *testing.T, r Report, subscribers, perMessage int64) {
	t.Helper()
	if r.Connected != subscribers || r.ConnectFailed != 0 || r.Disconnected != 0 {
		t.Errorf("connected %d, failed %d, dropped %d; want %d, 0, 0 (errors %v, drops %v)",
			r.Connected, r.ConnectFailed, r.Disconnected, subscribers, r.ConnectErrors, r.DisconnectReasons)
	}
	if r.Published == 0 || r.PublishFailed != 0 {
		t.Errorf("published %d, failed %d (%v)", r.Published, r.PublishFailed, r.PublishErrors)
	}
	if want := r.Published * perMessage; r.Expected != want || r.Delivered != want {
		t.Errorf("delivered %d of %d expected; want %d", r.Delivered, r.Expected, want)
	}
	if r.Lost != 0 || r.Duplicated != 0 || r.Gaps != 0 || r.Foreign != 0 {
		t.Errorf("lost %d, duplicated %d, gaps %d, foreign %d: want none", r.Lost, r.Duplicated, r.Gaps, r.Foreign)
	}
	l := r.Latency
	if l.Count != uint64(r.Delivered) {
		t.Errorf("%d latency samples for %d deliveries", l.Count, r.Delivered)
	}
	if !(0 < l.P50MS && l.P50MS <= l.P90MS && l.P90MS <= l.P99MS && l.P99MS <= l.MaxMS) {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
	if l.P99MS > 2000 {
		t.Errorf("p99 latency %.1f ms on loopback with a few subscribers", l.P99MS)
	}
	if r.Server == nil || r.Server.PID <= 0 || r.Server.RSSIdleBytes <= 0 || r.Server.LoadCPUSeconds < 0 {
		t.Errorf("server figures missing: %+v", r.Server)
	}
}
