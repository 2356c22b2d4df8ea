// Package handlers holds the HTTP endpoints of caddy-pubsub: publish.go
// for POST (the publish path every transport shares), sse.go for
// Server-Sent Events, longpoll.go for long-polling, and the WebSocket in
// websocket.go (handshake, reader and writer), wsframe.go (its frame
// protocol) and wssubscribe.go (its subscriptions). Who may do what is in
// access.go and origin.go. They speak net/http and the hub; the Caddy
// module resolves configuration and hands each request to them.
package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/auth"
	"github.com/caddy-pubsub/caddy-pubsub/hooks"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Limits on what one request may ask for. MaxTopicsPerRequest and MaxBatch
// are the defaults of Limits.Topics and Limits.Batch (limits.go).
const (
	MaxTopicsPerRequest = 32
	MaxBatch            = 100 // messages in one JSON array publish
	maxIDLength         = 256
)

// Endpoint is one configured pubsub endpoint: a hub and the settings every
// transport shares.
type Endpoint struct {
	Hub            *hub.Hub
	Heartbeat      time.Duration
	MaxMessageSize int64
	// PublishKey, when set, is required as "Authorization: Bearer KEY" to
	// publish; when empty (and JWT nil) only loopback clients may publish,
	// unless NoAnonymous.
	PublishKey string
	// NoAnonymous refuses publishing without a credential, from loopback
	// too.
	NoAnonymous bool
	// JWT, when set, verifies tokens (see access.go): subscribing needs one
	// whose grant allows the topics, and publishing needs one whose grant
	// allows the topic, or PublishKey.
	JWT *auth.Verifier
	// TokenCookie names the cookie that may carry the token ("" for none).
	TokenCookie string
	// PollTimeout is how long a long-poll waits for a message.
	PollTimeout time.Duration
	// AllowedOrigins lists the browser origins, besides the endpoint's own,
	// that may publish and open WebSockets (NormalizeOrigin form, or
	// anyOrigin).
	AllowedOrigins []string
	// Limits bounds topics per subscription and batch sizes (limits.go).
	Limits Limits
	// Hooks, when set, asks the application's backend about connects,
	// subscriptions and publishes, and tells it of subscriptions
	// (hooks.go).
	Hooks  *hooks.Client
	Logger *zap.Logger
}

// Request is what the module resolved from one request.
type Request struct {
	// DefaultTopic expands the configured topic for this request; nil when
	// none is configured. It is called only when the request names no
	// topic of its own, so a placeholder that fits only some requests
	// fails only those that need it.
	DefaultTopic func() (string, error)
	// Scheme is how the client reached the server, "http" or "https": a
	// trusted proxy's X-Forwarded-Proto, else the connection's. "" means
	// the connection's.
	Scheme string
	// Client is the client's address as the module counts it (Caddy's
	// client_ip, which a trusted proxy may forward), naming an anonymous
	// publisher for the hub's per-publisher rate. "" means the TCP peer.
	Client string
	// Release, when set, is called once the subscriber is gone: when the
	// transport's serve returns, or, for a stream handed to the parked
	// core (park), when its connection closes. The module's admission
	// (per_ip, subscriber limits) is released with it.
	Release func()

	// transport names the subscriber transport (Transport.Name), set by
	// Transport.Serve; "" for an HTTP publish.
	transport string
	// keep, set by Transport.Serve, takes Release over from it: a
	// transport that hands its stream off calls it, and the returned
	// release when the stream ends.
	keep func() (release func())
}

// scheme returns how the client reached the server.
func (rq Request) scheme(r *http.Request) string {
	switch {
	case rq.Scheme != "":
		return rq.Scheme
	case r.TLS != nil:
		return "https"
	}
	return "http"
}

// defaultTopic returns the expanded default topic, "" when none is
// configured.
func (rq Request) defaultTopic() (string, error) {
	if rq.DefaultTopic == nil {
		return "", nil
	}
	return rq.DefaultTopic()
}

// fail answers an error with its status and a one-line reason.
func fail(w http.ResponseWriter, status int, reason string) {
	http.Error(w, reason, status)
}

// topics returns the subscription filters of r: every ?topic=, or the
// default topic; at most limit of them.
func (rq Request) topics(r *http.Request, limit int) ([]string, error) {
	topics := r.URL.Query()["topic"]
	if len(topics) == 0 {
		def, err := rq.defaultTopic()
		if err != nil {
			return nil, err
		}
		if def != "" {
			topics = []string{def}
		}
	}
	if len(topics) == 0 {
		return nil, errors.New("no topic: add ?topic=NAME")
	}
	if err := checkFilters(topics, limit, " in one request"); err != nil {
		return nil, err
	}
	return topics, nil
}

// checkFilters checks a subscription's filters, for every transport: at
// most limit of them (where says where they were counted, for the
// reason), each a valid filter.
func checkFilters(filters []string, limit int, where string) error {
	if len(filters) > limit {
		return fmt.Errorf("too many topics%s (at most %d)", where, limit)
	}
	for _, f := range filters {
		if err := hub.ValidateFilter(f); err != nil {
			return err
		}
	}
	return nil
}

// lastID returns where a subscriber resumes: the Last-Event-ID header wins
// over ?last_id=, since a reconnecting EventSource reuses its URL.
func lastID(r *http.Request) (string, error) {
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = r.URL.Query().Get("last_id")
	}
	if len(id) > maxIDLength {
		return "", errors.New("last event ID too long")
	}
	return id, nil
}

// authorizePublish returns who r is when it may publish (each topic is
// then checked with identity.mayPublishTo), else why not.
func (ep *Endpoint) authorizePublish(r *http.Request, rq Request) (identity, *denial) {
	id, denied := ep.admit(r, rq, "publish")
	if denied == nil {
		denied = id.mayPublish()
	}
	return id, denied
}

// equalSecret compares in constant time, whatever the lengths.
func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// forwardingHeaders are the headers by which a proxy, tunnel or CDN says
// it forwards someone else's request; any X-Forwarded-* counts too.
var forwardingHeaders = []string{"Forwarded", "X-Real-Ip", "Via", "Cf-Connecting-Ip", "True-Client-Ip"}

// fromLoopback reports whether r comes straight from this machine: the TCP
// peer is loopback, the Host is a loopback name or address, and no header
// says a proxy forwards someone else (a proxy or tunnel on the same host
// would otherwise make every internet client loopback).
func fromLoopback(r *http.Request) (bool, string) {
	for name := range r.Header {
		if slices.Contains(forwardingHeaders, name) || strings.HasPrefix(name, "X-Forwarded-") {
			return false, "the request was forwarded (" + name + ")"
		}
	}
	if !loopbackHost(r.Host) {
		return false, "its Host is not a loopback name or address"
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false, "it does not come from loopback"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return false, "it does not come from loopback"
	}
	return true, ""
}

// loopbackHost reports whether a Host header names this machine:
// localhost (or a name under .localhost) or a loopback address.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}
