package hub

import (
	"errors"
	"fmt"
	"sync"
)

// Reasons Admit refuses a connection.
var (
	// ErrHubFull: the hub holds Options.MaxSubscribers connections.
	ErrHubFull = errors.New("too many subscribers")
	// ErrClientLimit: the client's address holds Options.MaxPerClient
	// connections.
	ErrClientLimit = errors.New("too many connections from this address")
)

// admission counts the subscriber connections a hub let in, in total and
// by client address. It has its own lock so that admitting never waits on
// the fan-out.
type admission struct {
	mu        sync.Mutex
	max       int // 0: no cap
	perClient int // 0: no cap
	total     int
	byAddr    map[string]int // only addresses holding a connection: bounded by total
}

func (a *admission) setLimits(opts Options) {
	a.mu.Lock()
	a.max, a.perClient = opts.MaxSubscribers, opts.MaxPerClient
	a.mu.Unlock()
}

// Admit takes a slot for one subscriber connection (an SSE stream, a
// WebSocket, a waiting long-poll) from the client at addr, "" when unknown.
// It fails, wrapping ErrHubFull or ErrClientLimit, when the hub already
// holds MaxSubscribers connections, or addr holds MaxPerClient. Lower
// limits set later (SetOptions) refuse new connections only; those already
// in stay. release gives the slot back; it may be called more than once.
func (h *Hub) Admit(addr string) (release func(), err error) {
	a := &h.admission
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.max > 0 && a.total >= a.max {
		return nil, fmt.Errorf("%w (limit %d)", ErrHubFull, a.max)
	}
	perAddr := a.perClient > 0 && addr != ""
	if perAddr && a.byAddr[addr] >= a.perClient {
		return nil, fmt.Errorf("%w (limit %d)", ErrClientLimit, a.perClient)
	}
	a.total++
	if perAddr {
		if a.byAddr == nil {
			a.byAddr = make(map[string]int)
		}
		a.byAddr[addr]++
	}
	var once sync.Once
	return func() { once.Do(func() { a.release(addr, perAddr) }) }, nil
}

func (a *admission) release(addr string, perAddr bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if !perAddr {
		return
	}
	if a.byAddr[addr]--; a.byAddr[addr] <= 0 {
		delete(a.byAddr, addr)
	}
}
