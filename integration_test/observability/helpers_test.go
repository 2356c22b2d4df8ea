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
