package handlers

// Which page a request comes from, and how far the endpoint trusts it. A
// browser attaches some credentials by itself, whichever site's page makes
// the request: cookies, HTTP Basic credentials it remembers, and the
// visitor's own loopback address. Those are honoured only from the
// endpoint's own origin and from origins listed by name in cors; "*" admits
// any page, but only with a credential the page sent on purpose (an
// Authorization Bearer header or ?access_token=).

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// anyOrigin in Endpoint.AllowedOrigins allows every origin.
const anyOrigin = "*"

// pageTrust is how far the endpoint trusts the page a request comes from.
type pageTrust int

const (
	// pageRefused: another site's page that cors does not admit.
	pageRefused pageTrust = iota
	// pageExplicitOnly: another site's page admitted by cors "*" only:
	// it may use the endpoint with credentials it sends on purpose.
	pageExplicitOnly
	// pageTrusted: no page (curl, a backend), the endpoint's own origin,
	// or an origin listed by name in cors.
	pageTrusted
)

// page is the page a request comes from.
type page struct {
	trust pageTrust
	// origin names a foreign page for reasons: its Origin, or "another
	// site" when only Sec-Fetch-Site tells.
	origin string
}

// pageOf tells where r comes from. A foreign page is one whose Origin is
// not the endpoint's own (scheme, host and port compared), or, without
// Origin, one that Sec-Fetch-Site marks cross-site or same-site (another
// origin, unknown, so never one listed by name). A request with neither
// comes from no web page.
func (ep *Endpoint) pageOf(r *http.Request, rq Request) page {
	origin := r.Header.Get("Origin")
	if origin == "" {
		switch r.Header.Get("Sec-Fetch-Site") {
		case "cross-site", "same-site":
			if slices.Contains(ep.AllowedOrigins, anyOrigin) {
				return page{trust: pageExplicitOnly, origin: "another site"}
			}
			return page{trust: pageRefused, origin: "another site"}
		}
		return page{trust: pageTrusted}
	}
	if sameOrigin(origin, rq.scheme(r), r.Host) {
		return page{trust: pageTrusted}
	}
	p := page{trust: pageRefused, origin: origin}
	for _, allowed := range ep.AllowedOrigins {
		switch {
		case allowed == anyOrigin:
			p.trust = max(p.trust, pageExplicitOnly)
		case strings.EqualFold(allowed, origin):
			p.trust = pageTrusted
		}
	}
	return p
}

// sameOrigin reports whether origin is scheme://host of the request, with
// default ports made explicit on both sides.
func sameOrigin(origin, scheme, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Scheme, scheme) {
		return false
	}
	return strings.EqualFold(withPort(u.Host, scheme), withPort(host, scheme))
}

// withPort adds the scheme's default port to a host without one.
func withPort(host, scheme string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host
	}
	if scheme == "https" {
		return host + ":443"
	}
	return host + ":80"
}

// NormalizeOrigin checks an allowed origin from the configuration and
// returns it as browsers send it: "scheme://host[:port]", no path, no
// trailing slash. anyOrigin passes as is.
func NormalizeOrigin(origin string) (string, error) {
	if origin == anyOrigin {
		return origin, nil
	}
	u, err := url.Parse(origin)
	switch {
	case err != nil:
		return "", fmt.Errorf("origin %q: %w", origin, err)
	case u.Scheme == "" || u.Host == "":
		return "", fmt.Errorf("origin %q: want scheme://host[:port], e.g. https://app.example.com, or *", origin)
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("origin %q: an origin has no user, path, query or fragment", origin)
	case strings.Contains(u.Host, "*"):
		return "", errors.New("origin patterns are not supported: list each origin, or use * alone")
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}
