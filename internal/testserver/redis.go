package testserver

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server that a test started on a free loopback port. By
// default it persists nothing, so a restart comes back empty.
type Redis struct {
	t    testing.TB
	Port int
	Addr string // 127.0.0.1:PORT
	URL  string // redis://127.0.0.1:PORT/0

	bin   string
	args  []string
	ready string // what the server prints once it serves; default "Ready to accept connections"

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *watchedOutput
	done chan struct{} // closed when the running process has exited
}

// StartRedis starts redis-server (skipping the test when it is not
// installed, failing under PUBSUB_REQUIRE_SERVICES=1) and stops it when
// the test ends. extra arguments are added to the command line, e.g.
// "--appendonly yes", or TLS settings; "{PORT}" in them stands for the
// server's port ("--port 0 --tls-port {PORT}" serves TLS only).
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	r := NewRedis(t, extra...)
	r.Start()
	return r
}

// NewRedis is StartRedis without the start: it picks the port and the
// command line, so a test can first watch clients fail to reach it.
func NewRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	bin := NeedBinary(t, "redis-server")
	port := FreePort(t)
	extra = slices.Clone(extra)
	for i, a := range extra {
		extra[i] = strings.ReplaceAll(a, "{PORT}", strconv.Itoa(port))
	}
	r := &Redis{
		t:    t,
		Port: port,
		Addr: fmt.Sprintf("127.0.0.1:%d", port),
		URL:  fmt.Sprintf("redis://127.0.0.1:%d/0", port),
		bin:  bin,
		args: append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir(),
		}, extra...),
	}
	t.Cleanup(r.Kill)
	return r
}

// Start starts the server (again, after Kill) on the same port and waits
// until it accepts connections.
func (r *Redis) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := &watchedOutput{ready: make(chan struct{}), marker: []byte(r.ready)}
	if r.ready == "" {
		out.marker = []byte("Ready to accept connections")
	}
	cmd := exec.Command(r.bin, r.args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	r.cmd, r.out, r.done = cmd, out, done
	select {
	case <-out.ready:
	case <-done:
		r.t.Fatalf("redis-server exited at start:\n%s", out.String())
	case <-time.After(Wait):
		r.t.Fatalf("redis-server not ready within %s:\n%s", Wait, out.String())
	}
}

// Kill stops the server at once (SIGKILL, nothing saved) and waits for it
// to exit. Killing a stopped server does nothing.
func (r *Redis) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// Pause freezes the server (SIGSTOP), as a machine that stops answering
// does: a replica paused misses what its master accepts meanwhile.
func (r *Redis) Pause() { r.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (r *Redis) Resume() { r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		r.t.Fatal("signal to a redis-server that is not running")
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

// watchedOutput keeps a server's output and closes ready when the server
// prints marker.
type watchedOutput struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	ready  chan struct{}
	marker []byte
	seen   bool
}

func (w *watchedOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() < 64<<10 {
		w.buf.Write(p)
	}
	if !w.seen && bytes.Contains(w.buf.Bytes(), w.marker) {
		w.seen = true
		close(w.ready)
	}
	return len(p), nil
}

func (w *watchedOutput) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
