package pubsub

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/mqtt"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("pubsub", parseGlobalOption)
}

// HubConfig is what defines a hub itself, as opposed to one endpoint of it:
// where it keeps its messages, how many, its subscribers' queues, presence,
// its upstream MQTT links and its hub-wide limits. A hub is defined either
// once, in the pubsub app (the global pubsub option), or in the handlers
// that name it, which must then agree.
type HubConfig struct {
	// History bounds the hub's retained messages, used to resume. Default:
	// 1000 messages, none older than 1h.
	History *History `json:"history,omitempty"`

	// Retain keeps, per topic, the messages of the topics that a rule's
	// pattern matches, instead of History: a topic takes the most specific
	// rule that matches it (see hub.OrderRules). Default: none.
	Retain []*RetainRule `json:"retain,omitempty"`

	// RetainTopics caps the topics each retain rule keeps messages of:
	// beyond it, the topic published to least recently loses them all.
	// Default: 10000.
	RetainTopics int `json:"retain_topics,omitempty"`

	// Queue is each subscriber's queue length; a subscriber that falls this
	// far behind is disconnected and resumes from its last ID. Default: 1024.
	Queue int `json:"queue,omitempty"`

	// MQTT lists upstream MQTT subscriptions: each message they receive is
	// published into the hub, as prefix + MQTT topic. The connection opens
	// when the config starts and survives reloads that keep the block
	// unchanged. Default: none.
	MQTT []*mqtt.Config `json:"mqtt,omitempty"`

	// BrokerRaw chooses where the hub orders and keeps its messages: a
	// module of the pubsub.brokers namespace, named by "kind": memory (this
	// process), redis (shared by several Caddy instances), bolt (a file
	// that survives restarts) or one built in with xcaddy. Handlers naming
	// one hub must name the same broker. Default: memory.
	BrokerRaw json.RawMessage `json:"broker,omitempty" caddy:"namespace=pubsub.brokers inline_key=kind"`

	// Presence makes the hub publish an event to $pubsub/subscribe or
	// $pubsub/unsubscribe whenever an SSE or WebSocket subscription begins,
	// changes or ends, which authorised clients may watch. Handlers naming
	// one hub must agree on it. Default: off.
	Presence bool `json:"presence,omitempty"`

	// PresenceClaims names the token claims presence shows beside an
	// identity's sub, in its lists and events (the Caddyfile's
	// `presence { claims NAME... }`); no other claim is kept. Handlers
	// naming one hub must agree on them. Default: none.
	PresenceClaims []string `json:"presence_claims,omitempty"`

	// CaddyEvents publishes Caddy's own events of these names (certificates
	// obtained or failing, upstreams turning healthy or unhealthy, a config
	// started…) into the hub, each to $caddy/NAME with the event's data as
	// JSON; "$" topics are read only by clients allowed to (see presence).
	// Default: none. The Caddyfile's `caddy_events` without names gives
	// cert_obtained, cert_failed, healthy, unhealthy, started, stopping.
	CaddyEvents []string `json:"caddy_events,omitempty"`

	// Limits bounds the subscriber connections of the hub (subscribers)
	// and of one client address in it (per_ip); in a handler it also holds
	// the endpoint's limits (see limitsconfig.go). Default: 100000 subscribers,
	// no per-address cap.
	Limits *Limits `json:"limits,omitempty"`

	// MaxMessageSize caps, in bytes, the MQTT messages the hub's links
	// accept, for a hub defined in the pubsub app. A handler's
	// max_message_size (its publish limit) stands in for it when the
	// handler defines the hub. Default: 65536.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	// firstAt is where the Caddyfile gives the first hub setting, for the
	// error when a handler gives one for a hub defined globally.
	firstAt *caddyfile.Token
}

// parsedAt records tok as where a hub setting is given, unless one was.
func (c *HubConfig) parsedAt(tok caddyfile.Token) {
	if c.firstAt == nil {
		c.firstAt = &tok
	}
}

// withDefaults returns c with every unset setting at its default.
func (c HubConfig) withDefaults() HubConfig {
	if c.History == nil {
		c.History = &History{MaxAge: caddy.Duration(DefaultHistoryAge)}
	}
	if c.Queue == 0 {
		c.Queue = DefaultQueue
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	c.Limits = c.Limits.withDefaults()
	return c
}

// check checks the settings that are set.
func (c *HubConfig) check() error {
	var errs []error
	if c.History != nil {
		errs = append(errs, checkHistory(c.History.count(), time.Duration(c.History.MaxAge)))
	}
	if len(c.Retain) > maxRetainRules {
		errs = append(errs, fmt.Errorf("retain: more than %d rules", maxRetainRules))
	}
	for _, r := range c.Retain {
		errs = append(errs, r.check())
	}
	if c.RetainTopics != 0 {
		errs = append(errs, checkRetainTopics(c.RetainTopics))
	}
	if c.Queue != 0 {
		errs = append(errs, checkQueue(c.Queue))
	}
	if c.MaxMessageSize != 0 {
		errs = append(errs, checkMaxMessageSize(c.MaxMessageSize))
	}
	errs = append(errs, checkCaddyEvents(c.CaddyEvents))
	return errors.Join(append(errs, c.Limits.check())...)
}

// hubSettings names the hub settings c sets, as the Caddyfile spells them;
// a handler's MaxMessageSize is left out, being also its publish limit.
func (c *HubConfig) hubSettings() []string {
	var set []string
	add := func(on bool, name string) {
		if on {
			set = append(set, name)
		}
	}
	add(c.History != nil, "history")
	add(len(c.Retain) > 0, "retain")
	add(c.RetainTopics != 0, "retain_topics")
	add(c.Queue != 0, "queue")
	add(len(c.MQTT) > 0, "mqtt")
	add(len(c.BrokerRaw) > 0, "broker")
	add(c.Presence, "presence")
	add(len(c.CaddyEvents) > 0, "caddy_events")
	add(c.Limits != nil && c.Limits.Subscribers != 0, "limits subscribers")
	add(c.Limits != nil && c.Limits.PerIP != 0, "limits per_ip")
	add(c.Limits != nil && c.Limits.PublishWait != 0, "limits publish_wait")
	add(c.Limits != nil && c.Limits.PublishRate != 0, "limits publish_rate")
	add(c.Limits != nil && c.Limits.PublishBurst != 0, "limits publish_burst")
	return set
}

// options are the hub.Options of a HubConfig with its defaults filled.
func (c *HubConfig) options() hub.Options {
	return hub.Options{
		Queue:          c.Queue,
		Retention:      c.retention(),
		Presence:       c.Presence,
		PresenceClaims: c.PresenceClaims,
		MaxSubscribers: c.Limits.Subscribers,
		MaxPerClient:   c.Limits.PerIP,
		PublishWait:    time.Duration(c.Limits.PublishWait),
		PublishRate:    c.Limits.PublishRate,
		PublishBurst:   c.Limits.PublishBurst,
	}
}

// retention is the hub.Retention of a HubConfig with its defaults filled.
func (c *HubConfig) retention() hub.Retention {
	r := hub.Retention{Count: c.History.count(), MaxAge: time.Duration(c.History.MaxAge), RuleTopics: c.RetainTopics}
	for _, rule := range c.Retain {
		r.Rules = append(r.Rules, rule.rule())
	}
	return r
}

// parseSetting parses the hub setting name (the dispenser stands on it,
// args being the rest of its line) into c; it reports false for a name that
// is no hub setting. The handler directive and the global pubsub option
// both parse hub settings here, so defaults and errors are the same.
func (c *HubConfig) parseSetting(d *caddyfile.Dispenser, name string, args []string) (bool, error) {
	switch name {
	case "history", "retain", "retain_topics", "queue", "presence", "mqtt", "broker", "caddy_events":
		c.parsedAt(d.Token()) // of limits, only some are: parseLimits says
	}
	var err error
	switch name {
	case "history":
		err = c.parseHistory(args)
	case "retain":
		err = c.parseRetain(args)
	case "retain_topics":
		if len(args) != 1 {
			return true, d.ArgErr()
		}
		if c.RetainTopics, err = strconv.Atoi(args[0]); err == nil {
			err = checkRetainTopics(c.RetainTopics)
		}
	case "queue":
		if len(args) != 1 {
			return true, d.ArgErr()
		}
		if c.Queue, err = strconv.Atoi(args[0]); err == nil {
			err = checkQueue(c.Queue)
		}
	case "presence":
		return true, c.parsePresence(d, args)
	case "caddy_events":
		if len(c.CaddyEvents) > 0 {
			return true, d.Err("caddy_events given twice")
		}
		c.CaddyEvents = slices.Clone(args)
		if len(args) == 0 {
			c.CaddyEvents = slices.Clone(defaultCaddyEvents)
		}
		err = checkCaddyEvents(c.CaddyEvents)
	case "mqtt":
		return true, c.parseMQTT(d, args)
	case "broker":
		return true, c.unmarshalBroker(d, args)
	case "limits":
		return true, c.parseLimits(d, args)
	default:
		return false, nil
	}
	if errors.Is(err, errArgCount) {
		return true, d.ArgErr()
	}
	if err != nil {
		return true, d.Errf("%s: %v", name, err)
	}
	return true, nil
}

func (c *HubConfig) parseHistory(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return errArgCount
	}
	count, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	var age time.Duration
	if len(args) == 2 {
		if age, err = caddy.ParseDuration(args[1]); err != nil {
			return err
		}
	}
	c.History = &History{Count: &count, MaxAge: caddy.Duration(age)}
	return checkHistory(count, age)
}

// RetainRule keeps the latest Count messages of each topic that Pattern
// matches, none older than MaxAge.
type RetainRule struct {
	// Pattern is a topic filter: "+" matches one level, a trailing "#"
	// the rest.
	Pattern string `json:"pattern"`
	// Count is the most messages kept per topic; 0 keeps none.
	Count int `json:"count"`
	// MaxAge drops messages older than this; 0 means no age bound.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

func (r *RetainRule) rule() hub.RetentionRule {
	return hub.RetentionRule{Pattern: r.Pattern, Count: r.Count, MaxAge: time.Duration(r.MaxAge)}
}

func (r *RetainRule) check() error {
	if r == nil {
		return errors.New("retain: a rule is null")
	}
	if err := hub.ValidateRule(r.rule()); err != nil {
		return err
	}
	if r.Count > maxHistoryCount {
		return fmt.Errorf("retain %s: count %d out of range 0..%d", r.Pattern, r.Count, maxHistoryCount)
	}
	if r.Count == 0 && r.MaxAge > 0 {
		return fmt.Errorf("retain %s 0 %s: a count of 0 keeps no messages, so the age has no effect", r.Pattern, time.Duration(r.MaxAge))
	}
	return nil
}

// parseRetain parses `retain PATTERN COUNT [AGE]`, a rule more.
func (c *HubConfig) parseRetain(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return errArgCount
	}
	count, err := strconv.Atoi(args[1])
	if err != nil {
		return fmt.Errorf("count %q is not a number", args[1])
	}
	r := &RetainRule{Pattern: args[0], Count: count}
	if len(args) == 3 {
		age, err := caddy.ParseDuration(args[2])
		if err != nil {
			return fmt.Errorf("age %q: %v", args[2], err)
		}
		r.MaxAge = caddy.Duration(age)
	}
	if len(c.Retain) >= maxRetainRules {
		return fmt.Errorf("more than %d rules", maxRetainRules)
	}
	for _, prev := range c.Retain {
		if prev.Pattern == r.Pattern {
			return fmt.Errorf("%s is given twice", r.Pattern)
		}
	}
	c.Retain = append(c.Retain, r)
	return r.check()
}

// parseSize reads a byte size such as 64KiB, capped just past the largest
// size allowed so that checkMaxMessageSize names the range.
func parseSize(v string) (int64, error) {
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return 0, err
	}
	size := int64(min(n, maxMessageSizeCap+1))
	return size, checkMaxMessageSize(size)
}

// parseGlobalOption parses the global pubsub option, which defines hubs for
// the whole config, `pubsub { hub <name> { <hub settings> } }`, with the
// hub settings of parseSetting and max_message_size (see "The global pubsub
// option" in docs/caddyfile.md). It becomes the pubsub app's JSON.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	d.Next() // option name
	if existing != nil {
		return nil, d.Err("pubsub: the global pubsub option is given twice; define every hub in one block")
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	app := App{Hubs: make(map[string]*HubConfig)}
	for d.NextBlock(0) {
		if d.Val() != "hub" {
			return nil, d.Errf("unknown pubsub global sub-directive %q: use hub <name> { ... }", d.Val())
		}
		if !d.NextArg() {
			return nil, d.ArgErr()
		}
		name := d.Val()
		if err := checkHubName(name); err != nil {
			return nil, d.Errf("hub: %v", err)
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		if _, ok := app.Hubs[name]; ok {
			return nil, d.Errf("hub %q is defined twice in the global pubsub option", name)
		}
		c := new(HubConfig)
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			setting, at := d.Val(), d.Token()
			args := d.RemainingArgs()
			if setting == "max_message_size" {
				if len(args) != 1 {
					return nil, d.ArgErr()
				}
				size, err := parseSize(args[0])
				if err != nil {
					return nil, d.Errf("max_message_size: %v", err)
				}
				c.MaxMessageSize = size
				continue
			}
			ok, err := c.parseSetting(d, setting, args)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, d.Errf("unknown setting %q of hub %q: a hub takes history, retain, retain_topics, queue, broker, presence, caddy_events, mqtt, limits and max_message_size; endpoint settings go in the pubsub handler", setting, name)
			}
			if err := c.checkGlobalLimits(); err != nil {
				return nil, errAt(at, err)
			}
		}
		app.Hubs[name] = c
	}
	raw, err := json.Marshal(&app)
	if err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "pubsub", Value: raw}, nil
}

// errAt is err at the file and line of tok, as Dispenser.Errf words it.
func errAt(tok caddyfile.Token, err error) error {
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.WrapErr(err)
}

// checkGlobalLimits refuses endpoint limits in a hub of the pubsub app:
// they belong to the handlers.
func (c *HubConfig) checkGlobalLimits() error {
	if l := c.Limits; l != nil && (l.Topics != 0 || l.Batch != 0 || l.PollBatch != 0) {
		return errors.New("limits: a hub takes only subscribers, per_ip, publish_wait, publish_rate and publish_burst; topics, batch and poll_batch are endpoint limits: set them in the pubsub handler")
	}
	return nil
}

// globalHubs returns the names of the hubs the global pubsub option
// defines, from what parseGlobalOption returned (nil when there is none).
func globalHubs(opt any) (map[string]bool, error) {
	app, ok := opt.(httpcaddyfile.App)
	if !ok {
		return nil, nil
	}
	var cfg struct {
		Hubs map[string]json.RawMessage `json:"hubs"`
	}
	if err := json.Unmarshal(app.Value, &cfg); err != nil {
		return nil, err
	}
	names := make(map[string]bool, len(cfg.Hubs))
	for name := range cfg.Hubs {
		names[name] = true
	}
	return names, nil
}

// provisionedHub is a hub one config provisioned, with what to release.
type provisionedHub struct {
	hub      *hub.Hub
	poolKey  string
	mqttKeys []string
}

// provisionHub takes the hub name, as c (with defaults filled) defines it,
// from the pool, with its MQTT links, and records it in the catalogue.
// Both places that define hubs come here: the app for its own hubs, a
// handler for a hub the app does not define.
func (a *App) provisionHub(ctx caddy.Context, name string, c HubConfig, logger *zap.Logger) (provisionedHub, error) {
	broker, err := c.loadBroker(ctx)
	if err != nil {
		return provisionedHub{}, err
	}
	hb, err := a.hub(name, c.options(), broker)
	if err != nil {
		return provisionedHub{}, err
	}
	if len(c.Retain) > 0 && !hb.RetainsByRule() {
		p := provisionedHub{hub: hb, poolKey: broker.poolKey(name)}
		p.release()
		return provisionedHub{}, fmt.Errorf("hub %q: its %s broker cannot retain by rule: the retain setting needs a broker that keeps rules (memory, bolt and redis do)", name, broker.kind)
	}
	p := provisionedHub{hub: hb, poolKey: broker.poolKey(name)}
	if len(c.CaddyEvents) > 0 {
		if err := a.feedEvents(ctx, name, hb, c.CaddyEvents, logger); err != nil {
			p.release()
			return provisionedHub{}, err
		}
	}
	p.mqttKeys, err = a.provisionMQTT(name, c.MQTT, hb, c.MaxMessageSize, logger)
	if err != nil {
		p.release()
		return provisionedHub{}, err
	}
	links := make(map[string]hub.LinkReporter)
	mqttLinks.Range(func(key, val any) bool {
		if k, ok := key.(string); ok && slices.Contains(p.mqttKeys, k) {
			links[k] = mqttLinkState{val.(poolLink).Link}
		}
		return true
	})
	a.obs.add(name, hb, broker.kind, links)
	return p, nil
}

// release gives the hub and its links back to their pools; the last user
// closes them.
func (p *provisionedHub) release() {
	for _, key := range p.mqttKeys {
		_, _ = mqttLinks.Delete(key)
	}
	p.mqttKeys = nil
	if p.poolKey != "" {
		_, _ = hubs.Delete(p.poolKey)
		p.poolKey = ""
	}
}

// globalHubError says that a handler sets hub settings of a hub the app
// defines.
func globalHubError(name string, settings []string) error {
	return fmt.Errorf("hub %q is defined in the global pubsub option (the pubsub app), so its %s belongs there, not in a pubsub handler; handlers of a global hub keep only endpoint settings", name, strings.Join(settings, ", "))
}

// parsePresence parses `presence`, with an optional block naming the token
// claims presence shows: `presence { claims NAME... }`.
func (c *HubConfig) parsePresence(d *caddyfile.Dispenser, args []string) error {
	if len(args) != 0 {
		return d.ArgErr()
	}
	c.Presence = true
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "claims" {
			return d.Errf("unknown presence setting %q: presence takes claims", d.Val())
		}
		if len(c.PresenceClaims) > 0 {
			return d.Err("presence: claims given twice")
		}
		c.PresenceClaims = d.RemainingArgs()
		if len(c.PresenceClaims) == 0 {
			return d.ArgErr()
		}
	}
	return nil
}
