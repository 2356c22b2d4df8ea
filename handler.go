// Package pubsub is the Caddy module of caddy-pubsub: the http.handlers.pubsub
// handler that gives a route WebSocket, Server-Sent Events and long-poll
// subscribe endpoints and an HTTP publish endpoint, and the pubsub app that
// shares named hubs across sites and config reloads.
package pubsub

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/auth"
	"github.com/caddy-pubsub/caddy-pubsub/handlers"
	"github.com/caddy-pubsub/caddy-pubsub/hooks"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

func init() {
	caddy.RegisterModule(Handler{})
	caddy.RegisterModule(new(App))
}

// Defaults of the handler's settings.
const (
	DefaultHub            = "default"
	DefaultHistoryCount   = 1000
	DefaultHistoryAge     = time.Hour
	DefaultHeartbeat      = 15 * time.Second
	DefaultQueue          = 1024
	DefaultMaxMessageSize = 64 << 10
	DefaultPollTimeout    = 30 * time.Second
)

// Handler serves publish (POST) and subscribe (GET: WebSocket, Server-Sent
// Events or long-poll) requests for one hub.
type Handler struct {
	// Hub names the hub this endpoint serves. Handlers naming the same hub
	// share its subscribers and history, across sites and config reloads.
	// Default: "default".
	Hub string `json:"hub,omitempty"`

	// HubConfig defines the hub (history, queue, mqtt, broker, presence,
	// and in limits, subscribers and per_ip) when the pubsub app does not;
	// handlers naming one hub must then define it alike. A hub the app
	// defines takes none of these from a handler. The handler's
	// max_message_size also caps what the MQTT links of a hub it defines
	// accept. Limits also holds the endpoint's limits (topics, batch,
	// poll_batch); see limitsconfig.go. Default: 32 topics, 100000 subscribers,
	// no per-address cap, 100 messages per publish and per long-poll
	// answer.
	HubConfig

	// Heartbeat is how often an idle SSE stream gets a comment line and a
	// WebSocket gets a ping, which keeps proxies from closing them. A
	// WebSocket client that sends no pong for two and a half heartbeats is
	// dropped.
	// Default: 15s.
	Heartbeat caddy.Duration `json:"heartbeat,omitempty"`

	// MaxMessageSize caps a publish request body in bytes. Default: 65536.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	// Topic is the topic used when a request names none. It may hold
	// placeholders; each placeholder must expand to one non-empty level
	// without wildcards, "/" or a leading "$", else the request gets 400.
	Topic string `json:"topic,omitempty"`

	// PublishKey, when set, must be sent as "Authorization: Bearer KEY" to
	// publish. May be a placeholder such as {env.PUBSUB_KEY}, which must not
	// resolve empty. Without it (and without jwt), see AnonymousPublish.
	PublishKey string `json:"publish_key,omitempty"`

	// AnonymousPublish says who may publish when neither publish_key nor
	// jwt is set: "loopback" lets requests straight from this machine
	// publish (loopback peer, loopback Host, no proxy headers); "off" lets
	// no one. Default: "loopback".
	AnonymousPublish string `json:"anonymous_publish,omitempty"`

	// PollTimeout is how long a long-poll request waits for a message
	// before it answers with none. Between 1s and 10m. Default: 30s.
	PollTimeout caddy.Duration `json:"poll_timeout,omitempty"`

	// CORS lists the browser origins ("https://app.example.com", or "*"
	// for any) whose pages may publish and open WebSockets besides the
	// endpoint's own origin. Default: none (same origin only).
	CORS []string `json:"cors,omitempty"`

	// JWT authorises subscribers and publishers with JSON Web Tokens whose
	// "pubsub" claim grants topic patterns (see jwtconfig.go). Once set,
	// subscribing needs a token, and publishing a token or the
	// publish_key, from loopback too. Default: none (subscribing is open).
	JWT *JWT `json:"jwt,omitempty"`

	// Hooks asks the application's backend about connects, subscriptions
	// and publishes and tells it of subscriptions (hooksconfig.go,
	// docs/hooks.md). Default: none.
	Hooks *Hooks `json:"hooks,omitempty"`

	// Location is where the Caddyfile defines this endpoint (FILE:LINE),
	// set by the Caddyfile adapter, so that an error about two endpoints
	// can name them. Default: none.
	Location string `json:"location,omitempty"`

	endpoint handlers.Endpoint
	own      provisionedHub // the hub this handler defines, if it does
	logger   *zap.Logger
	metrics  *collector // the config's pubsub metrics (metrics.go)
	// hooks is the endpoint's hooks client, unwatch stops it watching
	// the hub; both nil without hooks.
	hooks   *hooks.Client
	unwatch func()
}

// History bounds a hub's retained messages.
type History struct {
	// Count is the most messages kept; 0 keeps none. Default: 1000, as
	// in the Caddyfile's history without a count.
	Count *int `json:"count,omitempty"`
	// MaxAge drops messages older than this; 0 means no age bound. It
	// needs a Count above 0.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

// count is the most messages kept, Count or its default.
func (h *History) count() int {
	if h.Count == nil {
		return DefaultHistoryCount
	}
	return *h.Count
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pubsub",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills defaults, resolves the publish key and takes the hub:
// from the pubsub app when the app defines it, else as this handler
// defines it.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Hub == "" {
		h.Hub = DefaultHub
	}
	if h.Heartbeat == 0 {
		h.Heartbeat = caddy.Duration(DefaultHeartbeat)
	}
	if h.MaxMessageSize == 0 {
		h.MaxMessageSize = DefaultMaxMessageSize
	}
	if h.PollTimeout == 0 {
		h.PollTimeout = caddy.Duration(DefaultPollTimeout)
	}
	appIface, err := ctx.App("pubsub")
	if err != nil {
		return fmt.Errorf("loading pubsub app: %w", err)
	}
	app := appIface.(*App)
	global, isGlobal := app.globalHub(h.Hub)
	// Presence and Caddy's events are the hub's own "$" topics, which
	// decide who may read through an open endpoint.
	presence := h.Presence || len(h.CaddyEvents) > 0
	if isGlobal {
		if set := h.hubSettings(); len(set) > 0 {
			return globalHubError(h.Hub, set)
		}
		presence = app.Hubs[h.Hub].Presence || len(app.Hubs[h.Hub].CaddyEvents) > 0
		h.Limits = h.Limits.withDefaults()
	} else {
		// The handler's own max_message_size caps its MQTT links too.
		h.HubConfig.MaxMessageSize = h.MaxMessageSize
		h.HubConfig = h.HubConfig.withDefaults()
	}
	if err := h.check(); err != nil {
		return err
	}

	key, err := resolve("publish_key", h.PublishKey)
	if err != nil {
		return err
	}
	if key == "" && h.JWT == nil && h.AnonymousPublish != anonymousOff {
		h.logger.Warn("publishing has no authentication: only loopback clients may publish; set publish_key to publish from elsewhere, or anonymous_publish off",
			zap.String("hub", h.Hub))
	}
	var verifier *auth.Verifier
	var tokenCookie string
	if h.JWT != nil {
		v, err := h.JWT.verifier(h.logger)
		if err != nil {
			return err
		}
		verifier, tokenCookie = v, h.JWT.Cookie
	}

	if err := app.addReaders(h.Hub, hubReaders{rule: h.readers(presence), where: h.where()}); err != nil {
		return err
	}
	hb := global
	if !isGlobal {
		if h.own, err = app.provisionHub(ctx, h.Hub, h.HubConfig, h.logger); err != nil {
			return err
		}
		hb = h.own.hub
	}
	h.endpoint = handlers.Endpoint{
		Hub:            hb,
		Heartbeat:      time.Duration(h.Heartbeat),
		MaxMessageSize: h.MaxMessageSize,
		PublishKey:     key,
		NoAnonymous:    h.AnonymousPublish == anonymousOff,
		JWT:            verifier,
		TokenCookie:    tokenCookie,
		PollTimeout:    time.Duration(h.PollTimeout),
		AllowedOrigins: origins(h.CORS),
		Limits:         h.Limits.endpoint(),
		Logger:         h.logger,
	}
	if err := h.observe(ctx, app); err != nil {
		return err
	}
	return h.provisionHooks(ctx)
}

// provisionHooks starts the endpoint's hooks client, if it has hooks.
func (h *Handler) provisionHooks(ctx caddy.Context) error {
	if h.Hooks == nil {
		return nil
	}
	c, err := h.Hooks.client(ctx, h.Location, h.MaxMessageSize, h.logger)
	if err != nil {
		return err
	}
	h.hooks, h.endpoint.Hooks = c, c
	h.unwatch = c.Watch(h.endpoint.Hub)
	h.metrics.addHooks(cmp.Or(h.Location, h.Hub), c)
	return nil
}

// Validate checks the settings (also for JSON configs, which skip the
// Caddyfile's checks).
func (h *Handler) Validate() error { return h.check() }

func (h *Handler) check() error {
	return errors.Join(
		checkHubName(h.Hub),
		h.HubConfig.check(),
		checkHeartbeat(time.Duration(h.Heartbeat)),
		checkMaxMessageSize(h.MaxMessageSize),
		checkTopicTemplate(h.Topic),
		checkPollTimeout(time.Duration(h.PollTimeout)),
		checkOrigins(h.CORS),
		checkAnonymousPublish(h.AnonymousPublish),
		h.JWT.check(),
		h.Hooks.check(),
	)
}

// readers describes everything that decides who may subscribe through
// this endpoint, for comparing the endpoints of one hub: the jwt block, or
// without it, when the hub has "$" topics to read (presence), the publish
// key and anonymous publishing, which grant them. Publish-only differences
// (a keyed publish endpoint beside an open one) do not count. presence is
// whether the hub has presence.
func (h *Handler) readers(presence bool) string {
	if h.JWT != nil {
		b, _ := json.Marshal(h.JWT) // of strings and a duration: cannot fail
		return "jwt " + string(b)
	}
	if presence {
		return fmt.Sprintf("presence, publish_key %q, anonymous_publish %q", h.PublishKey, h.AnonymousPublish)
	}
	return "open"
}

// where names the endpoint in errors.
func (h *Handler) where() string {
	if h.Location != "" {
		return "at " + h.Location
	}
	return "(route without a Caddyfile location)"
}

// ServeHTTP picks the endpoint for r. The handler answers every request it
// gets, so next is never called.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	rq := handlers.Request{Scheme: forwardedScheme(r), Client: clientAddr(r)}
	if h.Topic != "" {
		rq.DefaultTopic = func() (string, error) { return h.defaultTopic(r) }
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
		h.endpoint.SetCORSHeaders(w, r, rq)
	case http.MethodOptions:
		h.endpoint.Options(w, r, rq)
		return nil
	case http.MethodConnect:
		// A WebSocket over HTTP/2 (RFC 8441) opens with an extended
		// CONNECT, which only subscribes; any other CONNECT is refused.
		if handlers.IsWebSocketConnect(r) {
			t, _ := handlers.SelectTransport(r)
			h.serve(w, r, rq, t)
			return nil
		}
		fallthrough
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, OPTIONS")
		http.Error(w, "method not allowed: subscribe with GET, publish with POST", http.StatusMethodNotAllowed)
		return nil
	}
	if r.Method == http.MethodPost {
		h.publish(w, r, rq)
		return nil
	}
	if handlers.AsksPresence(r) {
		h.endpoint.ServePresence(w, r, rq)
		return nil
	}
	t, err := handlers.SelectTransport(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil
	}
	h.serve(w, r, rq, t)
	return nil
}

// serve serves r's subscriber on t, once the module's limits admit it.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, rq handlers.Request, t *handlers.Transport) {
	release, ok := h.admit(w, r)
	if !ok {
		return
	}
	rq.Release = release
	t.Serve(&h.endpoint, w, r, rq)
}

// forwardedScheme returns the scheme a trusted proxy (the server's
// trusted_proxies) says the client used, in X-Forwarded-Proto; "" when the
// peer is no trusted proxy or says nothing, so the connection's counts.
func forwardedScheme(r *http.Request) string {
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return ""
	}
	first, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	switch proto := strings.ToLower(strings.TrimSpace(first)); proto {
	case "http", "https":
		return proto
	}
	return ""
}

// defaultTopic expands the configured topic for r, when r needs it. Each
// placeholder must become one literal level, so a request path cannot widen
// the topic.
func (h *Handler) defaultTopic(r *http.Request) (string, error) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return "", errors.New("no replacer in request context")
	}
	var bad error
	topic := placeholder.ReplaceAllStringFunc(h.Topic, func(ph string) string {
		v := repl.ReplaceKnown(ph, "")
		if v == "" || strings.ContainsAny(v, "/+#") || strings.HasPrefix(v, "$") {
			bad = fmt.Errorf("topic level %q from %s is not a single literal level", v, ph)
		}
		return v
	})
	if bad != nil {
		return "", bad
	}
	if err := hub.ValidateTopic(topic); err != nil {
		return "", err
	}
	return topic, nil
}

// Cleanup releases the hub this handler defines, if it does; the last
// user of a hub closes it.
func (h *Handler) Cleanup() error {
	if h.hooks != nil {
		h.unwatch()
		h.metrics.removeHooks(h.hooks)
		h.hooks.Close()
	}
	h.own.release()
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
