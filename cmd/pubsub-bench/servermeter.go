package main

import (
	"os"
	"sync"
	"time"
)

// serverMeter samples the server processes, each with its descendants
// (nginx's worker under its master), and adds them up; with no PID it
// samples nothing.
type serverMeter struct{ pids []int }

func newServerMeter(pids ...int) *serverMeter { return &serverMeter{pids: pids} }

func (m *serverMeter) sample() procSample {
	total := procSample{at: time.Now()}
	for _, pid := range m.pids {
		procs := []int{pid}
		if pid != os.Getpid() {
			// This process's children are the load client's workers.
			procs = withDescendants(pid)
		}
		for _, p := range procs {
			if s, err := readProc(p); err == nil {
				total.cpu += s.cpu
				total.rssBytes += s.rssBytes
			}
		}
	}
	return total
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
