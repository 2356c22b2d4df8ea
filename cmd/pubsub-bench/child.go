package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

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
	w, err := startWorker(cfg)
	if err != nil {
		_ = enc.Encode(workerMessage{Error: err.Error()})
		return 1
	}

	// Any line or EOF on stdin means stop: a parent that dies closes the
	// pipe, so the worker never outlives it.
	stopped := make(chan struct{})
	go func() {
		lines.Scan()
		close(stopped)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var latencySent time.Time
	for running := true; running; {
		select {
		case <-tick.C:
			p := w.progress()
			m := workerMessage{Progress: &p}
			if cfg.LatencyEvery > 0 && time.Since(latencySent) >= cfg.LatencyEvery {
				// A snapshot is a few kB: sent as often as the parent
				// prints it, not with every progress message.
				l := w.latency.Snapshot()
				m.Latency, latencySent = &l, time.Now()
			}
			if err := enc.Encode(m); err != nil {
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
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	mu      sync.Mutex
	latest  workerProgress
	latency HistogramData
	result  chan workerMessage // the final message: result or error
	exited  chan error
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
			if m.Latency != nil {
				c.latency = *m.Latency
			}
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

func (c *childWorker) latencySoFar() HistogramData {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latency
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
