package auth_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A browser attaches some credentials by itself, whichever site's page
// makes the request: the token cookie, HTTP Basic credentials, and the
// visitor's loopback address. They count only from the endpoint's own
// origin or one listed by name in cors; "*" admits other pages only with a
// credential they send on purpose (Authorization: Bearer, ?access_token=).
func TestAmbientCredentialsNeverActForAnotherSite(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		poll_timeout 1s
		jwt {
			secret `+secret+`
			cookie pubsub_token
		}
		cors * `+appOrigin+`
	}
}
`)
	ep := s.Base + "/events"
	reader := chatReader(t)
	writer := hs(t, grants{Publish: []string{"chat/#"}, Subscribe: []string{"chat/#"}})
	from := func(origin string, h ...http.Header) http.Header {
		return merge(append(h, http.Header{"Origin": {origin}})...)
	}
	crossSite := http.Header{"Sec-Fetch-Site": {"cross-site"}}

	cases := []struct {
		name   string
		header http.Header
		status int // of the WebSocket handshake and the publish; 200 stands for 101 there
		reason string
	}{
		{"cookie from another site", from(evilOrigin, cookie(writer)), 403, "cookies are not accepted from " + evilOrigin},
		{"cookie from another scheme of this host", from("https://"+s.Base[len("http://"):], cookie(writer)), 403, "cookies are not accepted"},
		{"cookie from another port of this host", from("http://127.0.0.1", cookie(writer)), 403, "cookies are not accepted"},
		{"cookie without Origin, cross-site", merge(cookie(writer), crossSite), 403, "cookies are not accepted from another site"},
		{"bearer from another site", from(evilOrigin, bearer(writer)), 200, ""},
		{"bearer from another site with a stray cookie", from(evilOrigin, bearer(writer), http.Header{"Cookie": {"theme=dark"}}), 403, "cookies are not accepted"},
		{"cookie from the listed origin", from(appOrigin, cookie(writer)), 200, ""},
		{"cookie from the endpoint's own origin", from(s.Base, cookie(writer)), 200, ""},
		{"cookie from no page (curl)", cookie(writer), 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := testserver.DialWSStatus(t, ep+q("topic", "chat/x"), tc.header)
			if tc.status == 200 {
				if code != http.StatusSwitchingProtocols {
					t.Fatalf("WebSocket: %d %q, want 101", code, body)
				}
			} else {
				expectDenied(t, "WebSocket", code, body, tc.status, tc.reason)
			}
			code, body = publishAs(t, ep, tc.header, "chat/x", "hi")
			if tc.status == 200 {
				if code != http.StatusOK {
					t.Fatalf("publish: %d %q", code, body)
				}
			} else {
				expectDenied(t, "publish", code, body, tc.status, tc.reason)
			}
			code, body, _ = sseStatus(t, ep+q("topic", "chat/x"), tc.header)
			if tc.status == 200 {
				if code != http.StatusOK {
					t.Fatalf("SSE: %d %q", code, body)
				}
			} else {
				expectDenied(t, "SSE", code, body, tc.status, tc.reason)
			}
		})
	}
	// A token sent on purpose in the query works from any page under "*".
	if code, body := testserver.DialWSStatus(t, ep+q("topic", "chat/x", "access_token", reader), from(evilOrigin)); code != http.StatusSwitchingProtocols {
		t.Errorf("WebSocket with ?access_token= from another site: %d %q", code, body)
	}
}

// A page of another site cannot use the visitor's HTTP Basic credentials,
// which the browser attaches by itself once the visitor has logged in to
// the basic_auth in front of the endpoint.
func TestBasicCredentialsFromAnotherSite(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	basic_auth /events* {
		alice $2a$04$PzhpkbFaKnh4n7ZbPImdh.OyKaQRXKbroMlCDwU8CjI9hjy73zWKa
	}
	pubsub /events* {
		cors *
	}
}
`)
	// alice:open sesame, hashed at bcrypt's lowest cost to keep the test fast.
	login := http.Header{"Authorization": {"Basic YWxpY2U6b3BlbiBzZXNhbWU="}}
	code, body := testserver.DialWSStatus(t, s.Base+"/events?topic=t", merge(login, http.Header{"Origin": {evilOrigin}}))
	expectDenied(t, "WebSocket from another site", code, body, 403, "Basic credentials are not accepted from "+evilOrigin)
	if code, body := testserver.DialWSStatus(t, s.Base+"/events?topic=t", merge(login, http.Header{"Origin": {s.Base}})); code != http.StatusSwitchingProtocols {
		t.Errorf("WebSocket from the endpoint's own page: %d %q", code, body)
	}
}

// Behind a TLS-terminating proxy the page's origin is https: the scheme
// comes from X-Forwarded-Proto, but only when the peer is one of the
// server's trusted_proxies.
func TestSameOriginBehindATrustedProxy(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			globals := ""
			if trusted {
				globals = "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"
			}
			t.Setenv(secretEnv, secret)
			s := testserver.StartWith(t, globals, hmacSite("30s", ""))
			ep := s.Base + "/events"
			header := merge(cookie(chatReader(t)), http.Header{
				"Origin":            {"https://" + s.Base[len("http://"):]},
				"X-Forwarded-Proto": {"https"},
			})
			code, body := testserver.DialWSStatus(t, ep+q("topic", "chat/x"), header)
			switch {
			case trusted && code != http.StatusSwitchingProtocols:
				t.Errorf("WebSocket through the trusted proxy: %d %q, want 101", code, body)
			case !trusted:
				expectDenied(t, "WebSocket with a forged X-Forwarded-Proto", code, body, 403, "add the origin to cors")
			}
		})
	}
}
