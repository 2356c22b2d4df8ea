package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// report holds the fields of a pubsub-bench JSON report that the plots use;
// the names are the tool's.
type report struct {
	Label            string  `json:"label"`
	Mode             string  `json:"mode"`
	Transport        string  `json:"transport"`
	Subscribers      int     `json:"subscribers"`
	Rate             float64 `json:"rate"`
	Publishers       int     `json:"publishers"`
	Batch            int     `json:"batch"`
	PublishPerSec    float64 `json:"publish_per_s"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	Latency          struct {
		P50MS float64 `json:"p50_ms"`
		P90MS float64 `json:"p90_ms"`
		P99MS float64 `json:"p99_ms"`
		MaxMS float64 `json:"max_ms"`
	} `json:"latency"`
	Server *struct {
		BytesPerSubscriber             float64 `json:"bytes_per_subscriber"`
		IdleSubscribers                int64   `json:"idle_subscribers"`
		CPUSecondsPerMillionDeliveries float64 `json:"cpu_s_per_million_deliveries"`
	} `json:"server"`
}

// build is one series: the reports of one build of the server.
type build struct {
	Name    string   `json:"build"`
	Source  string   `json:"source"`
	Reports []report `json:"reports"`
}

// maxFile bounds what is read of one file: a report is a few kB.
const maxFile = 16 << 20

// load reads a results file, or NAME=DIR: the reports in DIR.
func load(arg string) (build, error) {
	if name, dir, ok := strings.Cut(arg, "="); ok {
		return loadDir(name, dir)
	}
	var b build
	if err := readJSON(arg, &b); err != nil {
		return build{}, err
	}
	if b.Name == "" || len(b.Reports) == 0 {
		return build{}, fmt.Errorf("%s: want {\"build\": NAME, \"reports\": [...]}, with reports", arg)
	}
	return b, nil
}

// loadDir reads every *.json report in dir, in name order (run-all.sh
// numbers its runs).
func loadDir(name, dir string) (build, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return build{}, err
	}
	if len(files) == 0 {
		return build{}, fmt.Errorf("%s: no JSON reports", dir)
	}
	sort.Strings(files)
	b := build{Name: name, Source: dir}
	for _, f := range files {
		var r report
		if err := readJSON(f, &r); err != nil {
			return build{}, err
		}
		b.Reports = append(b.Reports, r)
	}
	return b, nil
}

func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxFile {
		return fmt.Errorf("%s: larger than %d bytes", path, maxFile)
	}
	if err := json.NewDecoder(f).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// pick returns b's reports that keep accepts.
func (b build) pick(keep func(report) bool) []report {
	var out []report
	for _, r := range b.Reports {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}
