package handlers

// Who a request is and what it may do. A request's credentials are checked
// once, when it arrives (for a WebSocket: at the upgrade); its identity then
// decides each publish and each subscription, on every transport.

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/auth"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// identity is who a request is, from its credentials.
type identity struct {
	ep       *Endpoint
	token    *auth.Token // a verified token; nil without one
	key      bool        // the request sent PublishKey
	loopback bool        // straight from this machine, no proxy headers
}

// denial is a refused request: a status and a one-line reason.
type denial struct {
	status int
	reason string
	// invalidToken marks a 401 for a token that was sent but is not (or
	// no longer) valid, so the client knows to get a new one.
	invalidToken bool
}

// send answers the denial; a 401 carries the WWW-Authenticate challenge.
func (d *denial) send(w http.ResponseWriter) {
	if d.status == http.StatusUnauthorized {
		challenge := `Bearer realm="pubsub"`
		if d.invalidToken {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	fail(w, d.status, d.reason)
}

// identify checks r's credentials: the static publish key as
// "Authorization: Bearer KEY", else, with JWT configured, a token from the
// Authorization header, the cookie or ?access_token= (in that order; the
// first present is the one checked). A token that is sent but not valid is
// refused (401) whatever the request wants to do.
func (ep *Endpoint) identify(r *http.Request) (identity, *denial) {
	id := identity{ep: ep, loopback: fromLoopback(r)}
	if ep.PublishKey != "" {
		if bearer, ok := auth.Bearer(r); ok && equalSecret(bearer, ep.PublishKey) {
			id.key = true
			return id, nil
		}
	}
	if ep.JWT == nil {
		return id, nil
	}
	raw, source := auth.TokenFromRequest(r, ep.TokenCookie)
	if source == "" {
		return id, nil
	}
	tok, err := ep.JWT.Verify(raw)
	if err != nil {
		reason := err.Error()
		if ep.PublishKey != "" && source == auth.FromHeader {
			reason = "wrong publish key, or " + reason
		}
		return id, &denial{status: http.StatusUnauthorized, reason: reason + " (from " + source + ")", invalidToken: true}
	}
	id.token = tok
	return id, nil
}

// expired returns a denial once the identity's token has expired.
func (id *identity) expired() *denial {
	if id.token != nil && id.token.Expired(time.Now()) {
		return &denial{status: http.StatusUnauthorized, reason: "token expired", invalidToken: true}
	}
	return nil
}

// mayPublish decides whether the identity may publish at all, before the
// messages are read; mayPublishTo then checks each topic.
func (id *identity) mayPublish() *denial {
	ep := id.ep
	switch {
	case id.key:
		return nil
	case id.token != nil:
		if d := id.expired(); d != nil {
			return d
		}
		if len(id.token.Publish) == 0 {
			return &denial{status: http.StatusForbidden, reason: "token grants no publishing (pubsub.publish is empty)"}
		}
		return nil
	case ep.JWT == nil && ep.PublishKey == "":
		if id.loopback {
			return nil
		}
		return &denial{status: http.StatusForbidden, reason: "publishing is allowed from loopback only: configure publish_key or jwt"}
	case ep.JWT == nil:
		return &denial{status: http.StatusUnauthorized, reason: "missing or wrong publish key"}
	case ep.PublishKey != "":
		return &denial{status: http.StatusUnauthorized, reason: "missing token or publish key: send Authorization: Bearer TOKEN"}
	}
	return &denial{status: http.StatusUnauthorized, reason: "missing token: send Authorization: Bearer TOKEN"}
}

// mayPublishTo checks every message's topic against the token's publish
// grant (the publish key and the loopback default allow every topic).
func (id *identity) mayPublishTo(msgs []hub.Message) *denial {
	if id.token == nil || id.key {
		return nil
	}
	for _, m := range msgs {
		if !id.token.Publish.Allows(m.Topic) {
			return &denial{status: http.StatusForbidden, reason: fmt.Sprintf("token does not allow publishing to %q", m.Topic)}
		}
	}
	return nil
}

// mayConnect decides whether a WebSocket may open: with JWT configured it
// needs a token, or the publish key (to publish only).
func (id *identity) mayConnect() *denial {
	if id.ep.JWT == nil || id.token != nil || id.key {
		return nil
	}
	return &denial{status: http.StatusUnauthorized, reason: "missing token: send Authorization: Bearer TOKEN, the token cookie or ?access_token="}
}

// subscription decides whether the identity may subscribe to filters and
// returns the options that keep the subscription to its grant. Without JWT
// configured subscribing is open, but for the hub's own "$" topics
// (mayWatch). With it, each filter must overlap the
// token's subscribe grant (else 403); a filter the grant covers needs no
// check per message, and when any filter is only partly covered, every
// message is checked against the grant before it is queued (hub.Allow).
func (id *identity) subscription(filters []string) ([]hub.SubscribeOption, *denial) {
	if id.ep.JWT == nil {
		return nil, id.mayWatch(filters)
	}
	if id.token == nil {
		if id.key {
			return nil, &denial{status: http.StatusForbidden, reason: "the publish key allows publishing only: subscribe with a token"}
		}
		return nil, &denial{status: http.StatusUnauthorized, reason: "missing token: send Authorization: Bearer TOKEN, the token cookie or ?access_token="}
	}
	if d := id.expired(); d != nil {
		return nil, d
	}
	check := false
	for _, f := range filters {
		switch id.token.Subscribe.Coverage(f) {
		case auth.Denied:
			return nil, &denial{status: http.StatusForbidden, reason: fmt.Sprintf("token does not allow subscribing to %q", f)}
		case auth.Partial:
			check = true
		}
	}
	if check {
		return []hub.SubscribeOption{hub.Allow(id.token.Subscribe.Allows)}, nil
	}
	return []hub.SubscribeOption{hub.Allow(nil)}, nil
}

// mayReceive reports whether a message on topic may reach the identity,
// for history a transport reads itself (hub.History).
func (id *identity) mayReceive(topic string) bool {
	return id.ep.JWT == nil || (id.token != nil && id.token.Subscribe.Allows(topic))
}

// expiry returns a channel that fires when the identity's token expires
// (nil, never firing, without a token) and the function that releases it.
func (id *identity) expiry() (<-chan time.Time, func()) {
	if id.token == nil {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(id.token.Expires))
	return t.C, func() { t.Stop() }
}

// errTokenExpired ends a stream whose token expired.
var errTokenExpired = errors.New("token expired")

// authorizeSubscribe identifies r and decides its subscription to filters
// (see subscription), for the transports that subscribe once per request.
func (ep *Endpoint) authorizeSubscribe(r *http.Request, filters []string) (identity, []hub.SubscribeOption, *denial) {
	id, denied := ep.identify(r)
	if denied != nil {
		return id, nil, denied
	}
	opts, denied := id.subscription(filters)
	return id, opts, denied
}
