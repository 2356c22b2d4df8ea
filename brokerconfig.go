package pubsub

import (
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// BrokerModule is a Caddy module in the pubsub.brokers namespace: it makes
// the broker that orders and keeps the messages of a hub. Its module name
// is the broker's kind, as the Caddyfile (broker <kind> …) and JSON
// ("kind": "<kind>") name it. This repository registers memory, bolt and
// redis; a broker of one's own is a module built in with xcaddy --with.
//
// Caddy provisions and validates the module (placeholders resolved, files
// checked) when the config loads; nothing connects or opens files before
// the hub starts the broker (hub.Broker.Start).
type BrokerModule interface {
	caddy.Module

	// OpenBroker returns the broker of the hub named hubName, keeping
	// what r allows, without connecting or opening files. The returned
	// broker must pass hub/brokertest.
	OpenBroker(hubName string, r hub.Retention) (hub.Broker, error)

	// BrokerKey identifies where the broker of hubName keeps its messages
	// and every setting that changes how it reaches them. A reload that
	// gives a running hub a broker with the same key keeps the hub and its
	// subscribers; another key starts a new hub. Secrets in it must be
	// hashed: the key may be logged.
	BrokerKey(hubName string) string
}

// brokersNamespace is the Caddy module namespace of brokers.
const brokersNamespace = "pubsub.brokers"

// defaultBroker is the kind of broker a hub gets when none is configured.
const defaultBroker = "memory"

// brokerOf is the broker module a hub config names, loaded.
type brokerOf struct {
	BrokerModule
	kind string // the module's name
}

// poolKey is the key of a hub in the hubs pool: a reload that changes the
// broker gets a new hub, and the old one closes with the old config.
func (b brokerOf) poolKey(hubName string) string {
	return hubName + "\x00" + b.kind + "\x00" + b.BrokerKey(hubName)
}

// loadBroker loads (provisions and validates) the broker module c names,
// or the memory broker when it names none.
func (c *HubConfig) loadBroker(ctx caddy.Context) (brokerOf, error) {
	if len(c.BrokerRaw) == 0 {
		return brokerOf{new(MemoryBroker), defaultBroker}, nil
	}
	mod, err := ctx.LoadModule(c, "BrokerRaw")
	if err != nil {
		return brokerOf{}, fmt.Errorf("broker: %w", err)
	}
	b, ok := mod.(BrokerModule)
	if !ok {
		return brokerOf{}, fmt.Errorf("broker: module %T is no pubsub broker", mod)
	}
	return brokerOf{b, b.CaddyModule().ID.Name()}, nil
}

// unmarshalBroker parses the broker sub-directive; the dispenser stands on
// its last argument, args being its arguments on the line:
//
//	broker <kind> [<args>...] [{ ... }]
//
// The kind names a module in the pubsub.brokers namespace, which parses
// the rest of the line and the block.
func (c *HubConfig) unmarshalBroker(d *caddyfile.Dispenser, args []string) error {
	if len(c.BrokerRaw) > 0 {
		return d.Err("broker given twice")
	}
	if len(args) == 0 {
		return d.ArgErr()
	}
	kind := args[0]
	id := brokersNamespace + "." + kind
	if _, err := caddy.GetModule(id); err != nil {
		return d.Errf("broker: unknown kind %q (use %s, or build in a broker module with xcaddy)", kind, strings.Join(brokerKinds(), ", "))
	}
	// The module reads its own segment, from the kind on.
	for range args[1:] {
		d.Prev()
	}
	unm, err := caddyfile.UnmarshalModule(d, id)
	if err != nil {
		return err
	}
	var warnings []caddyconfig.Warning
	c.BrokerRaw = caddyconfig.JSONModuleObject(unm, "kind", kind, &warnings)
	if len(warnings) > 0 {
		return d.Errf("broker %s: %s", kind, warnings[0].Message)
	}
	return nil
}

// brokerKinds lists the broker modules built in.
func brokerKinds() []string {
	var kinds []string
	for _, m := range caddy.GetModules(brokersNamespace) {
		kinds = append(kinds, m.ID.Name())
	}
	slices.Sort(kinds)
	return kinds
}

func init() {
	caddy.RegisterModule(MemoryBroker{})
}

// MemoryBroker keeps a hub's history in this process: it is lost on
// restart and not shared with other instances. It is the default.
//
//	broker memory
type MemoryBroker struct{}

// CaddyModule returns the Caddy module information.
func (MemoryBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  brokersNamespace + ".memory",
		New: func() caddy.Module { return new(MemoryBroker) },
	}
}

// UnmarshalCaddyfile reads `broker memory`, which takes nothing else.
func (*MemoryBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // kind
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Err("broker memory takes no options")
	}
	return nil
}

// OpenBroker implements BrokerModule.
func (MemoryBroker) OpenBroker(_ string, r hub.Retention) (hub.Broker, error) {
	return hub.NewMemoryBroker(r), nil
}

// BrokerKey implements BrokerModule: every memory broker of a hub is the
// same.
func (MemoryBroker) BrokerKey(string) string { return "" }

// Interface guards.
var (
	_ BrokerModule          = (*MemoryBroker)(nil)
	_ caddyfile.Unmarshaler = (*MemoryBroker)(nil)
)
