package pubsub

import (
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/broker/bolt"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

func init() {
	caddy.RegisterModule(BoltBroker{})
}

// BoltBroker keeps a hub's history in a local file (bbolt), so it survives
// restarts; it is not shared with other instances.
//
//	broker bolt [<path>]
type BoltBroker struct {
	// Path of the history file; one file holds one hub, and its directory
	// must exist. May hold placeholders. Default: pubsub/<hub>.db in
	// Caddy's data directory (created if missing).
	Path string `json:"path,omitempty"`

	path   string // resolved, absolute; "" for the default
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (BoltBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  brokersNamespace + ".bolt",
		New: func() caddy.Module { return new(BoltBroker) },
	}
}

// UnmarshalCaddyfile reads `broker bolt [<path>]`.
func (b *BoltBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // kind
	if d.NextArg() {
		b.Path = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Err("broker bolt takes no options")
	}
	return nil
}

// Provision resolves the path.
func (b *BoltBroker) Provision(ctx caddy.Context) error {
	b.logger = ctx.Logger()
	path, err := resolve("broker bolt: path", b.Path)
	if err != nil {
		return err
	}
	if path != "" {
		if path, err = filepath.Abs(path); err != nil {
			return fmt.Errorf("broker bolt: %w", err)
		}
	}
	b.path = path
	return nil
}

// file is the history file of hubName.
func (b *BoltBroker) file(hubName string) string {
	if b.path != "" {
		return b.path
	}
	return filepath.Join(caddy.AppDataDir(), "pubsub", hubName+".db")
}

// OpenBroker implements BrokerModule. The default directory is made when
// the hub starts, so that validating a config writes nothing.
func (b *BoltBroker) OpenBroker(hubName string, r hub.Retention) (hub.Broker, error) {
	br := bolt.New(b.file(hubName), r)
	br.Logger = b.logger.With(zap.String("hub", hubName))
	br.MakeDir = b.path == ""
	return br, nil
}

// BrokerKey implements BrokerModule: a hub's broker is its file.
func (b *BoltBroker) BrokerKey(hubName string) string { return b.file(hubName) }

// Interface guards.
var (
	_ BrokerModule          = (*BoltBroker)(nil)
	_ caddy.Provisioner     = (*BoltBroker)(nil)
	_ caddyfile.Unmarshaler = (*BoltBroker)(nil)
)
