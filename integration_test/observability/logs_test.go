package observability_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// pubsubLogger reports whether a log line comes from caddy-pubsub (the app
// or the handler).
func pubsubLogger(l logLine) bool {
	return l.Logger == "pubsub" || strings.HasPrefix(l.Logger, "http.handlers.pubsub")
}

// loud counts caddy-pubsub's log lines at info and above.
func loud(lines []logLine) []logLine {
	var out []logLine
	for _, l := range lines {
		if pubsubLogger(l) && l.Level != "debug" {
			out = append(out, l)
		}
	}
	return out
}

// Caddy's JSON log, at DEBUG: the config start logs each hub once at info
// with its settings; fifty messages through every transport add no line at
// info or above.
func TestNoInfoLogLinePerMessage(t *testing.T) {
	s := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub chat
		queue 64
		heartbeat 30s
	}
}
`)
	ep := s.Base + "/events"
	sse := testserver.Subscribe(t, nil, ep+"?topic=room", nil)
	ws := testserver.DialWS(t, ep+"?topic=room", nil)

	before := loud(readLog(t, s.Log))
	var ready *logLine
	for i, l := range before {
		if l.Msg == "pubsub hub ready" {
			ready = &before[i]
		}
	}
	if ready == nil || ready.Level != "info" || ready.Fields["hub"] != "chat" || ready.Fields["broker"] != "memory" || ready.Fields["queue"] != 64.0 {
		t.Fatalf("hub ready line: %+v", ready)
	}

	const n = 50
	lastID := ""
	for i := range n {
		lastID = testserver.Publish(t, ep, url.Values{"topic": {"room"}, "data": {fmt.Sprint(i)}})
	}
	for range n {
		sse.Next()
		ws.NextOf("message")
	}
	if a := testserver.Poll(t, ep, "earliest", "room"); a.LastID != lastID {
		t.Fatalf("long-poll cursor %s, want %s", a.LastID, lastID)
	}

	if after := loud(readLog(t, s.Log)); len(after) != len(before) {
		t.Fatalf("%d messages added %d log lines at info or above: %+v", n, len(after)-len(before), after[len(before):])
	}
}
