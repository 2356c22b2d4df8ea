package handlers

import (
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// The SSE encoders never let an ID or event name start a line of its own:
// a message whose ID (or, in plain SSE, event name) holds CR or LF is not
// sent at all, whatever wrote it; a broker record is the usual suspect.
// With ?format=json the event name is inside the JSON, escaped.
func TestEncodeSSERefusesLineBreaksInFields(t *testing.T) {
	for _, tc := range []struct {
		name           string
		m              hub.Message
		sent, sentJSON bool
	}{
		{"plain", hub.Message{ID: "e-1", Topic: "t", Event: "tick", Data: "a\nb\r\nc"}, true, true},
		{"LF in event", hub.Message{ID: "e-1", Topic: "t", Event: "x\nevent: admin", Data: "d"}, false, true},
		{"CR in event", hub.Message{ID: "e-1", Topic: "t", Event: "x\rdata: forged", Data: "d"}, false, true},
		{"CRLF in id", hub.Message{ID: "e-1\r\nevent: admin", Topic: "t", Data: "d"}, false, false},
		{"LF in id", hub.Message{ID: "e-1\nretry: 1", Topic: "t", Data: "d"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			m.Time = time.Unix(1700000000, 0)
			checkSSEFrame(t, "sse", encodeSSE(&m), tc.sent)
			checkSSEFrame(t, "sse json", encodeSSEJSON(&m), tc.sentJSON)
		})
	}
}

// checkSSEFrame checks that frame is empty, or, when sent, one event whose lines
// are all id, event or data fields.
func checkSSEFrame(t *testing.T, kind string, frame []byte, sent bool) {
	t.Helper()
	if !sent {
		if len(frame) != 0 {
			t.Fatalf("%s: encoded %q", kind, frame)
		}
		return
	}
	body, ok := strings.CutSuffix(string(frame), "\n\n")
	if !ok || strings.ContainsAny(body, "\r") || strings.Contains(body, "\n\n") {
		t.Fatalf("%s: %q is not one event", kind, frame)
	}
	for line := range strings.SplitSeq(body, "\n") {
		if !strings.HasPrefix(line, "id: ") && !strings.HasPrefix(line, "event: ") && !strings.HasPrefix(line, "data: ") {
			t.Fatalf("%s: line %q in %q", kind, line, frame)
		}
	}
}
