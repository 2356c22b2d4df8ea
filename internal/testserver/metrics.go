package testserver

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Metrics are the series of a Prometheus text exposition by name with
// labels, as written: `caddy_pubsub_gaps_total{hub="default"}`.
type Metrics map[string]float64

// Scrape reads the Prometheus text exposition at u (Caddy's admin
// /metrics, or a site's metrics handler).
func Scrape(t testing.TB, u string) Metrics {
	t.Helper()
	code, body, _ := Request(t, http.MethodGet, u, "", "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, code, body)
	}
	m := make(Metrics)
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// Want checks series against their expected values.
func (m Metrics) Want(t testing.TB, series map[string]float64) {
	t.Helper()
	for name, v := range series {
		got, ok := m[name]
		if !ok {
			t.Errorf("no series %s", name)
		} else if got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
}

// WaitMetric scrapes u until series has value v, for at most Wait.
func WaitMetric(t testing.TB, u, series string, v float64) Metrics {
	t.Helper()
	var m Metrics
	deadline := time.Now().Add(Wait)
	for {
		if m = Scrape(t, u); m[series] == v {
			return m
		}
		if time.Now().After(deadline) {
			_, present := m[series]
			t.Fatalf("%s = %v (present: %v), want %v", series, m[series], present, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
