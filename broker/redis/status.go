package redis

import (
	"context"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

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
	failovers  uint64
	server     string // the server found holding the stream (locate)
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

// located records that server holds the stream; it returns the server
// found before ("" if none), and whether this is another one: a failover.
func (s *status) located(server string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.server
	s.server = server
	if prev == "" || prev == server {
		return prev, false
	}
	s.failovers++
	return prev, true
}

// locate finds out which server holds the stream, when the reader first
// reaches Redis and again after each outage, and counts a failover when it
// is another server than before: Sentinel promoted a replica, or a
// cluster moved the stream's slot to another master. A reconnect to the
// same server, restarted or not, is not one.
func (b *Broker) locate(ctx context.Context) {
	server, err := b.client.holder(ctx, b.stream)
	if err != nil {
		b.logger.Debug("could not tell which redis server holds the stream", zap.Error(err))
		return
	}
	if prev, failover := b.status.located(server); failover {
		b.logger.Warn("the stream is on another redis server: a failover; what it holds is what replication had copied",
			zap.String("from", prev), zap.String("to", server))
	}
}

// holder returns the address of the server that holds key: a standalone
// server's own; with Sentinel, the master's as it tells it (CLIENT INFO's
// laddr, Redis 6.2 and later); in a cluster, the master of key's slot.
func (c *client) holder(ctx context.Context, key string) (string, error) {
	switch cl := c.UniversalClient.(type) {
	case *goredis.ClusterClient:
		node, err := cl.MasterForKey(ctx, key)
		if err != nil {
			return "", err
		}
		return node.Options().Addr, nil
	case *goredis.Client:
		if cl.Options().Addr == c.addr {
			return c.addr, nil
		}
	}
	info, err := c.ClientInfo(ctx).Result()
	if err != nil {
		return "", err
	}
	return info.LAddr, nil
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
		Failovers:  b.status.failovers,
		Server:     b.status.server,
		LastError:  b.status.lastError,
	}
}
