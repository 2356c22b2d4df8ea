package limits_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// start runs Caddy with one pubsub endpoint at /events whose block holds
// settings, and returns its URL.
func start(t *testing.T, settings string) string {
	t.Helper()
	return startWith(t, "", settings)
}

// startWith is start with extra global options.
func startWith(t *testing.T, globals, settings string) string {
	t.Helper()
	s := testserver.StartWith(t, globals, site(settings))
	return s.Base + "/events"
}

func site(settings string) string {
	return fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		poll_timeout 1s
		history 1000 1h
		%s
	}
}
`, settings)
}

// query builds "?topic=..&topic=.." for endpoint URLs.
func query(topics ...string) string {
	return "?" + url.Values{"topic": topics}.Encode()
}

// expectRefused subscribes to u with SSE, long-poll and a WebSocket
// handshake, each with header, and checks that every one is answered with
// status and exactly reason.
func expectRefused(t *testing.T, u string, header http.Header, status int, reason string) {
	t.Helper()
	sse := header.Clone()
	if sse == nil {
		sse = http.Header{}
	}
	sse.Set("Accept", "text/event-stream")
	got, body, _ := testserver.Request(t, http.MethodGet, u, "", "", sse)
	check(t, "SSE", got, body, status, reason)
	got, body, _ = testserver.Request(t, http.MethodGet, u+"&transport=poll", "", "", header)
	check(t, "long-poll", got, body, status, reason)
	got, body = testserver.DialWSStatus(t, u, header)
	check(t, "WebSocket handshake", got, body, status, reason)
}

func check(t *testing.T, what string, got int, body string, status int, reason string) {
	t.Helper()
	if got != status || body != reason+"\n" {
		t.Errorf("%s: got %d %q, want %d %q", what, got, body, status, reason)
	}
}

// admitted reports whether a subscriber from header would be let in now:
// a HEAD long-poll answers at once, holding its slot only meanwhile.
func admitted(t *testing.T, u string, header http.Header) bool {
	t.Helper()
	got, _, _ := testserver.Request(t, http.MethodHead, u+"&transport=poll", "", "", header)
	return got == http.StatusOK
}

// publishJSON posts body as JSON and returns the status and answer.
func publishJSON(t *testing.T, ep, body string) (int, string) {
	t.Helper()
	got, answer, _ := testserver.Request(t, http.MethodPost, ep, "application/json", body, nil)
	return got, answer
}

// batch returns a JSON array of n messages to topic, data "0".."n-1".
func batch(topic string, n int) string {
	msgs := make([]map[string]string, n)
	for i := range msgs {
		msgs[i] = map[string]string{"topic": topic, "data": fmt.Sprint(i)}
	}
	b, _ := json.Marshal(msgs)
	return string(b)
}

// publishBatch publishes n messages to topic and returns their IDs.
func publishBatch(t *testing.T, ep, topic string, n int) []string {
	t.Helper()
	got, answer := publishJSON(t, ep, batch(topic, n))
	var out struct{ IDs []string }
	if err := json.Unmarshal([]byte(answer), &out); got != http.StatusOK || err != nil || len(out.IDs) != n {
		t.Fatalf("publish %d messages: %d %s", n, got, answer)
	}
	return out.IDs
}

// forwardedFor is a header a trusted proxy would add for client.
func forwardedFor(client string) http.Header {
	return http.Header{"X-Forwarded-For": {client}}
}

// levels returns a topic of n levels "a/a/…".
func levels(n int) string {
	return strings.TrimSuffix(strings.Repeat("a/", n), "/")
}
