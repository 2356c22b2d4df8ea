package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// fdReserve is the open files a process keeps for itself besides its
// subscribers.
const fdReserve = 100

// Run connects the subscribers, measures idle, publishes as cfg.Mode says,
// waits for the deliveries and reports. Progress goes to log. It returns
// when done, by cfg's bounds, or when ctx ends.
func Run(ctx context.Context, cfg Config, log io.Writer) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// Worker processes write their stderr here too.
	log = &lockedWriter{w: log}
	rep := newReport(cfg)
	fdLimit, err := raiseFileLimit()
	if err != nil {
		return nil, err
	}
	procs, err := planProcs(cfg, fdLimit)
	if err != nil {
		return nil, err
	}
	rep.Procs = procs
	if ports := ephemeralPorts() * 9 / 10; (cfg.Subscribers+cfg.Sources-1)/cfg.Sources > ports {
		return nil, fmt.Errorf("%d subscribers over %d source addresses need more than the %d local ports each address has (net.ipv4.ip_local_port_range): use -sources %d or more",
			cfg.Subscribers, cfg.Sources, ports, (cfg.Subscribers+ports-1)/ports)
	}
	if cfg.Start {
		srv, err := startServers(ctx, &cfg, log)
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		rep.URL = cfg.URL
		if srv.redis != nil {
			rep.Redis = &RedisReport{PID: srv.redis.cmd.Process.Pid, Addr: srv.redisAddr}
		}
	}
	if cfg.Peer == peerMercure && !cfg.Start && cfg.Key == "" && cfg.Token == "" {
		// A hub started elsewhere: its JWTs from its key.
		if cfg.Key, cfg.Token, err = mercureTokens(os.Getenv(mercureKeyEnv), 24*time.Hour); err != nil {
			return nil, fmt.Errorf("-peer mercure: %w, the key the hub verifies JWTs with (or give -key and -token)", err)
		}
	}
	if len(cfg.pids) > 0 {
		pid := cfg.pids[0]
		for _, p := range cfg.pids {
			if _, err := readProc(p); err != nil {
				return nil, fmt.Errorf("-pid %d: %w", p, err)
			}
		}
		rep.Server = &ServerReport{PID: pid, SameProcessAsClient: pid == os.Getpid()}
		if len(cfg.pids) > 1 {
			rep.Server.PIDs = cfg.pids
		}
		perServer := (cfg.Subscribers + len(cfg.pids) - 1) / len(cfg.pids)
		if lim, err := openFilesLimit(pid); err == nil {
			rep.Server.OpenFilesLimit = lim
			if perServer+fdReserve > lim {
				rep.note(log, "server PID %d may open at most %d files (its RLIMIT_NOFILE): it can hold about %d subscribers; start it under a higher `ulimit -n` (or LimitNOFILE= in its systemd unit)",
					pid, lim, lim-fdReserve)
			}
		}
		if rep.Server.SameProcessAsClient {
			rep.note(log, "server and load client are one process: the server's CPU and memory include the client's")
		}
	}

	topic := cfg.Topic
	if topic == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		topic = "bench/" + hex.EncodeToString(b[:])
	}
	rep.Topic = topic
	pub, err := newPublisher(cfg, topic, cfg.Publishers)
	if err != nil {
		return nil, err
	}
	defer pub.close()
	if cfg.Insecure {
		rep.note(log, "-insecure: the server's certificate was not verified")
	}
	startID, err := pub.waitMarker(ctx, 10*time.Second)
	if err != nil {
		var se statusError
		if errors.As(err, &se) && (se.code == 401 || se.code == 403) {
			err = fmt.Errorf("%w (pass the publish key with -key or $PUBSUB_BENCH_KEY, or a token that may publish to the topic with -token or $PUBSUB_BENCH_TOKEN)", err)
		}
		return nil, err
	}
	server := newServerMeter(cfg.pids...)
	baseline := server.sample()

	// The workers stop by themselves by this deadline, whatever happens here.
	deadline := time.Now().Add(cfg.Connect + cfg.Settle + cfg.Idle + cfg.Drain + publishTime(cfg) + 2*time.Minute)
	connectBy := time.Now().Add(cfg.Connect)
	ws, err := startWorkers(ctx, cfg, procs, topic, startID, connectBy, deadline, log)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = ws.stop()
		}
	}()

	prog := startProgress(ws, pub, cfg.Subscribers, cfg.Progress, log)
	defer prog.stop()

	// Connect.
	connectStart := time.Now()
	// The workers' progress may be 100ms old.
	if err := ws.waitConnected(ctx, cfg.Subscribers, connectBy.Add(200*time.Millisecond)); err != nil {
		return nil, err
	}
	p := ws.progress()
	rep.ConnectSeconds = seconds(time.Since(connectStart))
	if p.Connected == 0 {
		res, _ := ws.stop()
		stopped = true
		return nil, fmt.Errorf("no subscriber connected: %s", describeCounts(res.ConnectErrors))
	}
	if p.Connected+p.Failed < int64(cfg.Subscribers) {
		rep.note(log, "only %d of %d subscribers connected within -connect-timeout %s", p.Connected, cfg.Subscribers, cfg.Connect)
	}
	fmt.Fprintf(log, "connected %d of %d in %.1fs (%d failed); settling %s\n", p.Connected, cfg.Subscribers, rep.ConnectSeconds, p.Failed, cfg.Settle)

	// Idle.
	prog.setPhase("settling")
	if err := sleep(ctx, cfg.Settle); err != nil {
		return nil, err
	}
	prog.setPhase("idle")
	redis := newServerMeter()
	if rep.Redis != nil {
		redis = newServerMeter(rep.Redis.PID)
	}
	idleStart, redisIdleStart := server.sample(), redis.sample()
	if err := sleep(ctx, cfg.Idle); err != nil {
		return nil, err
	}
	idleEnd, redisIdleEnd := server.sample(), redis.sample()
	if rep.Redis != nil {
		rep.Redis.IdleCPUCores = cores(redisIdleEnd.cpu-redisIdleStart.cpu, redisIdleEnd.at.Sub(redisIdleStart.at))
	}
	live := ws.progress().live()
	if rep.Server != nil {
		rep.Server.RSSBaselineBytes = baseline.rssBytes
		rep.Server.RSSIdleBytes = idleEnd.rssBytes
		rep.Server.IdleSubscribers = live
		rep.Server.IdleCPUCores = cores(idleEnd.cpu-idleStart.cpu, idleEnd.at.Sub(idleStart.at))
		rep.Server.IdleWindowS = seconds(idleEnd.at.Sub(idleStart.at))
		if live > 0 {
			rep.Server.BytesPerSubscriber = float64(idleEnd.rssBytes-baseline.rssBytes) / float64(live)
		}
	}

	// Load.
	if cfg.Mode != modeIdle {
		if err := rep.load(ctx, cfg, pub, ws, server, live, prog, log); err != nil {
			return nil, err
		}
	}

	prog.stop()
	res, err := ws.stop()
	stopped = true
	if err != nil {
		return nil, err
	}
	rep.finish(res, pub)
	return rep, nil
}

// load publishes as the mode says and waits for the deliveries.
func (rep *Report) load(ctx context.Context, cfg Config, pub *publisher, ws workers, server *serverMeter, live int64, prog *progressLog, log io.Writer) error {
	fmt.Fprintf(log, "publishing (%s) to %d live subscribers\n", cfg.Mode, live)
	prog.publishing(live)
	peak := server.watchPeak(200 * time.Millisecond)
	start := server.sample()
	clientStart := ws.clientCPU()
	var redisMeter *serverMeter
	var redisStart procSample
	var redisCallsStart map[string]int64
	if rep.Redis != nil {
		redisMeter = newServerMeter(rep.Redis.PID)
		redisStart, redisCallsStart = redisMeter.sample(), redisCommandCalls(rep.Redis.Addr)
	}
	switch cfg.Mode {
	case modeFanout:
		pub.fanout(ctx, cfg.Count, cfg.Interval)
	case modeSustained, modePublish:
		rep.PublishSkipped = pub.sustain(ctx, cfg.Publishers, cfg.Rate, cfg.Duration)
	}
	published := time.Now()
	if err := ctx.Err(); err != nil {
		peak()
		return err
	}
	rep.Expected = pub.expected(live)
	prog.setPhase("waiting for deliveries")

	last, lastChange, err := ws.waitDelivered(ctx, rep.Expected, published.Add(cfg.Drain))
	if err != nil {
		peak()
		return err
	}
	if last < rep.Expected && time.Now().After(published.Add(cfg.Drain)) {
		rep.note(log, "deliveries still arriving after -drain %s", cfg.Drain)
	}
	end := server.sample()
	clientEnd := ws.clientCPU()
	peakRSS := peak()
	if redisMeter != nil {
		rep.Redis.measure(redisStart, redisMeter.sample(), redisCallsStart, redisCommandCalls(rep.Redis.Addr), pub.acked.Load())
	}

	window := lastChange.Sub(start.at)
	rep.LoadSeconds = seconds(window)
	rep.PublishSeconds = seconds(published.Sub(start.at))
	if window > 0 {
		rep.DeliveriesPerSec = float64(last) / window.Seconds()
	}
	if d := published.Sub(start.at); d > 0 {
		rep.PublishPerSec = float64(pub.acked.Load()) / d.Seconds()
	}
	rep.Client.LoadCPUSeconds = seconds(clientEnd - clientStart)
	rep.Client.LoadCPUCores = cores(clientEnd-clientStart, end.at.Sub(start.at))
	if last > 0 {
		rep.Client.CPUSecondsPerMillionDeliveries = (clientEnd - clientStart).Seconds() / float64(last) * 1e6
	}
	if rep.Server != nil {
		cpu := end.cpu - start.cpu
		rep.Server.RSSLoadPeakBytes = peakRSS
		rep.Server.RSSEndBytes = end.rssBytes
		rep.Server.LoadCPUSeconds = seconds(cpu)
		rep.Server.LoadCPUCores = cores(cpu, end.at.Sub(start.at))
		if last > 0 {
			rep.Server.CPUSecondsPerMillionDeliveries = cpu.Seconds() / float64(last) * 1e6
		}
		if n := pub.acked.Load(); n > 0 {
			rep.Server.CPUSecondsPerMillionPublishes = cpu.Seconds() / float64(n) * 1e6
		}
	}
	return nil
}

// quietTime ends the wait for deliveries when none arrived for that long.
const quietTime = 2 * time.Second

// waitDelivered waits until the subscribers hold expected messages, none
// arrived for quietTime, or deadline passed. It returns the count and when
// it last grew.
func (ws workers) waitDelivered(ctx context.Context, expected int64, deadline time.Time) (int64, time.Time, error) {
	last, lastChange := int64(-1), time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		got, now := ws.progress().Unique, time.Now()
		if got != last {
			last, lastChange = got, now
		}
		if got >= expected || now.Sub(lastChange) > quietTime || now.After(deadline) {
			return last, lastChange, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return last, lastChange, ctx.Err()
		}
	}
}

// publishTime is the longest the publishing phase of cfg takes.
func publishTime(cfg Config) time.Duration {
	switch cfg.Mode {
	case modeFanout:
		return time.Duration(cfg.Count) * (cfg.Interval + 30*time.Second)
	case modeSustained, modePublish:
		return cfg.Duration + 30*time.Second
	}
	return 0
}

// planProcs returns how many processes hold the subscribers, within the
// open-files limit.
func planProcs(cfg Config, fdLimit int) (int, error) {
	perProc := fdLimit - fdReserve
	if perProc < 1 {
		return 0, fmt.Errorf("the open-files limit (RLIMIT_NOFILE) is %d: raise its hard limit (ulimit -Hn as root, LimitNOFILE= in systemd, /etc/security/limits.conf)", fdLimit)
	}
	need := max(1, (cfg.Subscribers+perProc-1)/perProc)
	if cfg.Procs == 0 {
		return need, nil
	}
	if cfg.Procs < need {
		return 0, fmt.Errorf("%d subscribers in %d processes need %d open files each, but the hard limit (RLIMIT_NOFILE) is %d: use -procs %d or more, or raise the hard limit (ulimit -Hn as root, LimitNOFILE= in systemd, /etc/security/limits.conf)",
			cfg.Subscribers, cfg.Procs, (cfg.Subscribers+cfg.Procs-1)/cfg.Procs+fdReserve, fdLimit, need)
	}
	return cfg.Procs, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1e3 }

func cores(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(cpu) / float64(wall)
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
