package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// AnyOrigin in Endpoint.AllowedOrigins allows every origin.
const AnyOrigin = "*"

// originAllowed reports whether a browser page from r's Origin may publish
// or open a WebSocket: requests without Origin (not sent by a browser), from
// the endpoint's own origin, or from one listed in AllowedOrigins.
func (ep *Endpoint) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || sameOrigin(origin, r.Host) {
		return true
	}
	for _, allowed := range ep.AllowedOrigins {
		if allowed == AnyOrigin || strings.EqualFold(allowed, origin) {
			return true
		}
	}
	return false
}

// NormalizeOrigin checks an allowed origin from the configuration and
// returns it as browsers send it: "scheme://host[:port]", no path, no
// trailing slash. AnyOrigin passes as is.
func NormalizeOrigin(origin string) (string, error) {
	if origin == AnyOrigin {
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
