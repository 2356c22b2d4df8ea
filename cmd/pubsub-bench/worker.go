package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// workerEnv marks a process started by the parent to hold a share of the
// subscribers. Its first stdin line is its workerConfig; "stop" (or EOF)
// on stdin ends it. It reports on stdout, one JSON workerMessage a line.
const workerEnv = "PUBSUB_BENCH_WORKER"

// maxPublishers bounds -publishers, and so each subscriber's sequence state.
const maxPublishers = 64

// workerConfig is what a worker needs to hold subscribers [First,
// First+Count) of the run.
type workerConfig struct {
	Transport  string              `json:"transport"`
	Addr       string              `json:"addr"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	Query      map[string][]string `json:"query"`
	IPv4       bool                `json:"ipv4"`
	Topic      string              `json:"topic"`
	StartID    string              `json:"start_id"`
	First      int                 `json:"first"`
	Count      int                 `json:"count"`
	Sources    int                 `json:"sources"`
	Publishers int                 `json:"publishers"`
	Size       int                 `json:"size"`
	Dials      int                 `json:"dials"`
	// ConnectBy ends connection attempts: a subscriber not live by then
	// counts as failed, so none joins after the measurements begin.
	ConnectBy time.Time `json:"connect_by"`
	// Deadline stops the worker whatever the parent does.
	Deadline time.Time `json:"deadline"`
}

// workerProgress is a worker's running totals.
type workerProgress struct {
	Connected    int64 `json:"connected"`
	Failed       int64 `json:"failed"`
	Disconnected int64 `json:"disconnected"`
	Received     int64 `json:"received"`
	Unique       int64 `json:"unique"`
}

// workerResult is a worker's final account.
type workerResult struct {
	workerProgress
	Duplicated        int64            `json:"duplicated"`
	Skipped           int64            `json:"skipped"`
	Gaps              int64            `json:"gaps"`
	Foreign           int64            `json:"foreign"`
	ConnectErrors     map[string]int64 `json:"connect_errors,omitempty"`
	DisconnectReasons map[string]int64 `json:"disconnect_reasons,omitempty"`
	Latency           HistogramData    `json:"latency"`
}

// workerMessage is one line a worker process writes.
type workerMessage struct {
	Progress *workerProgress `json:"progress,omitempty"`
	Result   *workerResult   `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// workerHandle is a worker seen from the parent: in this process or a
// child process.
type workerHandle interface {
	progress() workerProgress
	pid() int
	stop() (workerResult, error)
}

// worker holds subscribers and counts what they receive.
type worker struct {
	cfg    workerConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	dials  chan struct{}

	connected, failed, disconnected atomic.Int64
	received, unique                atomic.Int64
	duplicated, skipped             atomic.Int64
	gaps, foreign                   atomic.Int64
	latency                         Histogram
	connectErrors                   errorCounts
	disconnects                     errorCounts
}

// startWorker connects cfg.Count subscribers in the background.
func startWorker(cfg workerConfig) *worker {
	ctx, cancel := context.WithDeadline(context.Background(), cfg.Deadline)
	w := &worker{cfg: cfg, ctx: ctx, cancel: cancel, dials: make(chan struct{}, cfg.Dials)}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for i := range cfg.Count {
			select {
			case w.dials <- struct{}{}:
			case <-ctx.Done():
				w.failed.Add(int64(cfg.Count - i))
				return
			}
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				w.subscribe(cfg.First + i)
			}()
		}
	}()
	return w
}

func (w *worker) progress() workerProgress {
	return workerProgress{
		Connected:    w.connected.Load(),
		Failed:       w.failed.Load(),
		Disconnected: w.disconnected.Load(),
		Received:     w.received.Load(),
		Unique:       w.unique.Load(),
	}
}

func (w *worker) pid() int { return os.Getpid() }

// stop closes every subscriber, waits for them and returns the totals.
func (w *worker) stop() (workerResult, error) {
	w.cancel()
	w.wg.Wait()
	return workerResult{
		workerProgress:    w.progress(),
		Duplicated:        w.duplicated.Load(),
		Skipped:           w.skipped.Load(),
		Gaps:              w.gaps.Load(),
		Foreign:           w.foreign.Load(),
		ConnectErrors:     w.connectErrors.snapshot(),
		DisconnectReasons: w.disconnects.snapshot(),
		Latency:           w.latency.Snapshot(),
	}, nil
}

// subscribe runs subscriber i over the configured transport until the
// worker stops or the server drops it.
func (w *worker) subscribe(i int) {
	s := &subscriber{w: w, index: i, next: make([]int64, w.cfg.Publishers)}
	for p := range s.next {
		s.next[p] = 1
	}
	var err error
	switch w.cfg.Transport {
	case "ws":
		err = s.runWS()
	case "poll":
		err = s.runPoll()
	default:
		err = s.runSSE()
	}
	switch {
	case !s.live:
		// Counted by connectFailed.
	case w.ctx.Err() != nil:
		// Stopped by us.
	default:
		w.disconnected.Add(1)
		reason := s.closeReason
		if reason == "" {
			reason = classify(err)
		}
		w.disconnects.add(reason)
	}
}

// connectFailed accounts a subscriber that never got live; it frees its
// dial slot.
func (s *subscriber) connectFailed(err error) error {
	<-s.w.dials
	s.w.failed.Add(1)
	s.w.connectErrors.add(classify(err))
	return err
}

// errLate is a connection that got live after -connect-timeout.
var errLate = errors.New("connected after -connect-timeout")

// connectDone marks a subscriber live and frees its dial slot, or fails
// it when it is too late.
func (s *subscriber) connectDone() error {
	if time.Now().After(s.w.cfg.ConnectBy) {
		return s.connectFailed(errLate)
	}
	<-s.w.dials
	s.live = true
	s.w.connected.Add(1)
	return nil
}

// dial connects subscriber i from its loopback source address, by
// deadline if not zero, and closes the connection when the worker stops.
func (w *worker) dial(i int, deadline time.Time) (net.Conn, func(), error) {
	d := net.Dialer{Timeout: 10 * time.Second, Deadline: deadline}
	if w.cfg.IPv4 {
		d.LocalAddr = &net.TCPAddr{IP: sourceAddr(i % w.cfg.Sources)}
	}
	conn, err := d.DialContext(w.ctx, "tcp", w.cfg.Addr)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(w.ctx, func() { closeNow(conn) })
	return conn, func() { stop(); closeNow(conn) }, nil
}

// closeNow closes conn with a reset: no TIME_WAIT left on the client's
// source ports, so runs can follow each other.
func closeNow(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// sourceAddr returns the k-th loopback source address: 127.0.0.2 to
// 127.0.0.254, then 127.0.1.2 to 127.0.1.254, and so on.
func sourceAddr(k int) net.IP {
	block, host := k/253, k%253+2
	return net.IPv4(127, byte(block>>8), byte(block), byte(host))
}

// classify names an error without addresses or ports, so the counts of
// distinct errors stay few, and says what to change when it is a limit.
func classify(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "closed"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files in the load client: raise its RLIMIT_NOFILE hard limit or use more -procs"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port: use more -sources"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: is the server running, is its listen backlog (net.core.somaxconn) full?"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server (its open-files limit? it stopped?)"
	case errors.Is(err, errLate):
		return errLate.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &errno):
		return errno.Error()
	}
	var status statusError
	if errors.As(err, &status) {
		return status.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var pe protocolError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	// The last part of a wrapped error names the cause without the
	// addresses before it.
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return "error: " + msg[:min(len(msg), 100)]
}

// statusError is an HTTP error answer to a subscribe request.
type statusError struct {
	code   int
	reason string
}

func (e statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.reason) }

// protocolError is a server answer the client cannot read.
type protocolError string

func (e protocolError) Error() string { return string(e) }

// errorCounts counts errors by name, keeping at most maxErrorKinds names.
type errorCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

const maxErrorKinds = 16

func (e *errorCounts) add(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]int64{}
	}
	if _, ok := e.m[name]; !ok && len(e.m) >= maxErrorKinds {
		name = "other errors"
	}
	e.m[name]++
}

func (e *errorCounts) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

// workerMain is a worker process: it reads its configuration from in,
// holds its subscribers until told to stop, and reports on out.
func workerMain(in io.Reader, out io.Writer) int {
	lines := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	if !lines.Scan() {
		_ = enc.Encode(workerMessage{Error: "no configuration on stdin"})
		return 2
	}
	var cfg workerConfig
	if err := json.Unmarshal(lines.Bytes(), &cfg); err != nil {
		_ = enc.Encode(workerMessage{Error: "configuration: " + err.Error()})
		return 2
	}
	if _, err := raiseFileLimit(); err != nil {
		_ = enc.Encode(workerMessage{Error: err.Error()})
		return 1
	}
	w := startWorker(cfg)

	// Any line or EOF on stdin means stop: a parent that dies closes the
	// pipe, so the worker never outlives it.
	stopped := make(chan struct{})
	go func() {
		lines.Scan()
		close(stopped)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-tick.C:
			p := w.progress()
			if err := enc.Encode(workerMessage{Progress: &p}); err != nil {
				running = false
			}
		case <-stopped:
			running = false
		case <-w.ctx.Done():
			running = false
		}
	}
	res, _ := w.stop()
	if err := enc.Encode(workerMessage{Result: &res}); err != nil {
		return 1
	}
	return 0
}

// childWorker is a worker process seen from the parent.
type childWorker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	latest workerProgress
	result chan workerMessage // the final message: result or error
	exited chan error
}

// startChild starts this executable as a worker holding cfg's share.
func startChild(ctx context.Context, cfg workerConfig, stderr io.Writer) (*childWorker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable to start workers: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting worker: %w", err)
	}
	c := &childWorker{cmd: cmd, stdin: stdin, result: make(chan workerMessage, 1), exited: make(chan error, 1)}
	go func() {
		c.read(stdout)
		c.exited <- cmd.Wait()
	}()
	b, _ := json.Marshal(cfg)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("configuring worker: %w", err)
	}
	return c, nil
}

// read takes the worker's reports until its stdout closes.
func (c *childWorker) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	final := workerMessage{Error: "worker exited without a result"}
	for sc.Scan() {
		var m workerMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			final = workerMessage{Error: "unreadable worker report: " + err.Error()}
			continue
		}
		switch {
		case m.Progress != nil:
			c.mu.Lock()
			c.latest = *m.Progress
			c.mu.Unlock()
		case m.Result != nil, m.Error != "":
			final = m
		}
	}
	c.result <- final
}

func (c *childWorker) progress() workerProgress {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest
}

func (c *childWorker) pid() int { return c.cmd.Process.Pid }

// stop asks the worker to stop and waits for its result and its exit.
func (c *childWorker) stop() (workerResult, error) {
	_, _ = c.stdin.Write([]byte("stop\n"))
	_ = c.stdin.Close()
	var m workerMessage
	select {
	case m = <-c.result:
	case <-time.After(time.Minute):
		_ = c.cmd.Process.Kill()
		m = <-c.result
	}
	exitErr := <-c.exited
	switch {
	case m.Error != "":
		return workerResult{}, fmt.Errorf("worker %d: %s", c.pid(), m.Error)
	case m.Result == nil:
		return workerResult{}, fmt.Errorf("worker %d: no result (%v)", c.pid(), exitErr)
	}
	return *m.Result, nil
}
