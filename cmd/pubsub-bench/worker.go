package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
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
	// Peer is the kind of server: how to subscribe (peerPubsub, ...).
	Peer      string `json:"peer"`
	Transport string `json:"transport"`
	Addr      string `json:"addr"`
	Host      string `json:"host"`
	// Addrs and Hosts, when set, are the servers of a scale-out run:
	// subscriber i connects to Addrs[i mod len(Addrs)] instead of Addr.
	Addrs []string            `json:"addrs,omitempty"`
	Hosts []string            `json:"hosts,omitempty"`
	Path  string              `json:"path"`
	Query map[string][]string `json:"query"`
	IPv4  bool                `json:"ipv4"`
	Topic string              `json:"topic"`
	// Topics: subscriber i listens to topic i mod Topics (topicName).
	Topics     int    `json:"topics"`
	StartID    string `json:"start_id"`
	First      int    `json:"first"`
	Count      int    `json:"count"`
	Sources    int    `json:"sources"`
	Publishers int    `json:"publishers"`
	Size       int    `json:"size"`
	Dials      int    `json:"dials"`
	// LatencyEvery is how often a worker process sends its latency
	// histogram with its progress, for the progress lines (0: never).
	LatencyEvery time.Duration `json:"latency_every_ns"`
	// TLS: an https:// target, verified against CAPEM (the system's
	// roots when empty) for ServerName, or not at all when Insecure.
	TLS        bool   `json:"tls"`
	ServerName string `json:"server_name"`
	CAPEM      []byte `json:"ca_pem"`
	Insecure   bool   `json:"insecure"`
	// HTTP2 runs the SSE subscribers as streams of shared HTTP/2
	// connections, or each on its own with HTTP2OwnConn, as browsers are.
	HTTP2        bool `json:"http2"`
	HTTP2OwnConn bool `json:"http2_own_conn"`
	// Token is sent by each subscriber as Authorization: Bearer.
	Token string `json:"token"`
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
	Duplicated int64 `json:"duplicated"`
	Skipped    int64 `json:"skipped"`
	Gaps       int64 `json:"gaps"`
	Foreign    int64 `json:"foreign"`
	// PerServer is the distinct deliveries through each of Addrs.
	PerServer         []int64          `json:"per_server,omitempty"`
	ConnectErrors     map[string]int64 `json:"connect_errors,omitempty"`
	DisconnectReasons map[string]int64 `json:"disconnect_reasons,omitempty"`
	Latency           HistogramData    `json:"latency"`
}

// workerMessage is one line a worker process writes.
type workerMessage struct {
	Progress *workerProgress `json:"progress,omitempty"`
	// Latency is the histogram so far, sent with some progress messages.
	Latency *HistogramData `json:"latency,omitempty"`
	Result  *workerResult  `json:"result,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// workerHandle is a worker seen from the parent: in this process or a
// child process.
type workerHandle interface {
	progress() workerProgress
	// latencySoFar is the latency histogram so far (of a worker process:
	// as of its last report of it).
	latencySoFar() HistogramData
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
	// tls is the subscribers' TLS over HTTP/1.1 (nil: plain TCP); h2 is
	// the client of HTTP/2 SSE subscribers.
	tls *tls.Config
	h2  *http.Client
	// h2conf is the TLS of subscribers on HTTP/2 connections of their own.
	h2conf *tls.Config

	connected, failed, disconnected atomic.Int64
	received, unique                atomic.Int64
	perServer                       []atomic.Int64 // by index of cfg.Addrs
	duplicated, skipped             atomic.Int64
	gaps, foreign                   atomic.Int64
	latency                         Histogram
	connectErrors                   errorCounts
	disconnects                     errorCounts
}

// startWorker connects cfg.Count subscribers in the background.
func startWorker(cfg workerConfig) (*worker, error) {
	ctx, cancel := context.WithDeadline(context.Background(), cfg.Deadline)
	w := &worker{cfg: cfg, ctx: ctx, cancel: cancel, dials: make(chan struct{}, cfg.Dials), perServer: make([]atomic.Int64, len(cfg.Addrs))}
	if cfg.TLS {
		protos := []string{"http/1.1"}
		if cfg.HTTP2 {
			protos = []string{"h2"}
		}
		conf, err := clientTLS(cfg.CAPEM, cfg.Insecure, cfg.ServerName, protos...)
		if err != nil {
			cancel()
			return nil, err
		}
		if cfg.HTTP2 {
			w.h2, w.h2conf = w.newH2Client(conf, -1), conf
		} else {
			w.tls = conf
		}
	}
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
	return w, nil
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

func (w *worker) latencySoFar() HistogramData { return w.latency.Snapshot() }

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
		PerServer:         perServer(w.perServer),
		ConnectErrors:     w.connectErrors.snapshot(),
		DisconnectReasons: w.disconnects.snapshot(),
		Latency:           w.latency.Snapshot(),
	}, nil
}

// perServer reads the counters of each server.
func perServer(c []atomic.Int64) []int64 {
	if len(c) == 0 {
		return nil
	}
	out := make([]int64, len(c))
	for i := range c {
		out[i] = c[i].Load()
	}
	return out
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
		if w.h2 != nil {
			err = s.runSSEH2()
		} else {
			err = s.runSSE()
		}
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
// deadline if not zero, over TLS for an https:// target, and closes the
// connection when the worker stops.
func (w *worker) dial(i int, deadline time.Time) (net.Conn, func(), error) {
	return w.dialWith(i, deadline, w.tls)
}

// dialWith is dial with the TLS configuration conf (nil: plain TCP).
func (w *worker) dialWith(i int, deadline time.Time, conf *tls.Config) (net.Conn, func(), error) {
	d := net.Dialer{Timeout: 10 * time.Second, Deadline: deadline}
	if w.cfg.IPv4 {
		d.LocalAddr = &net.TCPAddr{IP: sourceAddr(i % w.cfg.Sources)}
	}
	addr, _ := w.cfg.server(i)
	conn, err := d.DialContext(w.ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(w.ctx, func() { closeNow(conn) })
	release := func() { stop(); closeNow(conn) }
	if conf == nil {
		return conn, release, nil
	}
	tc, err := handshake(w.ctx, conn, conf, deadline)
	if err != nil {
		release()
		return nil, nil, err
	}
	return tc, release, nil
}

// server is the address to dial and the Host header of subscriber i.
func (c *workerConfig) server(i int) (addr, host string) {
	if len(c.Addrs) == 0 {
		return c.Addr, c.Host
	}
	k := i % len(c.Addrs)
	return c.Addrs[k], c.Hosts[k]
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
