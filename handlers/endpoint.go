// Package handlers holds the HTTP endpoints of caddy-pubsub, one file per
// transport: publish.go for POST, sse.go for Server-Sent Events,
// websocket.go for WebSocket, longpoll.go for long-polling. They speak
// net/http and the hub; the Caddy module resolves configuration and hands
// each request to them.
package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/auth"
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
	// publish; when empty (and JWT nil) only loopback clients may publish.
	PublishKey string
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
	// AnyOrigin).
	AllowedOrigins []string
	// Limits bounds topics per subscription and batch sizes (limits.go).
	Limits Limits
	Logger *zap.Logger
}

// Request is what the module resolved from one request.
type Request struct {
	// DefaultTopic is the configured topic with placeholders replaced, used
	// when the request names none ("" if not configured).
	DefaultTopic string
}

// fail answers an error with its status and a one-line reason.
func fail(w http.ResponseWriter, status int, reason string) {
	http.Error(w, reason, status)
}

// topics returns the subscription filters of r: every ?topic=, or the
// default topic; at most limit of them.
func (rq Request) topics(r *http.Request, limit int) ([]string, error) {
	topics := r.URL.Query()["topic"]
	if len(topics) == 0 && rq.DefaultTopic != "" {
		topics = []string{rq.DefaultTopic}
	}
	switch {
	case len(topics) == 0:
		return nil, errors.New("no topic: add ?topic=NAME")
	case len(topics) > limit:
		return nil, fmt.Errorf("too many topics in one request (at most %d)", limit)
	}
	for _, t := range topics {
		if err := hub.ValidateFilter(t); err != nil {
			return nil, err
		}
	}
	return topics, nil
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
func (ep *Endpoint) authorizePublish(r *http.Request) (identity, *denial) {
	if !ep.originAllowed(r) {
		return identity{}, &denial{status: http.StatusForbidden, reason: "cross-origin publish not allowed: add the origin to cors"}
	}
	id, denied := ep.identify(r)
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

// fromLoopback reports whether r comes straight from this machine: the TCP
// peer is loopback and no proxy header says it forwards someone else.
func fromLoopback(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
		if _, ok := r.Header[h]; ok {
			return false
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}
