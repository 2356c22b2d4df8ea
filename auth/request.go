package auth

import (
	"net/http"
	"strings"
)

// Where a request's token came from.
const (
	FromHeader = "header" // Authorization: Bearer TOKEN
	FromCookie = "cookie" // the configured cookie
	FromQuery  = "query"  // ?access_token=TOKEN
)

// TokenFromRequest returns the token r carries and where it came from, ""
// if none. The first source present wins, in this order: an Authorization
// header with the Bearer scheme, the cookie named cookie (when cookie is
// not ""), the access_token query parameter. A source that is present wins
// even if its token turns out not to be valid: a request never falls back
// to a weaker source.
func TokenFromRequest(r *http.Request, cookie string) (token, source string) {
	if t, ok := Bearer(r); ok {
		return t, FromHeader
	}
	if cookie != "" {
		if c, err := r.Cookie(cookie); err == nil {
			return c.Value, FromCookie
		}
	}
	if q := r.URL.Query(); q.Has("access_token") {
		return q.Get("access_token"), FromQuery
	}
	return "", ""
}

// Bearer returns the credentials of an Authorization header with the
// Bearer scheme (case-insensitive, RFC 6750); ok is false without one.
func Bearer(r *http.Request) (string, bool) {
	scheme, value, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(value), true
}
