package auth_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

const (
	appOrigin  = "https://app.example.com"
	evilOrigin = "https://evil.example.com"
)

// corsSite serves /events with no auth (loopback publishing) and the given
// cors line.
func corsSite(cors string) string {
	return `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		poll_timeout 1s
		` + cors + `
	}
}
`
}

// preflight is the OPTIONS request a browser sends before a cross-origin
// request with method and headers it cannot send without asking.
func preflight(origin, method, headers string) http.Header {
	h := http.Header{"Origin": {origin}, "Access-Control-Request-Method": {method}}
	if headers != "" {
		h.Set("Access-Control-Request-Headers", headers)
	}
	return h
}

// wantHeaders checks that h holds each of want ("" for absent).
func wantHeaders(t *testing.T, what string, h http.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

func TestCORSPreflight(t *testing.T) {
	for _, tc := range []struct {
		name, cors, origin, method string
		status                     int
		headers                    map[string]string
	}{
		{"listed origin", "cors " + appOrigin, appOrigin, "POST", 204, map[string]string{
			"Access-Control-Allow-Origin":      appOrigin,
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET, POST",
			"Access-Control-Allow-Headers":     "Authorization, Content-Type, Last-Event-ID, Idempotency-Key",
			"Access-Control-Max-Age":           "3600",
		}},
		{"listed origin, GET", "cors " + appOrigin, appOrigin, "GET", 204, map[string]string{"Access-Control-Allow-Origin": appOrigin}},
		{"other origin", "cors " + appOrigin, evilOrigin, "POST", 403, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"no cors", "", appOrigin, "POST", 403, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"other method", "cors " + appOrigin, appOrigin, "DELETE", 403, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"any origin", "cors *", evilOrigin, "POST", 204, map[string]string{
			"Access-Control-Allow-Origin":      "*",
			"Access-Control-Allow-Credentials": "",
			"Access-Control-Allow-Headers":     "Authorization, Content-Type, Last-Event-ID, Idempotency-Key",
		}},
		{"listed beside *", "cors " + appOrigin + " *", appOrigin, "POST", 204, map[string]string{
			"Access-Control-Allow-Origin":      appOrigin,
			"Access-Control-Allow-Credentials": "true",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := testserver.Start(t, corsSite(tc.cors)).Base + "/events"
			code, body, h := testserver.Request(t, http.MethodOptions, ep, "", "", preflight(tc.origin, tc.method, "authorization,content-type"))
			if code != tc.status {
				t.Fatalf("preflight: %d %q, want %d", code, body, tc.status)
			}
			if code == 403 && !strings.Contains(body, "not allowed") {
				t.Fatalf("403 reason %q", body)
			}
			wantHeaders(t, "preflight", h, tc.headers)
			if code == 204 && !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("preflight Vary %q lacks Origin", h.Values("Vary"))
			}
		})
	}

	// An OPTIONS that is no preflight lists the methods.
	ep := testserver.Start(t, corsSite("")).Base + "/events"
	code, _, h := testserver.Request(t, http.MethodOptions, ep, "", "", nil)
	if code != 204 || h.Get("Allow") != "GET, HEAD, POST, OPTIONS" {
		t.Fatalf("OPTIONS: %d, Allow %q", code, h.Get("Allow"))
	}
}

// Publish, long-poll and SSE answers (errors too) carry the CORS headers
// for allowed origins only; "*" never allows credentials.
func TestCORSActualRequests(t *testing.T) {
	ep := testserver.Start(t, corsSite("cors "+appOrigin)).Base + "/events"
	from := func(origin string) http.Header { return http.Header{"Origin": {origin}} }

	code, body, h := testserver.Request(t, http.MethodPost, ep, "application/x-www-form-urlencoded", "topic=chat/a&data=x", from(appOrigin))
	if code != 200 {
		t.Fatalf("publish from %s: %d %s", appOrigin, code, body)
	}
	allowed := map[string]string{"Access-Control-Allow-Origin": appOrigin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
	wantHeaders(t, "publish", h, allowed)

	_, _, h = testserver.Request(t, http.MethodGet, ep+q("topic", "chat/a", "last_id", "earliest"), "", "", from(appOrigin))
	wantHeaders(t, "long-poll", h, allowed)
	_, _, h = testserver.Request(t, http.MethodGet, ep, "", "", from(appOrigin)) // 400: no topic
	wantHeaders(t, "error", h, allowed)

	code, _, h = testserver.Request(t, http.MethodPost, ep, "application/x-www-form-urlencoded", "topic=chat/a&data=x", from(evilOrigin))
	if code != 403 {
		t.Fatalf("publish from %s: %d", evilOrigin, code)
	}
	wantHeaders(t, "refused publish", h, map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"})
	_, _, h = testserver.Request(t, http.MethodGet, ep+q("topic", "chat/a", "last_id", "earliest"), "", "", from(evilOrigin))
	wantHeaders(t, "long-poll from another origin", h, map[string]string{"Access-Control-Allow-Origin": ""})

	ep = testserver.Start(t, corsSite("cors *")).Base + "/events"
	_, _, h = testserver.Request(t, http.MethodGet, ep+q("topic", "chat/a", "last_id", "earliest"), "", "", from(evilOrigin))
	wantHeaders(t, "long-poll with cors *", h, map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": ""})
}

// An EventSource with withCredentials from an allowed origin: the token
// rides in a cookie, the answer allows credentials for that origin, and
// the stream delivers. A refusal carries the headers too, so the page can
// see it.
func TestCORSEventSourceWithCredentials(t *testing.T) {
	ep := startHMAC(t, hmacSite("30s", "cors "+appOrigin))
	header := merge(http.Header{"Origin": {appOrigin}}, cookie(chatReader(t)))
	s := testserver.Subscribe(t, nil, ep+q("topic", "chat/a"), header)
	wantHeaders(t, "SSE", s.Resp.Header, map[string]string{
		"Access-Control-Allow-Origin":      appOrigin,
		"Access-Control-Allow-Credentials": "true",
		"Content-Type":                     "text/event-stream",
	})
	id := publish(t, ep, "chat/a", "hello")
	if ev := s.Next(); ev.ID != id {
		t.Fatalf("got %+v, want %s", ev, id)
	}

	code, _, h := sseStatus(t, ep+q("topic", "chat/a"), http.Header{"Origin": {appOrigin}})
	if code != 401 {
		t.Fatalf("SSE without token: %d", code)
	}
	wantHeaders(t, "401", h, map[string]string{"Access-Control-Allow-Origin": appOrigin})
}
