package pubsub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/park"
)

// hubs holds every running hub by name. It outlives a config: a reload
// loads the same hub, so subscribers stay connected and keep receiving.
var hubs = caddy.NewUsagePool()

// hubDefinition is how one config defines a hub: what it must define the
// same way wherever it names the hub.
type hubDefinition struct {
	opts   hub.Options
	broker string // brokerOf.poolKey
}

// equal reports whether d and o define a hub the same way.
func (d hubDefinition) equal(o hubDefinition) bool {
	return reflect.DeepEqual(d, o)
}

// hubReaders is who may subscribe through one endpoint of a hub (see
// Handler.readers), and where that endpoint is defined.
type hubReaders struct {
	rule  string
	where string
}

// poolHub is a hub as stored in the pool.
type poolHub struct{ *hub.Hub }

// Destruct closes the hub once no config uses it.
func (p poolHub) Destruct() error { return p.Close() }

// App is the pubsub app: it defines the hubs of Hubs for the whole config,
// keeps track of the hubs one config uses, so two different definitions of
// one hub are caught, and ends streams when Caddy exits, which would
// otherwise wait for them forever. Handlers load it when the config has no
// pubsub app of its own.
type App struct {
	// Hubs defines hubs by name, once for every handler that names them
	// (the global pubsub option of the Caddyfile). A handler naming one of
	// them keeps only endpoint settings. Default: none (handlers define
	// their hubs).
	Hubs map[string]*HubConfig `json:"hubs,omitempty"`

	mu      sync.Mutex
	global  map[string]provisionedHub // the hubs of Hubs
	defined map[string]hubDefinition
	readers map[string]hubReaders
	feeds   map[string]string // hub → the Caddy events fed into it (caddyevents.go)
	used    []*hub.Hub
	// reused are the hubs this config takes over from a running one, with
	// the options it gives them: applied when the config starts, so a
	// config that fails to load changes nothing that runs.
	reused []reusedHub
	logger *zap.Logger
	mqtt   appLinks
	obs    catalogue // the hubs by name, for metrics and stats (catalogue.go)
}

// reusedHub is a running hub and the options a new config gives it.
type reusedHub struct {
	hub  *hub.Hub
	opts hub.Options
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "pubsub",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision subscribes to Caddy's "stopping" event and takes the hubs of
// Hubs from the pool.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.defined = make(map[string]hubDefinition)
	a.readers = make(map[string]hubReaders)
	a.feeds = make(map[string]string)
	a.global = make(map[string]provisionedHub, len(a.Hubs))
	events, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	if err := events.(*caddyevents.App).On("stopping", a); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(a.Hubs)) {
		c := a.Hubs[name]
		if c == nil {
			return fmt.Errorf("hub %q: empty definition", name)
		}
		if err := errors.Join(checkHubName(name), c.check(), c.checkGlobalLimits()); err != nil {
			return fmt.Errorf("hub %q: %w", name, err)
		}
		p, err := a.provisionHub(ctx, name, c.withDefaults(), a.logger.With(zap.String("hub", name)))
		if err != nil {
			return fmt.Errorf("hub %q: %w", name, err)
		}
		a.global[name] = p
	}
	return nil
}

// Cleanup releases the hubs of Hubs and their links; the last user of a
// hub closes it.
func (a *App) Cleanup() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, p := range a.global {
		p.release()
		delete(a.global, name)
	}
	return nil
}

// globalHub returns the hub of Hubs named name, if any.
func (a *App) globalHub(name string) (*hub.Hub, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.global[name]
	return p.hub, ok
}

// parkedShutdown bounds how long a stop waits for parked streams to send
// their reason event and close.
const parkedShutdown = 2 * time.Second

// Handle implements caddyevents.Handler: when Caddy stops (the process
// exits, or caddy.Stop), every stream of this config's hubs ends (SSE
// clients get what was queued), so the HTTP server's graceful shutdown can
// finish. A reload leaves them be.
func (a *App) Handle(context.Context, caddy.Event) error {
	// A reload stops the old config once the new one is active; a stop
	// (exit, or caddy.Stop) leaves no active config.
	if !caddy.Exiting() && caddy.ActiveContext().Context != nil {
		return nil
	}
	a.logShutdown()
	a.mu.Lock()
	for _, h := range a.used {
		h.Disconnect(hub.ErrShutdown)
	}
	a.mu.Unlock()
	// Parked streams (package park) are no longer the HTTP server's: its
	// graceful shutdown would not wait for their reason event to go out.
	if !park.Wait(parkedShutdown) {
		a.logger.Warn("server stopping: some parked streams did not close in time", zap.Duration("waited", parkedShutdown))
	}
	return nil
}

// hub returns the named hub, starting it if no config has it yet; a hub
// that runs already gets opts when this config starts. One config must
// define a hub one way.
func (a *App) hub(name string, opts hub.Options, broker brokerOf) (*hub.Hub, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := broker.poolKey(name)
	def := hubDefinition{opts: opts, broker: key}
	if prev, ok := a.defined[name]; ok && !prev.equal(def) {
		return nil, fmt.Errorf("hub %q is defined twice with different settings (history, retain, queue, broker, presence and its claims, limits subscribers, per_ip, publish_wait, publish_rate or publish_burst); give one of them another hub name", name)
	}
	val, loaded, err := hubs.LoadOrNew(key, func() (caddy.Destructor, error) {
		b, err := broker.OpenBroker(name, opts.Retention)
		if err != nil {
			return nil, err
		}
		return poolHub{hub.New(b, opts)}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("hub %q: %w", name, err)
	}
	h := val.(poolHub).Hub
	if loaded {
		a.reused = append(a.reused, reusedHub{h, opts})
	}
	a.defined[name] = def
	a.used = append(a.used, h)
	return h, nil
}

// addReaders records who may subscribe through one endpoint of the hub
// name. Every endpoint of a hub must let the same clients subscribe: each
// reads all of the hub (history included), so an open endpoint beside one
// with jwt would hand out what the jwt protects.
func (a *App) addReaders(name string, readers hubReaders) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.readers[name]; ok && prev.rule != readers.rule {
		return fmt.Errorf("hub %q: the pubsub endpoints %s and %s decide differently who may subscribe (jwt; publish_key or anonymous_publish with presence), but each reads the whole hub: give them different hub names", name, prev.where, readers.where)
	}
	if _, ok := a.readers[name]; !ok {
		a.readers[name] = readers
	}
	return nil
}

// Start gives the hubs that ran before this config its options, and starts
// the brokers of the others. Caddy starts apps only once the whole config
// is provisioned.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.reused {
		r.hub.SetOptions(r.opts)
	}
	for _, h := range a.used {
		if err := h.Start(); err != nil {
			return err
		}
	}
	a.startMQTT()
	a.started()
	return nil
}

// Stop implements caddy.App. Hubs live on in the pool until their last
// handler is cleaned up.
func (a *App) Stop() error {
	a.stopped()
	return nil
}

// started makes a the running app and logs its hubs.
func (a *App) started() {
	running.Store(a)
	for _, v := range a.obs.list() {
		st := v.hub.Stats()
		a.logger.Info("pubsub hub ready",
			zap.String("hub", v.name),
			zap.String("broker", v.broker),
			zap.Int("subscribers", st.Subscribers),
			zap.Int("queue", st.Options.Queue),
			zap.Int("history_count", st.Options.Retention.Count),
			zap.Duration("history_age", st.Options.Retention.MaxAge),
			zap.Bool("presence", st.Options.Presence),
			zap.Int("mqtt_links", len(v.links)))
	}
}

// stopped forgets a unless a newer config's app runs.
func (a *App) stopped() { running.CompareAndSwap(a, nil) }

// logShutdown logs, per hub, the streams a stop is about to end.
func (a *App) logShutdown() {
	for _, v := range a.obs.list() {
		a.logger.Info("server stopping: ending pubsub streams",
			zap.String("hub", v.name), zap.Int("subscribers", v.hub.Subscribers()))
	}
}

// Interface guards
var (
	_ caddy.App           = (*App)(nil)
	_ caddy.Provisioner   = (*App)(nil)
	_ caddy.CleanerUpper  = (*App)(nil)
	_ caddyevents.Handler = (*App)(nil)
)
