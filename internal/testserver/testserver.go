// Package testserver runs a real Caddy with caddy-pubsub in the test
// process, loaded from Caddyfile text, and gives tests real HTTP clients on
// loopback sockets: publish, SSE streams, plain requests. Caddy's state is
// global, so tests of one package that use it run one at a time.
package testserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-pubsub/caddy-pubsub"
)

// Wait bounds every wait for an event.
const Wait = 10 * time.Second

// Main runs a test binary's tests with Caddy's config and data directories
// in a temporary directory; call it from TestMain.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "pubsub-integration-")
	if err != nil {
		panic(err)
	}
	// Caddy autosaves its config and keeps data under these.
	os.Setenv("XDG_CONFIG_HOME", dir)
	os.Setenv("XDG_DATA_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// MainGODEBUG is Main in a process whose environment has setting in
// GODEBUG: without it, the test binary runs itself again with it. This is
// for settings read from the environment once, at start, that no
// //go:debug line can set, such as net/http's http2xconnect=1 (the go
// command refuses a //go:debug line it does not know).
func MainGODEBUG(m *testing.M, setting string) {
	godebug := os.Getenv("GODEBUG")
	if !slices.Contains(strings.Split(godebug, ","), setting) {
		if godebug != "" {
			godebug += ","
		}
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, os.Args, append(os.Environ(), "GODEBUG="+godebug+setting))
		}
		panic("running the test binary again with GODEBUG=" + setting + ": " + err.Error())
	}
	Main(m)
}

// FreePort returns a TCP port that was free a moment ago on every
// interface (Caddy binds ":PORT"). It is drawn below the kernel's ephemeral
// range (32768 and up on Linux), where the source port of an outgoing
// connection cannot take it before the server binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free TCP port in 20000-31999")
	return 0
}

// Server is a Caddy running in this process.
type Server struct {
	t       testing.TB
	globals string
	Port    int
	Base    string // http://127.0.0.1:PORT
}

// GlobalOptions precede every site the tests load: no admin endpoint, no
// autosave, no HTTPS, errors-only logs. StartWith adds more before the
// closing brace.
const GlobalOptions = `{
	admin off
	persist_config off
	log {
		level ERROR
	}
	auto_https off
	grace_period 5s
}
`

// Start loads site, Caddyfile site blocks in which {PORT} stands for a free
// port, and stops Caddy when the test ends.
func Start(t testing.TB, site string) *Server {
	t.Helper()
	return StartWith(t, "", site)
}

// StartWith is Start with extra global options, such as a servers block.
func StartWith(t testing.TB, globals, site string) *Server {
	t.Helper()
	s := &Server{t: t, Port: FreePort(t), globals: globals}
	s.Base = fmt.Sprintf("http://127.0.0.1:%d", s.Port)
	s.Load(site)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	return s
}

// Load adapts site and loads it, replacing the running config (a reload).
func (s *Server) Load(site string) {
	s.t.Helper()
	if err := s.TryLoad(site); err != nil {
		s.t.Fatalf("loading config: %v", err)
	}
}

// LoadWith is Load with new global options, which later loads keep.
func (s *Server) LoadWith(globals, site string) {
	s.t.Helper()
	s.globals = globals
	s.Load(site)
}

// TryLoad is Load for a config that may be refused: it returns why, and the
// running config, if any, stays.
func (s *Server) TryLoad(site string) error {
	s.t.Helper()
	cfg, err := adapt(s.globals, strings.ReplaceAll(site, "{PORT}", fmt.Sprint(s.Port)))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return err
	}
	s.awaitOneListener()
	// The old config's server closes its idle keep-alive connections: a
	// request that picked one of them from the shared client's pool just
	// then would fail with EOF, which Go retries for no POST and not
	// always for a GET.
	http.DefaultClient.CloseIdleConnections()
	return nil
}

// Adapt turns site, with the test global options, into Caddy's JSON
// config, as `caddy adapt` does; errors name the file "Caddyfile".
func Adapt(site string) ([]byte, error) { return adapt("", site) }

// AdaptWith is Adapt with extra global options, placed as StartWith places
// them: the site's first line is line strings.Count(GlobalOptions, "\n") +
// strings.Count(globals, "\n") + 2 of the Caddyfile.
func AdaptWith(globals, site string) ([]byte, error) { return adapt(globals, site) }

func adapt(globals, site string) ([]byte, error) {
	body := GlobalOptions + site
	if globals != "" {
		body = strings.TrimSuffix(GlobalOptions, "}\n") + globals + "\n}\n" + site
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), map[string]any{"filename": "Caddyfile"})
	return cfg, err
}

// Publish posts form fields to endpoint and returns the assigned ID.
func Publish(t testing.TB, endpoint string, fields url.Values) string {
	t.Helper()
	resp, err := http.PostForm(endpoint, fields)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish to %s: %d %s", endpoint, resp.StatusCode, body)
	}
	var out struct{ ID string }
	if err := json.Unmarshal(body, &out); err != nil || out.ID == "" {
		t.Fatalf("publish answer %q: %v", body, err)
	}
	return out.ID
}

// PublishInStep publishes batch, a JSON array of messages, to endpoint and
// waits until sub has had each of them, in order: a publisher in step with
// one subscriber, so that only another one can fall behind.
func PublishInStep(t testing.TB, endpoint, batch string, sub *SSEStream) {
	t.Helper()
	status, body, _ := Request(t, http.MethodPost, endpoint, "application/json", batch, nil)
	var answer struct{ IDs []string }
	if err := json.Unmarshal([]byte(body), &answer); status != http.StatusOK || err != nil || len(answer.IDs) == 0 {
		t.Fatalf("batch publish to %s answered %d %q", endpoint, status, body)
	}
	for _, id := range answer.IDs {
		if ev := sub.Next(); ev.ID != id {
			t.Fatalf("subscriber got %s, want %s", ev.ID, id)
		}
	}
}

// Request sends a request and returns status, body and headers.
func Request(t testing.TB, method, endpoint, contentType, body string, header http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// Event is one Server-Sent Event, or a comment line (heartbeat).
type Event struct {
	ID, Event, Data string
	Comment         string
	IsComment       bool
}

// SSEStream is a subscriber reading an SSE response as it arrives.
type SSEStream struct {
	t      testing.TB
	Resp   *http.Response
	events chan Event
	cancel context.CancelFunc
	done   chan struct{} // closed when the stream ends
}

// Subscribe opens an SSE stream with client and header (either may be nil).
func Subscribe(t testing.TB, client *http.Client, endpoint string, header http.Header) *SSEStream {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("subscribe %s: %d %s", endpoint, resp.StatusCode, b)
	}
	s := &SSEStream{t: t, Resp: resp, events: make(chan Event, 256), cancel: cancel, done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.Close)
	return s
}

func (s *SSEStream) read() {
	defer close(s.done)
	defer close(s.events)
	sc := bufio.NewScanner(s.Resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev Event
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != nil {
				ev.Data = strings.Join(data, "\n")
				s.events <- ev
			}
			ev, data = Event{}, nil
		case strings.HasPrefix(line, ":"):
			s.events <- Event{Comment: strings.TrimSpace(line[1:]), IsComment: true}
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Event = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// Next returns the next event, skipping comments.
func (s *SSEStream) Next() Event {
	s.t.Helper()
	for {
		if ev := s.NextAny(); !ev.IsComment {
			return ev
		}
	}
}

// NextAny returns the next event or comment.
func (s *SSEStream) NextAny() Event {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("SSE stream ended")
		}
		return ev
	case <-time.After(Wait):
		s.t.Fatal("no SSE event within", Wait)
	}
	return Event{}
}

// ExpectEnd waits for the server to end the stream and returns the
// comments it sent last.
func (s *SSEStream) ExpectEnd() []string {
	s.t.Helper()
	var comments []string
	deadline := time.After(Wait)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return comments
			}
			if ev.IsComment {
				comments = append(comments, ev.Comment)
			}
		case <-deadline:
			s.t.Fatal("SSE stream did not end within", Wait)
		}
	}
}

// Events returns the stream's events and comments as they arrive; it is
// closed when the stream ends.
func (s *SSEStream) Events() <-chan Event { return s.events }

// Close ends the stream from the client side.
func (s *SSEStream) Close() {
	s.cancel()
	s.Resp.Body.Close()
	<-s.done
}

// Eventually polls cond until it holds or Wait passes, for state that
// offers no event to wait on (goroutine counts).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, Wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Validate checks a JSON config as `caddy validate` does: it provisions
// every module without starting the config.
func Validate(t testing.TB, raw []byte) error {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&cfg)
}

// awaitOneListener waits until one socket listens on the server's port. On
// Linux a reload binds the new config's listener beside the old one
// (SO_REUSEPORT) and the old server closes its own after the load returns:
// a connection the kernel queued on the old socket meanwhile is reset. A
// test's next request waits for that handover to end. Where /proc/net is
// not readable it does not wait.
func (s *Server) awaitOneListener() {
	s.t.Helper()
	deadline := time.Now().Add(Wait)
	for {
		n, ok := listeners(s.Port)
		if !ok || n <= 1 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%d sockets still listen on port %d %s after a reload", n, s.Port, Wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// listeners counts the TCP sockets listening on port, from /proc/net/tcp
// and tcp6; ok is false when neither can be read.
func listeners(port int) (n int, ok bool) {
	want := fmt.Sprintf(":%04X", port)
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		ok = true
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// local_address is f[1] (ADDR:PORT in hex), st is f[3]; 0A is LISTEN.
			if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
				n++
			}
		}
	}
	return n, ok
}
