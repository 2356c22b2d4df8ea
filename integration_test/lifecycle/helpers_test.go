package lifecycle_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// stopLimit is how long Caddy may take to exit once asked to stop.
const stopLimit = 5 * time.Second

// process is the built Caddy running as a child process, with its admin
// endpoint on a loopback port.
type process struct {
	bin    string
	dir    string // config, data and home directory
	config string // the Caddyfile it runs
	port   int
	Base   string // http://127.0.0.1:PORT
	Admin  string // 127.0.0.1:PORT of the admin endpoint

	cmd  *exec.Cmd
	out  testserver.LockedBuffer
	done chan struct{} // closed when the process has exited
}

// globals are the child's global options: admin endpoint on loopback, no
// autosave, no HTTPS, JSON logs on stderr.
const globals = `{
	admin {ADMIN}
	persist_config off
	auto_https off
}
`

// startCaddy runs bin on site ({PORT}: a free port) and kills it when the
// test ends if it is still running.
func startCaddy(t *testing.T, bin, site string) *process {
	t.Helper()
	p := &process{bin: bin, dir: t.TempDir(), port: testserver.FreePort(t), done: make(chan struct{})}
	p.Base = fmt.Sprintf("http://127.0.0.1:%d", p.port)
	p.Admin = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	p.config = filepath.Join(p.dir, "Caddyfile")
	p.writeConfig(t, site)
	p.cmd = exec.Command(bin, "run", "--config", p.config, "--adapter", "caddyfile")
	p.cmd.Env = p.env()
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("Caddy's output:\n%s", p.out.String())
		}
	})
	testserver.Eventually(t, "Caddy listening", func() bool {
		select {
		case <-p.done:
			t.Fatalf("Caddy exited at start:\n%s", p.out.String())
		default:
		}
		return p.listening(p.Base[len("http://"):]) && p.listening(p.Admin)
	})
	return p
}

func (p *process) listening(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func (p *process) env() []string {
	return append(os.Environ(), "XDG_CONFIG_HOME="+p.dir, "XDG_DATA_HOME="+p.dir, "HOME="+p.dir)
}

// writeConfig writes the Caddyfile the process runs (or reloads).
func (p *process) writeConfig(t *testing.T, site string) {
	t.Helper()
	body := strings.ReplaceAll(globals, "{ADMIN}", p.Admin) + strings.ReplaceAll(site, "{PORT}", fmt.Sprint(p.port))
	if err := os.WriteFile(p.config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cli runs the Caddy CLI against the process's admin endpoint.
func (p *process) cli(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(p.bin, append(args, "--address", p.Admin)...)
	cmd.Env = p.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// reload loads site with `caddy reload`.
func (p *process) reload(t *testing.T, site string) {
	t.Helper()
	p.writeConfig(t, site)
	p.cli(t, "reload", "--config", p.config, "--adapter", "caddyfile")
}

// waitExit waits for the process to exit within limit and returns how
// long it took and its exit code.
func (p *process) waitExit(t *testing.T, since time.Time, limit time.Duration) (time.Duration, int) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Until(since.Add(limit))):
		t.Fatalf("Caddy still running %s after it was asked to stop", limit)
	}
	return time.Since(since), p.cmd.ProcessState.ExitCode()
}

// hubStats is the part of GET /pubsub/stats these tests read.
type hubStats struct {
	Subscribers int            `json:"subscribers"`
	Transports  map[string]int `json:"transports"`
}

// waitSubscribers waits until the admin API's stats show hub with exactly
// the subscribers by transport in want: streams and long-polls are in
// place on the server.
func (p *process) waitSubscribers(t *testing.T, hubName string, want map[string]int) {
	t.Helper()
	var last hubStats
	deadline := time.Now().Add(testserver.Wait)
	for {
		resp, err := http.Get("http://" + p.Admin + "/pubsub/stats")
		if err != nil {
			t.Fatal(err)
		}
		var answer struct{ Hubs map[string]hubStats }
		err = json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("stats: %v", err)
		}
		last = answer.Hubs[hubName]
		if sameCounts(last.Transports, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub %s: subscribers %v, want %v", hubName, last.Transports, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sameCounts(got, want map[string]int) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	for k, v := range got {
		if want[k] != v {
			return false
		}
	}
	return true
}

// publishBurst publishes n messages of size bytes to topic and returns
// their IDs.
func publishBurst(t *testing.T, endpoint, topic string, n, size int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		data := fmt.Sprintf("%03d:%s", i, strings.Repeat("x", size))
		ids[i] = testserver.Publish(t, endpoint, url.Values{"topic": {topic}, "data": {data}})
	}
	return ids
}

// readToEnd reads s until the server ends it and returns the IDs of its
// events and its comments, heartbeats left out.
func readToEnd(t *testing.T, s *testserver.SSEStream) (ids, comments []string) {
	t.Helper()
	deadline := time.After(testserver.Wait)
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				return ids, comments
			}
			switch {
			case ev.IsComment && ev.Comment != "":
				comments = append(comments, ev.Comment)
			case !ev.IsComment:
				ids = append(ids, ev.ID)
			}
		case <-deadline:
			t.Fatal("SSE stream not ended within", testserver.Wait)
		}
	}
}

// expectStreamsEnded checks what a stop left the clients with: the SSE
// stream got every message of burst, then the shutdown comment; the
// WebSocket got them too, then a 1001 close; the waiting long-poll an
// answer.
func expectStreamsEnded(t *testing.T, sse *testserver.SSEStream, ws *testserver.WSConn, poll *testserver.PendingPoll, burst []string) {
	t.Helper()
	ids, comments := readToEnd(t, sse)
	if strings.Join(ids, " ") != strings.Join(burst, " ") {
		t.Errorf("SSE got %d messages before the end, want the %d published:\n got %v\nwant %v", len(ids), len(burst), ids, burst)
	}
	if len(comments) == 0 || comments[len(comments)-1] != "closed: server shutting down" {
		t.Errorf("SSE stream ended with comments %q, want the shutdown reason last", comments)
	}

	frames, err := ws.ExpectClose()
	var got []string
	for _, f := range frames {
		got = append(got, f.ID)
	}
	if strings.Join(got, " ") != strings.Join(burst, " ") {
		t.Errorf("WebSocket got %v before closing, want %v", got, burst)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("WebSocket ended with %v, want close 1001 (going away)", err)
	}

	if a := poll.Wait(t); len(a.Messages) != 0 || a.LastID == "" {
		t.Errorf("waiting long-poll answered %+v, want no messages and a cursor", a)
	}
}

// expectGoingAway checks that ws, subscribed to nothing, was closed with
// 1001 and the shutdown reason.
func expectGoingAway(t *testing.T, ws *testserver.WSConn) {
	t.Helper()
	frames, err := ws.ExpectClose()
	var ce *websocket.CloseError
	if len(frames) != 0 || !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != "server shutting down" {
		t.Errorf("WebSocket without topics ended with %v after %d frames, want close 1001 (server shutting down)", err, len(frames))
	}
}

// get returns the body of a GET that must answer 200.
func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

// basicSite is a plain endpoint with a short heartbeat and an hour of
// history.
const basicSite = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		history 100 1h
	}
}
`
