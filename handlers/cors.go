package handlers

import (
	"fmt"
	"net/http"
)

// CORS answers, for the origins of AllowedOrigins (see origin.go).
const (
	corsMethods = "GET, POST"
	corsHeaders = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"
	// corsMaxAge is how long, in seconds, a browser may reuse a preflight
	// answer (browsers cap it: Chromium at 2 hours).
	corsMaxAge = "3600"
)

// corsOrigin returns the Access-Control-Allow-Origin value for r, "" when r
// has no Origin or one that is not allowed, and whether the page may send
// credentials (cookies): only the endpoint's own origin and origins listed
// by name may; "*" lets any page read without credentials.
func (ep *Endpoint) corsOrigin(r *http.Request, rq Request) (allow string, credentials bool) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return "", false
	}
	switch ep.pageOf(r, rq).trust {
	case pageTrusted:
		return origin, true
	case pageExplicitOnly:
		return anyOrigin, false
	}
	return "", false
}

// SetCORSHeaders adds to the answer of a GET or POST the headers that let a
// page of an allowed origin read it (EventSource, fetch, XMLHttpRequest).
// Errors carry them too, so the page can read the reason.
func (ep *Endpoint) SetCORSHeaders(w http.ResponseWriter, r *http.Request, rq Request) {
	if len(ep.AllowedOrigins) == 0 {
		return
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	allow, credentials := ep.corsOrigin(r, rq)
	if allow == "" {
		return
	}
	h.Set("Access-Control-Allow-Origin", allow)
	h.Set("Access-Control-Expose-Headers", LastIDHeader)
	if credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// Options answers OPTIONS. A CORS preflight (Origin and
// Access-Control-Request-Method) from an allowed origin for GET, HEAD or
// POST gets 204 with the methods and headers pages may use; from another
// origin, or for another method, 403. Any other OPTIONS gets 204 with
// Allow.
func (ep *Endpoint) Options(w http.ResponseWriter, r *http.Request, rq Request) {
	h := w.Header()
	h.Set("Allow", "GET, HEAD, POST, OPTIONS")
	method := r.Header.Get("Access-Control-Request-Method")
	if r.Header.Get("Origin") == "" || method == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	allow, credentials := ep.corsOrigin(r, rq)
	switch {
	case allow == "":
		fail(w, http.StatusForbidden, "origin not allowed: add it to cors")
		return
	case method != http.MethodGet && method != http.MethodHead && method != http.MethodPost:
		fail(w, http.StatusForbidden, fmt.Sprintf("method %q not allowed: use GET or POST", method))
		return
	}
	h.Set("Access-Control-Allow-Origin", allow)
	h.Set("Access-Control-Expose-Headers", LastIDHeader)
	if credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	h.Set("Access-Control-Allow-Methods", corsMethods)
	h.Set("Access-Control-Allow-Headers", corsHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
}
