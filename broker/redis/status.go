package redis

import (
	"sync"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// status is where the broker's link to Redis stands, as its reader finds
// it, for metrics and stats (hub.LinkReporter).
type status struct {
	mu         sync.Mutex
	state      string // connecting, connected, unreachable
	since      time.Time
	reconnects uint64
	losses     uint64
	lastError  string
}

// set records a change of state; reaching connected after being
// unreachable counts a reconnect.
func (s *status) set(state string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastError = err.Error()
	}
	if state == s.state {
		return
	}
	if state == "connected" && s.state == "unreachable" {
		s.reconnects++
	}
	s.state, s.since = state, time.Now()
}

func (s *status) lost() {
	s.mu.Lock()
	s.losses++
	s.mu.Unlock()
}

// LinkState implements hub.LinkReporter.
func (b *Broker) LinkState() hub.LinkState {
	b.status.mu.Lock()
	defer b.status.mu.Unlock()
	st := b.status.state
	if st == "" {
		st = "connecting"
	}
	return hub.LinkState{
		Kind:       "redis",
		Name:       b.client.addr,
		Status:     st,
		Up:         st == "connected",
		Since:      b.status.since,
		Reconnects: b.status.reconnects,
		Losses:     b.status.losses,
		LastError:  b.status.lastError,
	}
}
