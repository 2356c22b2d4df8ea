package hooks_test

import (
	"net"
	"slices"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A topic is occupied when its first subscriber comes and vacated when
// its last one leaves, once each, whatever the transport; each
// subscription's topics are announced when they begin and end.
func TestOccupiedVacatedFirstInLastOut(t *testing.T) {
	b := startBackend(t, allowAll)
	ep := start(t, site(b.URL, "on subscribed unsubscribed occupied vacated", ""))

	first := testserver.Subscribe(t, nil, ep+"?topic=room/1", nil)
	if c := b.next("occupied"); c.Topic != "room/1" {
		t.Fatalf("occupied: %+v", c)
	}
	sub := b.next("subscribed")
	if !slices.Equal(sub.Topics, []string{"room/1"}) || sub.Subscription == "" || sub.Caller.Transport != "sse" {
		t.Errorf("subscribed: %+v", sub)
	}
	ws := testserver.DialWS(t, ep, nil)
	ws.Send(map[string]any{"type": "subscribe", "topics": []string{"room/1", "room/2"}, "ref": 1})
	ws.NextOf("ack")
	if c := b.next("occupied"); c.Topic != "room/2" {
		t.Fatalf("occupied: %+v", c)
	}
	if c := b.next("subscribed"); !slices.Equal(c.Topics, []string{"room/1", "room/2"}) || c.Caller.Transport != "ws" {
		t.Errorf("subscribed: %+v", c)
	}

	first.Close()
	if c := b.next("unsubscribed"); c.Subscription != sub.Subscription {
		t.Errorf("unsubscribed %+v, want subscription %s", c, sub.Subscription)
	}
	// room/1 still has the WebSocket.
	ws.Send(map[string]any{"type": "unsubscribe", "topics": []string{"room/1"}, "ref": 2})
	ws.NextOf("ack")
	if c := b.next("vacated"); c.Topic != "room/1" {
		t.Fatalf("vacated: %+v", c)
	}
	if c := b.next("unsubscribed"); !slices.Equal(c.Topics, []string{"room/1"}) {
		t.Errorf("unsubscribed: %+v", c)
	}
	ws.Conn.Close()
	if c := b.next("vacated"); c.Topic != "room/2" {
		t.Fatalf("vacated: %+v", c)
	}
	b.next("unsubscribed")

	// Long-polls are not counted: each answer is a subscription of its
	// own. Events go out in order, so the next one is the SSE's.
	testserver.Poll(t, ep, "", "room/3")
	testserver.Subscribe(t, nil, ep+"?topic=room/4", nil)
	if c := b.next("occupied"); c.Topic != "room/4" {
		t.Fatalf("occupied %+v, want room/4 (a long-poll is not counted)", c)
	}
}

// A client that vanishes without closing (its connection reset) vacates
// its topics once the server notices it gone.
func TestVanishedClientVacates(t *testing.T) {
	b := startBackend(t, allowAll)
	ep := start(t, site(b.URL, "on occupied vacated", ""))

	for _, transport := range []string{"sse", "ws"} {
		t.Run(transport, func(t *testing.T) {
			topic := "gone/" + transport
			if transport == "sse" {
				testserver.Vanish(testserver.RawSSE(t, ep, "topic="+topic))
			} else {
				ws := testserver.DialWS(t, ep+"?topic="+topic, nil)
				testserver.Vanish(ws.Conn.NetConn().(*net.TCPConn))
			}
			if c := b.next("occupied"); c.Topic != topic {
				t.Fatalf("occupied: %+v", c)
			}
			if c := b.next("vacated"); c.Topic != topic {
				t.Fatalf("vacated: %+v", c)
			}
		})
	}
}
