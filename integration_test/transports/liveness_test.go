package transports_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A WebSocket client that stops reading while large messages flow falls
// behind its queue: the server closes it with 1013 (try again later) and
// the reason, after the messages it had already written, in order. A fast
// subscriber on the same topic gets every message meanwhile.
func TestSlowWebSocketConsumerIsClosed(t *testing.T) {
	_, ep := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		queue 2
		max_message_size 1MiB
		heartbeat 30s
		presence
	}
}
`)
	// The slow subscription's end is announced: publishing stops there, so
	// the slow client reads well within the write timeout (10 s) after its
	// socket filled, however slowly a loaded machine publishes.
	ended := testserver.Subscribe(t, nil, ep+"?topic=$pubsub/unsubscribe", nil)
	// 40 x 256 KiB is more than the loopback socket buffers of an unread
	// connection hold (the server's send buffer grows to 4 MiB, the
	// client's receive buffer stays near 128 KiB), so the slow client's
	// writer stalls and its queue of 2 overflows.
	slow := testserver.DialWS(t, ep+query("", "big"), &testserver.WSOptions{Paused: true})
	fast := testserver.DialWS(t, ep+query("", "big"), nil)
	payload := strings.Repeat("x", 256<<10)
	var ids []string
publishing:
	for i := range 40 {
		id := publish(t, ep, "big", fmt.Sprint(i, payload))
		ids = append(ids, id)
		// In step with the fast subscriber, so only the slow one lags.
		if f := fast.NextOf("message"); f.ID != id {
			t.Fatalf("fast subscriber got %s, want %s", f.ID, id)
		}
		select {
		case <-ended.Events():
			break publishing
		default:
		}
	}

	slow.StartReading()
	frames, err := slow.ExpectClose()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater || !strings.Contains(ce.Text, "slow consumer") {
		t.Fatalf("slow consumer ended with %v, want close 1013 with the reason", err)
	}
	if len(frames) == 0 || len(frames) >= len(ids) {
		t.Fatalf("slow consumer got %d of %d messages before the close", len(frames), len(ids))
	}
	for i, f := range frames {
		if f.Type != "message" || f.ID != ids[i] {
			t.Fatalf("slow consumer frame %d: %s %s, want message %s", i, f.Type, f.ID, ids[i])
		}
	}
	t.Logf("slow consumer got %d of %d messages of 256 KiB, then close %d %q", len(frames), len(ids), ce.Code, ce.Text)
}

// The server pings every heartbeat. A client that answers (every client
// library does while it reads) stays connected; one that stops answering
// is dropped after two heartbeats without a pong.
func TestWebSocketHeartbeat(t *testing.T) {
	_, ep := start(t, site) // heartbeat 1s

	alive := testserver.DialWS(t, ep+query("", "t"), nil)
	dead := testserver.DialWS(t, ep+query("", "t"), &testserver.WSOptions{Paused: true})
	dead.IgnorePings()
	dead.StartReading()

	frames, err := dead.ExpectClose()
	var ce *websocket.CloseError
	if len(frames) != 0 || (errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure) {
		t.Fatalf("silent client: frames %q, end %v; want dropped", received(frames), err)
	}
	if dead.Pings() < 2 {
		t.Fatalf("silent client dropped after %d pings, want at least 2 heartbeats", dead.Pings())
	}
	// Meanwhile the answering client saw as many pings and still works.
	testserver.Eventually(t, "pings to the live client", func() bool { return alive.Pings() >= 3 })
	id := publish(t, ep, "t", "still here")
	if f := alive.NextOf("message"); f.ID != id {
		t.Fatalf("live client got %s, want %s", f.Raw, id)
	}
}

// When the hub ends (here: Caddy stops), a WebSocket subscriber gets what
// was queued and a 1001 close with the reason; a reload before that leaves
// it connected and delivering.
func TestWebSocketAcrossReloadAndStop(t *testing.T) {
	s, ep := start(t, site)
	c := testserver.DialWS(t, ep+query("", "t"), nil)

	s.Load(strings.Replace(site, "poll_timeout 1s", "poll_timeout 2s", 1))
	ack, before := c.Request(map[string]any{"type": "publish", "ref": 1, "topic": "t", "data": "after reload"})
	if len(before) == 0 {
		before = append(before, c.NextOf("message"))
	}
	if ack.Type != "ack" || before[0].ID != ack.ID {
		t.Fatalf("after reload: %q, %s", received(before), ack.Raw)
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := c.ExpectClose()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("on stop: %v, want close 1001", err)
	}
}
