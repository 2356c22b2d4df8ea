package observability_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// globals give Caddy an admin endpoint on a loopback port and send every
// log line, debug included, to a JSON file.
const globals = `{
	admin {ADMIN}
	persist_config off
	auto_https off
	grace_period 5s
	log {
		output file {LOG}
		format json
		level DEBUG
	}
}
`

// server is Caddy running in this process.
type server struct {
	Base  string // http://127.0.0.1:PORT
	Admin string // http://127.0.0.1:PORT of the admin endpoint
	Log   string // path of the JSON log file
}

// start loads site ({PORT}: a free port) with globals and stops Caddy when
// the test ends.
func start(t *testing.T, site string) *server {
	t.Helper()
	port, admin := testserver.FreePort(t), testserver.FreePort(t)
	s := &server{
		Base:  fmt.Sprintf("http://127.0.0.1:%d", port),
		Admin: fmt.Sprintf("http://127.0.0.1:%d", admin),
		Log:   filepath.Join(t.TempDir(), "caddy.log"),
	}
	body := strings.NewReplacer("{ADMIN}", s.Admin[len("http://"):], "{LOG}", s.Log).Replace(globals) +
		strings.ReplaceAll(site, "{PORT}", strconv.Itoa(port))
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	return s
}

// get returns the status and body of a GET, which must be answered within
// Wait.
func get(t *testing.T, u string, header http.Header) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testserver.Wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metrics is one scrape: the value of each series, keyed by its name and
// labels as exposed (labels sorted by name), e.g.
// caddy_pubsub_subscribers{hub="main",transport="sse"}.
type metrics map[string]float64

// scrape reads the Prometheus text exposition at u.
func scrape(t *testing.T, u string) metrics {
	t.Helper()
	code, body := get(t, u, nil)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, code, body)
	}
	m := make(metrics)
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

// want checks series against their expected values.
func (m metrics) want(t *testing.T, series map[string]float64) {
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

// waitMetric scrapes u until series has value v.
func waitMetric(t *testing.T, u, series string, v float64) metrics {
	t.Helper()
	var m metrics
	deadline := time.Now().Add(testserver.Wait)
	for {
		if m = scrape(t, u); m[series] == v {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present: %v), want %v", series, m[series], hasSeries(m, series), v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasSeries(m metrics, series string) bool {
	_, ok := m[series]
	return ok
}

// logLine is one line of Caddy's JSON log.
type logLine struct {
	Level  string         `json:"level"`
	Logger string         `json:"logger"`
	Msg    string         `json:"msg"`
	Fields map[string]any `json:"-"`
}

// readLog returns the lines of the JSON log at path.
func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if err := json.Unmarshal(sc.Bytes(), &l.Fields); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}
