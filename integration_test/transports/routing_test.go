package transports_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A browser page from another origin may open a WebSocket or publish only
// when cors lists its origin (or *); same-origin pages and clients that
// send no Origin always may.
func TestOriginCheck(t *testing.T) {
	s, ep := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /same* {
	}
	pubsub /listed* {
		cors https://app.example.com http://localhost:3000
	}
	pubsub /any* {
		cors *
	}
}
`)
	base := strings.TrimSuffix(ep, "/events")
	// "*" admits any page, but not with the loopback exemption, which the
	// visitor's browser would lend to every site (see the auth tests).
	cases := []struct {
		path, origin     string
		allowed, publish bool
	}{
		{"/same", "", true, true},
		{"/same", s.Base, true, true},
		{"/same", "https://evil.example", false, false},
		{"/listed", "https://app.example.com", true, true},
		{"/listed", "HTTPS://APP.EXAMPLE.COM", true, true},
		{"/listed", "http://localhost:3000", true, true},
		{"/listed", "http://app.example.com", false, false},
		{"/listed", "https://evil.example", false, false},
		{"/any", "https://evil.example", true, false},
	}
	for _, tc := range cases {
		header := http.Header{}
		if tc.origin != "" {
			header.Set("Origin", tc.origin)
		}
		wantWS, wantPub := http.StatusSwitchingProtocols, http.StatusOK
		if !tc.allowed {
			wantWS = http.StatusForbidden
		}
		if !tc.publish {
			wantPub = http.StatusForbidden
		}
		code, body := testserver.DialWSStatus(t, base+tc.path+"?topic=t", header)
		if code != wantWS {
			t.Errorf("WebSocket %s from %q: %d %q, want %d", tc.path, tc.origin, code, body, wantWS)
		}
		if !tc.allowed {
			expectContains(t, "refused WebSocket", body, "add the origin to cors")
		}
		code, body, _ = testserver.Request(t, "POST", base+tc.path, "application/x-www-form-urlencoded", "topic=t&data=x", header)
		if code != wantPub {
			t.Errorf("publish %s from %q: %d %q, want %d", tc.path, tc.origin, code, body, wantPub)
		}
	}
}

// The request picks the transport: a WebSocket upgrade, an SSE Accept
// header, otherwise long-poll; ?transport= forces one.
func TestTransportSelection(t *testing.T) {
	_, ep := start(t, site)
	id := publish(t, ep, "t", "hello")
	resume := "?topic=t&last_id=earliest"

	code, body, h := testserver.Request(t, "GET", ep+resume, "", "", nil)
	if code != http.StatusOK || h.Get("Content-Type") != "application/json" || !strings.Contains(body, `"last_id":"`+id+`"`) {
		t.Errorf("plain GET: %d %s %q, want a long-poll answer", code, h.Get("Content-Type"), body)
	}
	code, body, h = testserver.Request(t, "GET", ep+resume+"&transport=poll", "", "", http.Header{"Accept": {"text/event-stream"}})
	if code != http.StatusOK || h.Get("Content-Type") != "application/json" {
		t.Errorf("?transport=poll with an SSE Accept: %d %s %q", code, h.Get("Content-Type"), body)
	}
	sse := testserver.Subscribe(t, nil, ep+resume+"&transport=sse", http.Header{"Accept": nil})
	if ev := sse.Next(); ev.ID != id {
		t.Errorf("?transport=sse: got %+v", ev)
	}
	ws := testserver.DialWS(t, ep+resume+"&transport=ws", nil)
	if f := ws.NextOf("message"); f.ID != id {
		t.Errorf("?transport=ws: got %s", f.Raw)
	}

	for _, tc := range []struct {
		name, query string
		header      http.Header
		reason      string
	}{
		{"unknown transport", resume + "&transport=carrier-pigeon", nil, "unknown transport"},
		{"ws without a handshake", resume + "&transport=ws", nil, "not a WebSocket handshake"},
		{"upgrade header alone", resume, http.Header{"Upgrade": {"websocket"}}, "not a WebSocket handshake"},
		{"poll without topic", "", nil, "no topic"},
		{"ws last_id without topic", "?last_id=x", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}, "last_id without topic"},
	} {
		code, body, _ := testserver.Request(t, "GET", ep+tc.query, "", "", tc.header)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.reason) {
			t.Errorf("%s: %d %q, want 400 with %q", tc.name, code, body, tc.reason)
		}
	}
}

// Bad poll_timeout and cors values fail at adapt time, naming the file
// and line.
func TestTransportSettingsErrors(t *testing.T) {
	for _, tc := range []struct{ setting, want string }{
		{"poll_timeout soon", `poll_timeout: time: invalid duration "soon"`},
		{"poll_timeout 100ms", "poll_timeout 100ms out of range 1s..10m0s"},
		{"poll_timeout 1h", "out of range"},
		{"poll_timeout", "wrong argument count"},
		{"cors", "wrong argument count"},
		{"cors app.example.com", "want scheme://host[:port]"},
		{"cors https://app.example.com/path", "no user, path, query or fragment"},
		{"cors https://*.example.com", "patterns are not supported"},
	} {
		// The setting is on line 12, after the test's global options.
		_, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\t" + tc.setting + "\n\t}\n}\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:12") {
			t.Errorf("%q: error %v, want %q at Caddyfile:12", tc.setting, err, tc.want)
		}
	}
}
