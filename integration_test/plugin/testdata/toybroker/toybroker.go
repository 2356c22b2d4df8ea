// Package toybroker is a broker of someone else's, as a third party would
// write one: its own Go module that registers a pubsub.brokers module, to
// be built in with xcaddy --with. It keeps messages in memory (through the
// hub's memory broker) and counts what it stores, so a test can see that
// a hub runs on it.
package toybroker

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	pubsub "github.com/caddy-pubsub/caddy-pubsub"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

func init() {
	caddy.RegisterModule(Toy{})
}

// Toy is the module pubsub.brokers.toy:
//
//	broker toy <label>
type Toy struct {
	// Label names the broker; it is part of the broker's key.
	Label string `json:"label"`
}

// CaddyModule returns the Caddy module information.
func (Toy) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "pubsub.brokers.toy",
		New: func() caddy.Module { return new(Toy) },
	}
}

// UnmarshalCaddyfile reads `broker toy <label>`.
func (t *Toy) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // kind
	if !d.NextArg() {
		return d.ArgErr()
	}
	t.Label = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Stored counts the messages stored by the toy brokers by label.
var Stored sync.Map // label → *atomic.Int64

// OpenBroker implements pubsub.BrokerModule.
func (t *Toy) OpenBroker(_ string, r hub.Retention) (hub.Broker, error) {
	n, _ := Stored.LoadOrStore(t.Label, new(atomic.Int64))
	return &broker{Broker: hub.NewMemoryBroker(r), stored: n.(*atomic.Int64)}, nil
}

// BrokerKey implements pubsub.BrokerModule.
func (t *Toy) BrokerKey(string) string { return t.Label }

type broker struct {
	hub.Broker
	stored *atomic.Int64
}

func (b *broker) Publish(ctx context.Context, msgs []hub.Message) ([]string, error) {
	ids, err := b.Broker.Publish(ctx, msgs)
	if err == nil {
		b.stored.Add(int64(len(ids)))
	}
	return ids, err
}

// Interface guards.
var (
	_ pubsub.BrokerModule   = (*Toy)(nil)
	_ caddyfile.Unmarshaler = (*Toy)(nil)
)
