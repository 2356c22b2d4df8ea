package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docs is where BENCHMARKS.md's figures and the results they are drawn
// from are committed.
const docs = "../../../docs/images/bench"

// committedResults are the results plot.sh draws by default.
var committedResults = []string{
	docs + "/2026-11-22-after.json",
	docs + "/2026-11-22-before-run-2.json",
	docs + "/2026-11-22-before-run-1.json",
}

// The committed figures are what the committed results draw: a change to
// the results or to the drawing that was not followed by plot.sh fails.
func TestCommittedFiguresAreCurrent(t *testing.T) {
	out := t.TempDir()
	var stderr bytes.Buffer
	if code := cli(append([]string{"-out", out}, committedResults...), &stderr); code != 0 {
		t.Fatalf("plot: exit %d: %s", code, stderr.String())
	}
	for _, f := range figures {
		got, err := os.ReadFile(filepath.Join(out, f.file))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(docs, f.file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the committed results draw: run cmd/pubsub-bench/plot.sh", f.file)
		}
		for _, b := range []string{"after", "before, run 2", "before, run 1"} {
			if !bytes.Contains(got, []byte(b)) {
				t.Errorf("%s: no series %q in its legend", f.file, b)
			}
		}
	}
}

// NAME=DIR reads a directory of reports as run-all.sh writes them, and
// a figure whose runs no build has is an error rather than an empty plot.
func TestReportDirectory(t *testing.T) {
	dir := t.TempDir()
	reports := map[string]string{
		"01-idle-sse-1000.json":    `{"label":"01-idle-sse-1000","mode":"idle","transport":"sse","subscribers":1000,"server":{"bytes_per_subscriber":37000,"idle_subscribers":1000}}`,
		"02-idle-sse-5000.json":    `{"label":"02-idle-sse-5000","mode":"idle","transport":"sse","subscribers":5000,"server":{"bytes_per_subscriber":38000,"idle_subscribers":5000}}`,
		"03-fanout-sse-1000.json":  `{"label":"03","mode":"fanout","transport":"sse","subscribers":1000,"latency":{"p50_ms":7,"p99_ms":13},"server":{"cpu_s_per_million_deliveries":20}}`,
		"04-sustained-ws-100.json": `{"label":"04","mode":"sustained","transport":"ws","subscribers":100,"rate":10,"server":{"cpu_s_per_million_deliveries":14}}`,
		"05-publish.json":          `{"label":"05","mode":"publish","transport":"sse","subscribers":1,"publishers":8,"batch":1,"publish_per_s":24000}`,
	}
	for name, body := range reports {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := load("short runs=" + dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "short runs" || len(b.Reports) != 5 || b.Reports[0].Label != "01-idle-sse-1000" {
		t.Fatalf("loaded %q with %d reports, first %q; want \"short runs\", 5, in file order", b.Name, len(b.Reports), b.Reports[0].Label)
	}
	out := t.TempDir()
	files, err := drawAll([]build{b}, out)
	if err != nil || len(files) != len(figures) {
		t.Fatalf("drawAll: %v, %v", files, err)
	}

	var stderr bytes.Buffer
	if code := cli([]string{"-out", out, "empty=" + t.TempDir()}, &stderr); code != 1 || !strings.Contains(stderr.String(), "no JSON reports") {
		t.Errorf("an empty directory: exit %d, %q; want 1 and no JSON reports", code, stderr.String())
	}
	onlyIdle := build{Name: "idle", Reports: b.Reports[:2]}
	if _, err := drawAll([]build{onlyIdle}, out); err == nil || !strings.Contains(err.Error(), "fanout-latency.svg: no report") {
		t.Errorf("no fan-out runs: %v; want the figure named and no data", err)
	}
}
