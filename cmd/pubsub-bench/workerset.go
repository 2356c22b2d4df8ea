package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// workers are the subscriber holders of one run.
type workers []workerHandle

// startWorkers splits the subscribers over procs workers: this process
// when procs is 1, else child processes.
func startWorkers(ctx context.Context, cfg Config, procs int, topic, startID string, connectBy, deadline time.Time, log io.Writer) (workers, error) {
	var ws workers
	for k := range procs {
		first, next := k*cfg.Subscribers/procs, (k+1)*cfg.Subscribers/procs
		wc := workerConfig{
			Peer:         cfg.Peer,
			Addrs:        cfg.target.addrs,
			Hosts:        cfg.target.hosts,
			Topics:       cfg.Topics,
			Transport:    cfg.Transport,
			Addr:         cfg.target.addr,
			Host:         cfg.target.host,
			Path:         cfg.target.path,
			Query:        cfg.target.query,
			IPv4:         cfg.target.ipv4,
			Topic:        topic,
			StartID:      startID,
			First:        first,
			Count:        next - first,
			Sources:      cfg.Sources,
			Publishers:   cfg.Publishers,
			Size:         cfg.Size,
			Dials:        cfg.Dials,
			LatencyEvery: cfg.Progress,
			TLS:          cfg.target.tls,
			ServerName:   cfg.target.serverName,
			CAPEM:        cfg.caPEM,
			Insecure:     cfg.Insecure,
			HTTP2:        cfg.HTTP2,
			HTTP2OwnConn: cfg.OwnConn,
			Token:        cfg.Token,
			ConnectBy:    connectBy,
			Deadline:     deadline,
		}
		if procs == 1 {
			w, err := startWorker(wc)
			if err != nil {
				return nil, err
			}
			return workers{w}, nil
		}
		c, err := startChild(ctx, wc, log)
		if err != nil {
			_, _ = ws.stop()
			return nil, err
		}
		ws = append(ws, c)
	}
	return ws, nil
}

func (p workerProgress) live() int64 { return p.Connected - p.Disconnected }

func (ws workers) progress() workerProgress {
	var t workerProgress
	for _, w := range ws {
		p := w.progress()
		t.Connected += p.Connected
		t.Failed += p.Failed
		t.Disconnected += p.Disconnected
		t.Received += p.Received
		t.Unique += p.Unique
	}
	return t
}

// latencySoFar merges the workers' latency histograms so far.
func (ws workers) latencySoFar() HistogramData {
	var t HistogramData
	for _, w := range ws {
		t.Merge(w.latencySoFar())
	}
	return t
}

// waitConnected waits until every subscriber connected or failed, or
// until the connect deadline.
func (ws workers) waitConnected(ctx context.Context, n int, deadline time.Time) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		p := ws.progress()
		if p.Connected+p.Failed >= int64(n) || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// stop stops every worker, in parallel, and adds up their results.
func (ws workers) stop() (workerResult, error) {
	results := make([]workerResult, len(ws))
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = w.stop()
		}()
	}
	wg.Wait()
	var t workerResult
	for _, r := range results {
		t.Connected += r.Connected
		t.Failed += r.Failed
		t.Disconnected += r.Disconnected
		t.Received += r.Received
		t.Unique += r.Unique
		t.Duplicated += r.Duplicated
		t.Skipped += r.Skipped
		t.Gaps += r.Gaps
		t.Foreign += r.Foreign
		for i, n := range r.PerServer {
			if i >= len(t.PerServer) {
				t.PerServer = append(t.PerServer, make([]int64, i+1-len(t.PerServer))...)
			}
			t.PerServer[i] += n
		}
		t.ConnectErrors = addCounts(t.ConnectErrors, r.ConnectErrors)
		t.DisconnectReasons = addCounts(t.DisconnectReasons, r.DisconnectReasons)
		t.Latency.Merge(r.Latency)
	}
	return t, errors.Join(errs...)
}

// clientCPU is the CPU time of this process and of its worker processes.
func (ws workers) clientCPU() time.Duration {
	pids := map[int]bool{os.Getpid(): true}
	for _, w := range ws {
		pids[w.pid()] = true
	}
	var total time.Duration
	for pid := range pids {
		if s, err := readProc(pid); err == nil {
			total += s.cpu
		}
	}
	return total
}

func addCounts(into, from map[string]int64) map[string]int64 {
	if len(from) == 0 {
		return into
	}
	if into == nil {
		into = map[string]int64{}
	}
	for k, v := range from {
		into[k] += v
	}
	return into
}

func describeCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "no error reported"
	}
	keys := byCount(m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", m[k], k)
	}
	return strings.Join(parts, "; ")
}
