package handlers

// Who a request is and what it may do. A request's credentials are checked
// once, when it arrives (for a WebSocket: at the upgrade); its identity then
// decides each publish and each subscription, on every transport.

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/auth"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// identity is who a request is, from its credentials.
type identity struct {
	ep    *Endpoint
	page  page        // the page the request comes from
	token *auth.Token // a verified token; nil without one
	key   bool        // the request sent PublishKey
	// loopback: straight from this machine (fromLoopback), from no other
	// site's page: it may publish without a credential unless NoAnonymous.
	loopback    bool
	notLoopback string // why not, for the reason of a refusal
}

// publisher names who publishes, for the hub's per-publisher rate: a
// token's subject, else the publish key (all its holders are one
// publisher), else the client's address (rq.Client, or the TCP peer).
func (id identity) publisher(r *http.Request, rq Request) string {
	switch {
	case id.token != nil && id.token.Subject != "":
		return "sub:" + id.token.Subject
	case id.key:
		return "key"
	case rq.Client != "":
		return "addr:" + rq.Client
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// denial is a refused request: a status and a one-line reason.
type denial struct {
	status int
	reason string
	// invalidToken marks a 401 for a token that was sent but is not (or
	// no longer) valid, so the client knows to get a new one.
	invalidToken bool
	// retryAfter, when set, is sent as Retry-After (whole seconds, at
	// least 1): the publish was held back, not refused for good.
	retryAfter time.Duration
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
	if d.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(1, math.Ceil(d.retryAfter.Seconds())))))
	}
	fail(w, d.status, d.reason)
}

// identify checks r's credentials: the static publish key as
// "Authorization: Bearer KEY", else, with JWT configured, a token from the
// Authorization header, the cookie or ?access_token= (in that order; the
// first present is the one checked). A token that is sent but not valid is
// refused (401) whatever the request wants to do. Credentials the browser
// attaches by itself (any cookie, an Authorization other than Bearer, the
// loopback address) count only from a trusted page (see pageOf): from
// another site's page a request with a cookie or such an Authorization is
// refused (403), and loopback grants it nothing.
func (ep *Endpoint) identify(r *http.Request, p page) (identity, *denial) {
	id := identity{ep: ep, page: p}
	id.loopback, id.notLoopback = fromLoopback(r)
	if id.page.trust != pageTrusted {
		if id.loopback {
			id.loopback, id.notLoopback = false, "it comes from a page of "+id.page.origin
		}
		if d := ambientCredentials(r, id.page); d != nil {
			return id, d
		}
	}
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

// admit identifies a request that acts (a publish, a WebSocket upgrade),
// refusing first one from a page cors does not admit; what names the
// request in the reason.
func (ep *Endpoint) admit(r *http.Request, rq Request, what string) (identity, *denial) {
	p := ep.pageOf(r, rq)
	if p.trust == pageRefused {
		return identity{}, &denial{status: http.StatusForbidden, reason: fmt.Sprintf("cross-origin %s from %s not allowed: add the origin to cors", what, p.origin)}
	}
	return ep.identify(r, p)
}

// ambientCredentials refuses a request from another site's page that is
// not listed by name in cors when it carries credentials the browser
// attaches by itself: a cookie (the token cookie, or one an auth handler
// in front checks), or HTTP Basic (any Authorization that is not Bearer).
func ambientCredentials(r *http.Request, p page) *denial {
	what := ""
	switch scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " "); {
	case len(r.Header.Values("Cookie")) > 0:
		what = "cookies"
	case scheme != "" && !strings.EqualFold(scheme, "Bearer"):
		what = scheme + " credentials"
	default:
		return nil
	}
	return &denial{status: http.StatusForbidden, reason: fmt.Sprintf(
		"%s are not accepted from %s, whose browser sends them by itself: list the origin by name in cors, or send a token as Authorization: Bearer or ?access_token=", what, p.origin)}
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
	case ep.JWT == nil && ep.PublishKey == "" && ep.NoAnonymous:
		return &denial{status: http.StatusForbidden, reason: "anonymous publishing is off: configure publish_key or jwt"}
	case ep.JWT == nil && ep.PublishKey == "":
		if id.loopback {
			return nil
		}
		return &denial{status: http.StatusForbidden, reason: "publishing is allowed from loopback only, and " + id.notLoopback + ": configure publish_key or jwt"}
	case ep.JWT == nil:
		return &denial{status: http.StatusUnauthorized, reason: "missing or wrong publish key"}
	case ep.PublishKey != "":
		return &denial{status: http.StatusUnauthorized, reason: "missing token or publish key: send Authorization: Bearer TOKEN"}
	}
	return &denial{status: http.StatusUnauthorized, reason: "missing token: send Authorization: Bearer TOKEN"}
}

// mayPublishTo checks every message's topic: no client may write the
// hub's own "$" topics (presence events come from the server alone), and a
// token's publish grant must allow the rest (the publish key and the
// loopback default allow every other topic).
func (id *identity) mayPublishTo(msgs []hub.Message) *denial {
	for _, m := range msgs {
		if strings.HasPrefix(m.Topic, "$") {
			return &denial{status: http.StatusForbidden, reason: fmt.Sprintf("topic %q is reserved: topics starting with $ are written by the server only", m.Topic)}
		}
	}
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
	subject, claims := hub.Subject(id.token.Subject), hub.Claims(id.token.Claims)
	if check {
		return []hub.SubscribeOption{hub.Allow(id.token.Subscribe.Allows), subject, claims}, nil
	}
	return []hub.SubscribeOption{hub.Allow(nil), subject, claims}, nil
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
// (see subscription), then asks the application's backend (hooks.go),
// which may narrow them; for the transports that subscribe once per
// request. It returns the filters to subscribe.
func (ep *Endpoint) authorizeSubscribe(r *http.Request, rq Request, filters []string) (identity, []string, []hub.SubscribeOption, *denial) {
	id, denied := ep.identify(r, ep.pageOf(r, rq))
	if denied != nil {
		return id, nil, nil, denied
	}
	opts, denied := id.subscription(filters)
	if denied != nil {
		return id, nil, nil, denied
	}
	filters, opts, denied = ep.hookFirst(r.Context(), &id, r, rq, filters, opts)
	return id, filters, opts, denied
}
