package pubsub

// Limits: what one client may ask of an endpoint and its hub. Topic length
// and depth are not here: hub.MaxTopicLength and hub.MaxTopicDepth stay
// fixed, because every hub and broker (a Redis stream shared by instances
// with different configs, a bolt file, an MQTT feed) must agree on which
// topics exist, and because they bound the work of every publish's walk
// through the subscriber index whatever the configuration.

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-pubsub/caddy-pubsub/handlers"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Defaults of the limits.
const (
	DefaultLimitTopics      = handlers.MaxTopicsPerRequest
	DefaultLimitSubscribers = 100_000
	DefaultLimitBatch       = handlers.MaxBatch
	DefaultLimitPollBatch   = handlers.DefaultPollBatch
	DefaultLimitPublishWait = hub.DefaultPublishWait
)

// Bounds of the limits: past them a limit protects nothing.
const (
	maxLimitTopics      = 1024
	maxLimitSubscribers = 10_000_000
	maxLimitBatch       = 10_000

	minLimitPublishWait = 10 * time.Millisecond
	maxLimitPublishWait = time.Minute
	maxLimitPublishRate = 1_000_000 // messages a second, and of a burst
)

// Limits bounds what clients may ask of an endpoint and its hub. A request
// over a limit gets a status and a one-line reason.
type Limits struct {
	// Topics is the most topics (filters) one subscription may name: a
	// request's ?topic= list, or a WebSocket's topics over all its
	// subscribe frames; over it, 400 (a WebSocket frame gets an error).
	// 1 to 1024. Default: 32.
	Topics int `json:"topics,omitempty"`

	// Subscribers caps the subscriber connections (SSE streams,
	// WebSockets, waiting long-polls) the hub holds at once, over every
	// endpoint naming it; over it, 503. Handlers naming one hub must agree
	// on it. 1 to 10000000. Default: 100000.
	Subscribers int `json:"subscribers,omitempty"`

	// PerIP caps the subscriber connections one client address holds in
	// the hub at once; over it, 429. The address is Caddy's client_ip: the
	// TCP peer, or the address a trusted proxy (the server's
	// trusted_proxies) forwards for; an IPv6 client counts by its /64.
	// Handlers naming one hub must agree on it. Default: 0, no cap.
	PerIP int `json:"per_ip,omitempty"`

	// Batch is the most messages one publish may carry: a JSON array, or a
	// WebSocket publish frame's "messages"; over it, 400. 1 to 10000.
	// Default: 100.
	Batch int `json:"batch,omitempty"`

	// PollBatch is the most messages one long-poll answer carries; the
	// answer's last_id lets the next poll go on from there. 1 to 10000.
	// Default: 100.
	PollBatch int `json:"poll_batch,omitempty"`

	// PublishWait bounds how far behind delivery may fall: once the oldest
	// message waiting for the hub's fan-out is older, a publish waits for
	// it to catch up, at most PublishWait, then gets 503 with Retry-After.
	// Handlers naming one hub must agree on it. 10ms to 1m. Default: 2s.
	PublishWait caddy.Duration `json:"publish_wait,omitempty"`

	// PublishRate is the messages a second each publisher may publish (a
	// JWT subject, the publish key, or a client address); over it, 429
	// with Retry-After. A batch counts each message. Handlers naming one
	// hub must agree on it. Up to 1000000. Default: 0, no limit.
	PublishRate float64 `json:"publish_rate,omitempty"`

	// PublishBurst is the most messages a publisher may publish at once
	// within PublishRate. 1 to 1000000. Default: PublishRate rounded up
	// (one second's worth).
	PublishBurst int `json:"publish_burst,omitempty"`
}

// withDefaults returns l (which may be nil) with every unset limit at its
// default.
func (l *Limits) withDefaults() *Limits {
	out := Limits{}
	if l != nil {
		out = *l
	}
	if out.Topics == 0 {
		out.Topics = DefaultLimitTopics
	}
	if out.Subscribers == 0 {
		out.Subscribers = DefaultLimitSubscribers
	}
	if out.Batch == 0 {
		out.Batch = DefaultLimitBatch
	}
	if out.PollBatch == 0 {
		out.PollBatch = DefaultLimitPollBatch
	}
	if out.PublishWait == 0 {
		out.PublishWait = caddy.Duration(DefaultLimitPublishWait)
	}
	if out.PublishBurst == 0 && out.PublishRate > 0 {
		out.PublishBurst = int(math.Ceil(out.PublishRate))
	}
	return &out
}

func (l *Limits) check() error {
	if l == nil {
		return nil
	}
	return errors.Join(
		checkLimit("topics", l.Topics, 1, maxLimitTopics),
		checkLimit("subscribers", l.Subscribers, 1, maxLimitSubscribers),
		checkLimit("per_ip", l.PerIP, 0, maxLimitSubscribers),
		checkLimit("batch", l.Batch, 1, maxLimitBatch),
		checkLimit("poll_batch", l.PollBatch, 1, maxLimitBatch),
		checkPublishWait(time.Duration(l.PublishWait)),
		checkPublishRate(l.PublishRate),
		checkLimit("publish_burst", l.PublishBurst, 1, maxLimitPublishRate),
	)
}

func checkPublishWait(d time.Duration) error {
	if d == 0 || d >= minLimitPublishWait && d <= maxLimitPublishWait {
		return nil
	}
	return fmt.Errorf("limits: publish_wait %v out of range %v..%v", d, minLimitPublishWait, maxLimitPublishWait)
}

func checkPublishRate(r float64) error {
	if r >= 0 && r <= maxLimitPublishRate {
		return nil
	}
	return fmt.Errorf("limits: publish_rate %v out of range 0..%d a second", r, maxLimitPublishRate)
}

// checkLimit checks a limit that is set; 0 (unset) takes its default.
func checkLimit(name string, n, lowest, highest int) error {
	if n == 0 || n >= lowest && n <= highest {
		return nil
	}
	return fmt.Errorf("limits: %s %d out of range %d..%d", name, n, lowest, highest)
}

// endpoint returns the limits the transports apply per request.
func (l *Limits) endpoint() handlers.Limits {
	return handlers.Limits{Topics: l.Topics, Batch: l.Batch, PollBatch: l.PollBatch}
}

// parseLimits reads a limits block; each line sets one limit:
//
//	limits {
//		topics      <n>  # topics in one subscription (32)
//		subscribers <n>  # subscriber connections in the hub (100000)
//		per_ip      <n>  # subscriber connections per client address (0: no cap)
//		batch       <n>  # messages in one publish (100)
//		poll_batch  <n>  # messages in one long-poll answer (100)
//		publish_wait  <duration>  # how far behind delivery may fall (2s)
//		publish_rate  <n>/s|<n>/m # messages per publisher (none)
//		publish_burst <n>         # at once within publish_rate (a second's worth)
//	}
func (c *HubConfig) parseLimits(d *caddyfile.Dispenser, args []string) error {
	if len(args) != 0 {
		return d.ArgErr()
	}
	if c.Limits != nil {
		return d.Err("limits: given twice")
	}
	l := new(Limits)
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("limits: %s given twice", name)
		}
		seen[name] = true
		var field *int
		lowest, highest := 1, maxLimitBatch
		switch name {
		case "publish_wait":
			c.parsedAt(d.Token())
			if err := parsePublishWait(d, l); err != nil {
				return err
			}
			continue
		case "publish_rate":
			c.parsedAt(d.Token())
			if err := parsePublishRate(d, l); err != nil {
				return err
			}
			continue
		case "topics":
			field, highest = &l.Topics, maxLimitTopics
		case "subscribers":
			field, highest = &l.Subscribers, maxLimitSubscribers
			c.parsedAt(d.Token())
		case "per_ip":
			field, lowest, highest = &l.PerIP, 0, maxLimitSubscribers
			c.parsedAt(d.Token())
		case "publish_burst":
			field, highest = &l.PublishBurst, maxLimitPublishRate
			c.parsedAt(d.Token())
		case "batch":
			field = &l.Batch
		case "poll_batch":
			field = &l.PollBatch
		default:
			return d.Errf("unknown limit %q: use topics, subscribers, per_ip, batch, poll_batch, publish_wait, publish_rate or publish_burst", name)
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		n, err := strconv.Atoi(d.Val())
		if err != nil || n < lowest || n > highest {
			return d.Errf("limits: %s %q: want a whole number from %d to %d", name, d.Val(), lowest, highest)
		}
		if d.NextArg() {
			return d.ArgErr()
		}
		*field = n
	}
	c.Limits = l
	return nil
}

// parsePublishWait reads "publish_wait <duration>".
func parsePublishWait(d *caddyfile.Dispenser, l *Limits) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	w, err := caddy.ParseDuration(d.Val())
	if err == nil {
		err = checkPublishWait(w)
	}
	if err != nil || w == 0 {
		return d.Errf("limits: publish_wait %q: want a duration from %v to %v", d.Val(), minLimitPublishWait, maxLimitPublishWait)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	l.PublishWait = caddy.Duration(w)
	return nil
}

// parsePublishRate reads "publish_rate <n>/s" (or <n>/m, a minute's).
func parsePublishRate(d *caddyfile.Dispenser, l *Limits) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	num, per, _ := strings.Cut(d.Val(), "/")
	n, err := strconv.ParseFloat(num, 64)
	seconds := map[string]float64{"s": 1, "m": 60}[per]
	if err != nil || seconds == 0 || n <= 0 || math.IsInf(n, 0) || checkPublishRate(n/seconds) != nil {
		return d.Errf("limits: publish_rate %q: want messages a second or a minute, like 10/s or 30/m, up to %d/s", d.Val(), maxLimitPublishRate)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	l.PublishRate = n / seconds
	return nil
}

// admit takes a subscriber connection slot in the hub for r, or answers
// why not: 503 when the hub holds limits.subscribers connections, 429 when
// r's client address holds limits.per_ip. The caller holds the slot until
// the connection ends.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	release, err := h.endpoint.Hub.Admit(clientAddr(r))
	switch {
	case err == nil:
		return release, true
	case errors.Is(err, hub.ErrClientLimit):
		http.Error(w, err.Error()+": close another stream first", http.StatusTooManyRequests)
	default:
		http.Error(w, err.Error()+": try again later", http.StatusServiceUnavailable)
	}
	return nil, false
}

// clientAddr is the address r's client is counted by for per_ip: Caddy's
// client_ip (the TCP peer, or the address a trusted proxy forwards for),
// else the TCP peer; an IPv6 address as its /64, the block one client
// usually holds. "" when r has no IP address (a Unix socket): per_ip then
// does not apply.
func clientAddr(r *http.Request) string {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	ip, err := netip.ParseAddr(s)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip, err = netip.ParseAddr(host); err != nil {
			return ""
		}
		s = host
	}
	if ip.Is4() {
		// ParseAddr takes an IPv4 address only in its one dotted form,
		// so s is ip.String() already, without a string per request.
		return s
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}
