package publish_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Without publish_key only direct loopback clients publish; with it, the
// Bearer key is required and checked; foreign origins never publish.
func TestPublishAuthorization(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /open* {
		hub open
	}
	pubsub /keyed* {
		hub keyed
		publish_key s3cret-key
	}
}
`)
	form := "application/x-www-form-urlencoded"
	body := "topic=t&data=x"
	cases := []struct {
		name   string
		path   string
		header http.Header
		status int
		reason string
	}{
		{"loopback without key", "/open", nil, 200, ""},
		{"forwarded for someone else", "/open", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, 403, "loopback only"},
		{"real-ip header", "/open", http.Header{"X-Real-Ip": {"203.0.113.9"}}, 403, "loopback only"},
		{"forwarded header", "/open", http.Header{"Forwarded": {"for=203.0.113.9"}}, 403, "loopback only"},
		{"cross-origin form post", "/open", http.Header{"Origin": {"https://evil.example"}}, 403, "cross-origin"},
		{"same origin", "/open", http.Header{"Origin": {s.Base}}, 200, ""},
		{"key missing", "/keyed", nil, 401, "publish key"},
		{"key wrong", "/keyed", http.Header{"Authorization": {"Bearer s3cret-kez"}}, 401, "publish key"},
		{"key not bearer", "/keyed", http.Header{"Authorization": {"Basic s3cret-key"}}, 401, "publish key"},
		{"key right", "/keyed", http.Header{"Authorization": {"Bearer s3cret-key"}}, 200, ""},
		{"key right but cross-origin", "/keyed", http.Header{"Authorization": {"Bearer s3cret-key"}, "Origin": {"http://evil.example"}}, 403, "cross-origin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, got, hdr := testserver.Request(t, "POST", s.Base+c.path, form, body, c.header)
			if code != c.status || !strings.Contains(got, c.reason) {
				t.Errorf("got %d %q, want %d with %q", code, got, c.status, c.reason)
			}
			if code == 401 && hdr.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if code != 200 && strings.Count(strings.TrimSpace(got), "\n") != 0 {
				t.Errorf("reason is not one line: %q", got)
			}
		})
	}
}

// Bad input gets the documented status and a one-line reason.
func TestPublishAndSubscribeErrors(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		max_message_size 1KiB
	}
	pubsub /roomy* {
		hub roomy
	}
}
`)
	ep := s.Base + "/events"
	form, js := "application/x-www-form-urlencoded", "application/json"
	big := strings.Repeat("x", 2000)
	manyTopics := strings.Repeat("topic=a&", 33)
	batch := "[" + strings.TrimSuffix(strings.Repeat(`{"topic":"t","data":"x"},`, 101), ",") + "]"
	cases := []struct {
		name, method, url, ctype, body string
		header                         http.Header
		status                         int
		reason                         string
	}{
		{"too large form", "POST", ep, form, "topic=t&data=" + big, nil, 413, "max_message_size"},
		{"too large JSON", "POST", ep, js, `{"topic":"t","data":"` + big + `"}`, nil, 413, "max_message_size"},
		{"no topic", "POST", ep, form, "data=x", nil, 400, "no topic"},
		{"wildcard topic", "POST", ep, form, "topic=a/%2B&data=x", nil, 400, "wildcards"},
		{"hash topic", "POST", ep, js, `{"topic":"a/#","data":"x"}`, nil, 400, "wildcards"},
		{"bad JSON", "POST", ep, js, `{"topic":`, nil, 400, "invalid JSON"},
		{"unknown JSON field", "POST", ep, js, `{"topic":"t","dta":"x"}`, nil, 400, "unknown field"},
		{"trailing JSON", "POST", ep, js, `{"topic":"t"} {}`, nil, 400, "trailing"},
		{"empty batch", "POST", ep, js, `[]`, nil, 400, "empty"},
		{"batch too long", "POST", s.Base + "/roomy", js, batch, nil, 400, "longer than 100"},
		{"bad message in batch", "POST", ep, js, `[{"topic":"t"},{"topic":""}]`, nil, 400, "message 1"},
		{"not UTF-8", "POST", ep, form, "topic=t&data=%ff%fe", nil, 400, "UTF-8"},
		{"reserved event", "POST", ep, form, "topic=t&data=x&event=gap", nil, 400, "reserved"},
		{"event with newline", "POST", ep, form, "topic=t&data=x&event=a%0Ab", nil, 400, "control"},
		{"two topics in a form", "POST", ep, form, "topic=a&topic=b&data=x", nil, 400, "one message"},
		{"text/plain", "POST", ep, "text/plain", "hello", nil, 415, "Content-Type"},
		{"no content type", "POST", ep, "", "hello", nil, 415, "Content-Type"},
		{"PUT", "PUT", ep, form, "topic=t", nil, 405, "method"},
		{"DELETE", "DELETE", ep, "", "", nil, 405, "method"},
		{"subscribe bad filter", "GET", ep + "?transport=sse&topic=a/b%23", "", "", nil, 400, "whole level"},
		{"subscribe no topic", "GET", ep + "?transport=sse", "", "", nil, 400, "no topic"},
		{"subscribe too many topics", "GET", ep + "?transport=sse&" + manyTopics, "", "", nil, 400, "too many"},
		{"subscribe long ID", "GET", ep + "?transport=sse&topic=t", "", "", http.Header{"Last-Event-Id": {strings.Repeat("1", 300)}}, 400, "too long"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, got, hdr := testserver.Request(t, c.method, c.url, c.ctype, c.body, c.header)
			if code != c.status || !strings.Contains(got, c.reason) {
				t.Errorf("got %d %q, want %d with %q", code, got, c.status, c.reason)
			}
			if strings.Count(strings.TrimSpace(got), "\n") != 0 {
				t.Errorf("reason is not one line: %q", got)
			}
			if code == 405 && hdr.Get("Allow") != "GET, HEAD, POST, OPTIONS" {
				t.Errorf("405 with Allow %q", hdr.Get("Allow"))
			}
		})
	}
	// A multipart form publishes too.
	sub := testserver.Subscribe(t, nil, ep+"?topic=mp", nil)
	code, got, _ := testserver.Request(t, "POST", ep, "multipart/form-data; boundary=XX",
		"--XX\r\nContent-Disposition: form-data; name=\"topic\"\r\n\r\nmp\r\n--XX\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\nvia multipart\r\n--XX--\r\n", nil)
	if code != 200 {
		t.Fatalf("multipart: %d %s", code, got)
	}
	if ev := sub.Next(); ev.Data != "via multipart" {
		t.Errorf("multipart delivered %+v", ev)
	}
}

// The configured topic takes a level from the request path; a placeholder
// must give exactly one literal level, so a path cannot widen the topic.
func TestDefaultTopicFromPath(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /rooms/* {
		topic chat/{http.request.uri.path.1}
	}
}
`)
	lobby := testserver.Subscribe(t, nil, s.Base+"/rooms/lobby", nil)
	all := testserver.Subscribe(t, nil, s.Base+"/rooms/x?topic=chat/%23", nil)
	id := testserver.Publish(t, s.Base+"/rooms/lobby", url.Values{"data": {"hi"}})
	testserver.Publish(t, s.Base+"/rooms/kitchen", url.Values{"data": {"elsewhere"}})
	if ev := lobby.Next(); ev.ID != id || ev.Data != "hi" {
		t.Errorf("lobby got %+v", ev)
	}
	if ev := all.Next(); ev.ID != id {
		t.Errorf("wildcard got %+v", ev)
	}
	if ev := all.Next(); ev.Data != "elsewhere" {
		t.Errorf("wildcard got %+v", ev)
	}
	for _, path := range []string{"/rooms/%23", "/rooms/%2B", "/rooms/$sys", "/rooms/"} {
		code, body, _ := testserver.Request(t, "POST", s.Base+path, "application/x-www-form-urlencoded", "data=x", nil)
		if code != 400 {
			t.Errorf("POST %s: got %d %q, want 400", path, code, body)
		}
	}
}

// Anonymous publishing (no publish_key, no jwt) needs a request straight
// from this machine: a loopback peer, a Host that names this machine, and
// no sign of a proxy, tunnel or CDN forwarding someone else's request
// (which would otherwise make every internet client loopback).
func TestAnonymousPublishing(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT}, http://localhost:{PORT}, http://[::1]:{PORT}, http://push.example.com:{PORT} {
	pubsub /open* {
		hub open
	}
}
`)
	cases := []struct {
		name, path, host string
		header           http.Header
		status           int
		reason           string
	}{
		{"loopback address", "/open", "127.0.0.1", nil, 200, ""},
		{"localhost", "/open", "localhost", nil, 200, ""},
		{"IPv6 loopback", "/open", "[::1]", nil, 200, ""},
		{"public Host through a same-host proxy", "/open", "push.example.com", nil, 403, "Host is not a loopback name"},
		{"Via", "/open", "127.0.0.1", http.Header{"Via": {"1.1 tunnel"}}, 403, "forwarded (Via)"},
		{"X-Forwarded-Host", "/open", "127.0.0.1", http.Header{"X-Forwarded-Host": {"push.example.com"}}, 403, "forwarded (X-Forwarded-Host)"},
		{"X-Forwarded-Proto", "/open", "127.0.0.1", http.Header{"X-Forwarded-Proto": {"https"}}, 403, "forwarded"},
		{"CF-Connecting-IP", "/open", "127.0.0.1", http.Header{"Cf-Connecting-Ip": {"203.0.113.9"}}, 403, "forwarded"},
		{"True-Client-IP", "/open", "127.0.0.1", http.Header{"True-Client-Ip": {"203.0.113.9"}}, 403, "forwarded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", s.Base+c.path, strings.NewReader("topic=t&data=x"))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = fmt.Sprintf("%s:%d", c.host, s.Port)
			req.Header = c.header.Clone()
			if req.Header == nil {
				req.Header = http.Header{}
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || !strings.Contains(string(body), c.reason) {
				t.Fatalf("got %d %q, want %d with %q", resp.StatusCode, body, c.status, c.reason)
			}
			if c.status == 403 && !strings.Contains(string(body), "publish_key") {
				t.Errorf("the reason %q does not say which sub-directive to set", body)
			}
		})
	}
}

// anonymous_publish off refuses publishing without a credential, from
// loopback too, and with it watching the "$" topics.
func TestAnonymousPublishingOff(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		anonymous_publish off
		presence
	}
}
`)
	code, body, _ := testserver.Request(t, "POST", s.Base+"/events", "application/x-www-form-urlencoded", "topic=t&data=x", nil)
	if code != 403 || !strings.Contains(body, "anonymous publishing is off: configure publish_key or jwt") {
		t.Errorf("publish from loopback: %d %q, want 403", code, body)
	}
	code, body, _ = testserver.Request(t, "GET", s.Base+"/events?topic=$pubsub/%23&last_id=earliest", "", "", nil)
	if code != 403 {
		t.Errorf("watching $pubsub/# from loopback: %d %q, want 403", code, body)
	}
	ws := testserver.DialWS(t, s.Base+"/events", nil)
	if f, _ := ws.Request(map[string]any{"type": "publish", "topic": "t", "data": "x", "ref": 1}); f.Type != "error" || !strings.Contains(f.Reason, "anonymous publishing is off") {
		t.Errorf("WebSocket publish from loopback: %+v", f)
	}
	if _, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\tanonymous_publish sometimes\n\t}\n}\n"); err == nil || !strings.Contains(err.Error(), "use loopback or off") {
		t.Errorf("anonymous_publish sometimes: %v", err)
	}
}

// Only the server writes the hub's own "$" topics (presence events): not
// even the holder of the publish key may forge them, over HTTP or a
// WebSocket.
func TestReservedTopicsAreTheServers(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		publish_key s3cret-key
		presence
		poll_timeout 1s
	}
}
`)
	key := http.Header{"Authorization": {"Bearer s3cret-key"}}
	for _, topic := range []string{"$pubsub/subscribe", "$pubsub/unsubscribe", "$anything"} {
		code, body, _ := testserver.Request(t, "POST", s.Base+"/events", "application/x-www-form-urlencoded", url.Values{"topic": {topic}, "data": {"forged"}}.Encode(), key)
		if code != 403 || !strings.Contains(body, "written by the server only") {
			t.Errorf("POST to %s with the key: %d %q, want 403", topic, code, body)
		}
	}
	code, body, _ := testserver.Request(t, "POST", s.Base+"/events", "application/json", `[{"topic":"ok","data":"x"},{"topic":"$pubsub/subscribe","data":"forged"}]`, key)
	if code != 403 {
		t.Errorf("batch with a $ topic: %d %q, want 403", code, body)
	}
	ws := testserver.DialWS(t, s.Base+"/events", &testserver.WSOptions{Header: key})
	if f, _ := ws.Request(map[string]any{"type": "publish", "topic": "$pubsub/subscribe", "data": "forged", "ref": 1}); f.Type != "error" || !strings.Contains(f.Reason, "written by the server only") {
		t.Errorf("WebSocket publish to $pubsub/subscribe: %+v", f)
	}
	code, body, _ = testserver.Request(t, "GET", s.Base+"/events?topic=$pubsub/%23&last_id=earliest", "", "", key)
	if code != 200 || !strings.Contains(body, `"messages":[]`) {
		t.Errorf("history of $pubsub/#: %d %q, want no message", code, body)
	}
}

// The configured topic is expanded only when a request names none: a
// placeholder that does not fit this request (here an empty path level)
// does not fail a request that brings its own topic.
func TestDefaultTopicOnlyWhenUsed(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		topic chat/{http.request.uri.path.1}
	}
}
`)
	sse := testserver.Subscribe(t, nil, s.Base+"/events?topic=news", nil)
	code, body, _ := testserver.Request(t, "POST", s.Base+"/events", "application/x-www-form-urlencoded", "topic=news&data=own", nil)
	if code != 200 {
		t.Fatalf("publish naming its own topic: %d %q", code, body)
	}
	if ev := sse.Next(); ev.Data != "own" {
		t.Fatalf("subscriber naming its own topic got %+v", ev)
	}
	code, body, _ = testserver.Request(t, "POST", s.Base+"/events", "application/json", `{"topic":"news","data":"json"}`, nil)
	if code != 200 {
		t.Fatalf("JSON publish naming its own topic: %d %q", code, body)
	}
	ws := testserver.DialWS(t, s.Base+"/events?topic=news", nil)
	if f, _ := ws.Request(map[string]any{"type": "publish", "topic": "news", "data": "ws", "ref": 1}); f.Type != "ack" {
		t.Fatalf("WebSocket publish naming its own topic: %+v", f)
	}
	code, body, _ = testserver.Request(t, "POST", s.Base+"/events", "application/x-www-form-urlencoded", "data=no-topic", nil)
	if code != 400 || !strings.Contains(body, "not a single literal level") {
		t.Fatalf("publish needing the default topic: %d %q, want 400", code, body)
	}
}

// A publish with an Idempotency-Key that repeats an accepted one gets its
// ID again and stores nothing; a key that is not visible ASCII gets 400.
func TestIdempotencyKey(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events*
}
`)
	ep := s.Base + "/events"
	post := func(key, data string) (int, string) {
		code, body, _ := testserver.Request(t, "POST", ep, "application/x-www-form-urlencoded", "topic=orders&data="+data,
			http.Header{"Idempotency-Key": {key}})
		return code, body
	}
	code, first := post("7c0e1a52-order-17", "paid")
	if code != 200 {
		t.Fatalf("first: %d %s", code, first)
	}
	if code, again := post("7c0e1a52-order-17", "paid"); code != 200 || again != first {
		t.Fatalf("retry: %d %s, want 200 %s", code, again, first)
	}
	if code, other := post("7c0e1a52-order-18", "shipped"); code != 200 || other == first {
		t.Fatalf("another key: %d %s", code, other)
	}
	if code, body := post("has space", "x"); code != 400 || !strings.Contains(body, "invalid idempotency key") {
		t.Fatalf("bad key: %d %q, want 400", code, body)
	}
	// A WebSocket publish frame takes the key too, and shares the HTTP
	// publishes' keys.
	ws := testserver.DialWS(t, ep+"?topic=orders", nil)
	for range 2 {
		f, _ := ws.Request(map[string]any{"type": "publish", "topic": "orders", "data": "refunded", "idempotency_key": "7c0e1a52-order-19", "ref": 1})
		if f.Type != "ack" {
			t.Fatalf("WebSocket publish with a key: %+v", f)
		}
	}
	if f, _ := ws.Request(map[string]any{"type": "publish", "topic": "orders", "data": "again", "idempotency_key": "7c0e1a52-order-17", "ref": 2}); f.Type != "ack" || !strings.Contains(first, f.ID) {
		t.Fatalf("WebSocket publish repeating an HTTP key: %+v, want the ID of %s", f, first)
	}
	code, body, _ := testserver.Request(t, "GET", ep+"?topic=orders&last_id=earliest", "", "", nil)
	if code != 200 || strings.Count(body, `"data":"paid"`) != 1 || strings.Count(body, `"data":"shipped"`) != 1 || strings.Count(body, `"data":"refunded"`) != 1 || strings.Contains(body, `"data":"again"`) {
		t.Fatalf("history: %d %s; want paid, shipped and refunded once each", code, body)
	}
}
