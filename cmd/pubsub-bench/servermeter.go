package main

import (
	"sync"
	"time"
)

// serverMeter samples the server process; with no PID it samples nothing.
type serverMeter struct{ pid int }

func newServerMeter(pid int) *serverMeter { return &serverMeter{pid: pid} }

func (m *serverMeter) sample() procSample {
	if m.pid <= 0 {
		return procSample{at: time.Now()}
	}
	s, err := readProc(m.pid)
	if err != nil {
		return procSample{at: time.Now()}
	}
	return s
}

// watchPeak samples the server's RSS every interval until the returned
// function is called, which returns the highest seen.
func (m *serverMeter) watchPeak(interval time.Duration) func() int64 {
	done := make(chan struct{})
	result := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			peak = max(peak, m.sample().rssBytes)
			select {
			case <-tick.C:
			case <-done:
				result <- peak
				return
			}
		}
	}()
	var once sync.Once
	var peak int64
	return func() int64 {
		once.Do(func() {
			close(done)
			peak = <-result
		})
		return peak
	}
}
