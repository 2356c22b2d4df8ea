package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progressLog prints one line every interval during a run: the phase,
// subscribers connected, messages published, deliveries so far and their
// p99 latency so far, so a long run shows where it is and whether it is
// keeping up before its report.
type progressLog struct {
	ws       workers
	pub      *publisher
	n        int
	log      io.Writer
	started  time.Time
	phase    atomic.Pointer[string]
	live     atomic.Int64 // subscribers live when publishing began
	stopOnce sync.Once
	done     chan struct{}
	finished chan struct{}
}

// startProgress prints a line every interval until stop; an interval of
// 0 prints none.
func startProgress(ws workers, pub *publisher, n int, interval time.Duration, log io.Writer) *progressLog {
	p := &progressLog{ws: ws, pub: pub, n: n, log: log, started: time.Now(), done: make(chan struct{}), finished: make(chan struct{})}
	p.setPhase("connecting")
	if interval <= 0 {
		close(p.finished)
		return p
	}
	go func() {
		defer close(p.finished)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				p.print()
			case <-p.done:
				return
			}
		}
	}()
	return p
}

// setPhase names what the run does now.
func (p *progressLog) setPhase(phase string) { p.phase.Store(&phase) }

// publishing marks the start of the load, with live subscribers, from
// which the expected deliveries follow.
func (p *progressLog) publishing(live int64) {
	p.live.Store(live)
	p.setPhase("publishing")
}

// stop ends the lines; it returns once the last one is written.
func (p *progressLog) stop() {
	p.stopOnce.Do(func() { close(p.done) })
	<-p.finished
}

// print writes one line. The latency comes from the workers' fixed-size
// histograms, so a line costs the same however many deliveries there were.
func (p *progressLog) print() {
	c := p.ws.progress()
	published := p.pub.acked.Load()
	delivered := fmt.Sprintf("%d", c.Unique)
	if live := p.live.Load(); live > 0 {
		delivered = fmt.Sprintf("%d of %d", c.Unique, p.pub.expected(live))
	}
	p99 := "-"
	if l := p.ws.latencySoFar().Percentiles(); l.Count > 0 {
		p99 = msText(l.P99MS)
	}
	fmt.Fprintf(p.log, "progress %s %s: connected %d of %d (%d failed, %d dropped), published %d, delivered %s, p99 %s\n",
		time.Since(p.started).Round(time.Second), *p.phase.Load(), c.Connected, p.n, c.Failed, c.Disconnected, published, delivered, p99)
}
