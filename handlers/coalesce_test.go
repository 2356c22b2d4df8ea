package handlers

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// queuedBurst subscribes to "t" and publishes n messages that wait in the
// subscription's queue.
func queuedBurst(t *testing.T, n int) *hub.Subscriber {
	t.Helper()
	h := hub.New(hub.NewMemoryBroker(hub.Retention{Count: 100}), hub.Options{Queue: 100})
	t.Cleanup(func() { _ = h.Close() })
	sub, _, _, err := h.Subscribe(context.Background(), []string{"t"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := h.Publish(context.Background(), hub.Message{Topic: "t", Data: "m" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if q := sub.Queued(); q != n {
		t.Fatalf("%d messages queued, want %d", q, n)
	}
	return sub
}

// A parked SSE stream sends what is queued for it in one write: one Send,
// one HTTP chunk, every message, in order.
func TestParkedSSECoalescesQueuedMessages(t *testing.T) {
	const n = 20
	sub := queuedBurst(t, n)
	p := &parkedSSE{
		ep:        &Endpoint{Logger: zap.NewNop()},
		sub:       sub,
		frame:     func(m *hub.Message) []byte { return m.Frame(frameSSE, encodeSSE) },
		heartbeat: time.Hour,
	}
	out, _, end := p.Send(nil, time.Now())
	if end {
		t.Fatal("Send ended the stream")
	}
	size, body, ok := bytes.Cut(out, []byte("\r\n"))
	if !ok || !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Fatalf("Send wrote %q, want one chunk", out)
	}
	body = body[:len(body)-2]
	if want := strconv.FormatInt(int64(len(body)), 16); string(size) != want {
		t.Fatalf("chunk size %s, want %s: more than one chunk in %q", size, want, out)
	}
	checkBurst(t, body, n, "data: m")
	if q := sub.Queued(); q != 0 {
		t.Fatalf("%d messages left queued after one Send", q)
	}
}

// A parked WebSocket's worker takes every queued message into one buffer
// (drainWS), which its Send writes at once with the acks and control
// frames queued beside them.
func TestParkedWebSocketCoalescesQueuedMessages(t *testing.T) {
	const n = 20
	sub := queuedBurst(t, n)
	out := drainWS(nil, sub, false)
	frames := 0
	for rest := out; len(rest) > 0; frames++ {
		if rest[0] != 0x81 || rest[1] >= 126 {
			t.Fatalf("frame %d: header % x, want a short final text frame", frames, rest[:2])
		}
		rest = rest[2+int(rest[1]):]
	}
	if frames != n {
		t.Fatalf("%d frames in one buffer, want %d", frames, n)
	}
	checkBurst(t, out, n, `"data":"m`)
}

// checkBurst checks that out holds the burst's messages 0 to n-1, in
// order, each marked by prefix and its number.
func checkBurst(t *testing.T, out []byte, n int, prefix string) {
	t.Helper()
	at := 0
	for i := range n {
		j := bytes.Index(out[at:], []byte(prefix+strconv.Itoa(i)))
		if j < 0 {
			t.Fatalf("message %d missing or out of order in %q", i, out)
		}
		at += j + 1
	}
}
