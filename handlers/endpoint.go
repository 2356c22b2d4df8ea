// Package handlers holds the HTTP endpoints of caddy-pubsub, one file per
// transport: publish.go for POST, sse.go for Server-Sent Events. They speak
// net/http and the hub; the Caddy module resolves configuration and hands
// each request to them.
package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Limits on what one request may ask for.
const (
	MaxTopicsPerRequest = 32
	MaxBatch            = 100 // messages in one JSON array publish
	maxIDLength         = 256
	maxEventLength      = 64
)

// Endpoint is one configured pubsub endpoint: a hub and the settings every
// transport shares.
type Endpoint struct {
	Hub            *hub.Hub
	Heartbeat      time.Duration
	MaxMessageSize int64
	// PublishKey, when set, is required as "Authorization: Bearer KEY" to
	// publish; when empty only loopback clients may publish.
	PublishKey string
	Logger     *zap.Logger
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
// default topic.
func (rq Request) topics(r *http.Request) ([]string, error) {
	topics := r.URL.Query()["topic"]
	if len(topics) == 0 && rq.DefaultTopic != "" {
		topics = []string{rq.DefaultTopic}
	}
	switch {
	case len(topics) == 0:
		return nil, errors.New("no topic: add ?topic=NAME")
	case len(topics) > MaxTopicsPerRequest:
		return nil, errors.New("too many topics in one request")
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

// authorizePublish returns 0 when r may publish, else a status and reason.
func (ep *Endpoint) authorizePublish(r *http.Request) (int, string) {
	if origin := r.Header.Get("Origin"); origin != "" && !sameOrigin(origin, r.Host) {
		return http.StatusForbidden, "cross-origin publish not allowed"
	}
	if ep.PublishKey != "" {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !equalSecret(strings.TrimSpace(token), ep.PublishKey) {
			return http.StatusUnauthorized, "missing or wrong publish key"
		}
		return 0, ""
	}
	if !fromLoopback(r) {
		return http.StatusForbidden, "publishing is allowed from loopback only: configure publish_key"
	}
	return 0, ""
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
