package pubsub

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// defaultCaddyEvents are the events `caddy_events` without names feeds:
// certificates obtained or failing, upstreams turning healthy or
// unhealthy, and a config started (a load or reload) or stopping.
var defaultCaddyEvents = []string{"cert_obtained", "cert_failed", "healthy", "unhealthy", "started", "stopping"}

// caddyEventName is what an event name may be: Caddy's are lower case
// words joined by '_'.
var caddyEventName = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// caddyEventsTopic is the first level of the topics Caddy's events are
// published to: a "$" topic, which clients cannot publish to and read
// only with a grant that names it.
const caddyEventsTopic = "$caddy/"

// eventPublishWait bounds publishing one event: the emitter (Caddy's
// certificate manager, a health checker) waits for it.
const eventPublishWait = 2 * time.Second

func checkCaddyEvents(names []string) error {
	for _, n := range names {
		if !caddyEventName.MatchString(n) {
			return fmt.Errorf("caddy_events: %q is no event name (lower case letters, digits and '_', as Caddy names its events)", n)
		}
	}
	return nil
}

// eventFeed publishes the Caddy events it is registered for into a hub,
// each to $caddy/NAME, its data the event's as JSON.
type eventFeed struct {
	hub    *hub.Hub
	logger *zap.Logger
}

// Handle implements caddyevents.Handler.
func (f eventFeed) Handle(ctx context.Context, e caddy.Event) error {
	body := map[string]any{"id": e.ID().String(), "data": e.Data}
	if m := e.Origin(); m != nil {
		body["origin"] = string(m.CaddyModule().ID)
	}
	data, err := json.Marshal(body)
	if err != nil {
		f.logger.Warn("caddy event not published: its data is not JSON", zap.String("event", e.Name()), zap.Error(err))
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventPublishWait)
	defer cancel()
	if _, err := f.hub.Publish(ctx, hub.Message{Topic: caddyEventsTopic + e.Name(), Data: string(data), Time: e.Timestamp()}); err != nil {
		f.logger.Warn("caddy event not published", zap.String("event", e.Name()), zap.Error(err))
	}
	return nil
}

// feedEvents registers, once per hub in this config, an eventFeed for
// the events names with Caddy's events app.
func (a *App) feedEvents(ctx caddy.Context, name string, hb *hub.Hub, names []string, logger *zap.Logger) error {
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	key := strings.Join(names, " ")
	a.mu.Lock()
	prev, seen := a.feeds[name]
	if !seen {
		a.feeds[name] = key
	}
	a.mu.Unlock()
	switch {
	case seen && prev != key:
		return fmt.Errorf("hub %q is defined twice with different caddy_events (%s and %s); give one of them another hub name", name, prev, key)
	case seen:
		return nil
	}
	events, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	feed := eventFeed{hub: hb, logger: logger}
	for _, n := range names {
		if err := events.(*caddyevents.App).On(n, feed); err != nil {
			return err
		}
	}
	return nil
}
