package transports_test

import (
	"fmt"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// History longer than one replay page reaches every transport whole and in
// order: the pages join up with nothing lost or repeated, then live
// messages follow. A WebSocket that adds a topic gets that topic's history
// only.
func TestResumeAcrossReplayPages(t *testing.T) {
	const n = 300 // more than two pages of hub.ReplayPage
	// A hub per case, with the same history.
	setup := func(t *testing.T) string {
		_, ep := start(t, site)
		testserver.Fill(t, ep, "t", n, 16)
		testserver.Fill(t, ep, "u", n, 16)
		return ep
	}
	data := func(i int) string { return fmt.Sprintf("%08d%s", i, "xxxxxxxx") }
	check := func(t *testing.T, what string, got []string) {
		t.Helper()
		if len(got) != n {
			t.Fatalf("%s: %d messages, want %d", what, len(got), n)
		}
		for i, d := range got {
			if d != data(i) {
				t.Fatalf("%s: message %d is %.12q, want %.12q", what, i, d, data(i))
			}
		}
	}
	wsData := func(t *testing.T, frames []testserver.WSFrame) []string {
		var out []string
		for _, f := range frames {
			if f.Type != "message" {
				t.Fatalf("frame %s among the replayed messages", f.Raw)
			}
			out = append(out, f.Data)
		}
		return out
	}

	t.Run("sse", func(t *testing.T) {
		ep := setup(t)
		s := testserver.Subscribe(t, nil, ep+query("earliest", "t"), nil)
		var got []string
		for range n {
			got = append(got, s.Next().Data)
		}
		check(t, "SSE from earliest", got)
		publish(t, ep, "t", "live")
		if ev := s.Next(); ev.Data != "live" {
			t.Fatalf("after the history: %+v, want the live message", ev)
		}
	})
	t.Run("websocket", func(t *testing.T) {
		ep := setup(t)
		c := testserver.DialWS(t, ep+query("earliest", "t"), nil)
		publish(t, ep, "t", "sentinel")
		check(t, "WebSocket from earliest", wsData(t, untilSentinel(t, c, "sentinel")))
	})
	t.Run("websocket subscribe frame", func(t *testing.T) {
		ep := setup(t)
		c := testserver.DialWS(t, ep, nil)
		ack, before := c.Request(map[string]any{"type": "subscribe", "topics": []string{"t"}, "last_id": "earliest", "ref": 1})
		if ack.Type != "ack" {
			t.Fatalf("subscribe: %s", ack.Raw)
		}
		check(t, "subscribe frame from earliest", wsData(t, before))
		// Adding u with last_id replays u's history, not t's again.
		ack, before = c.Request(map[string]any{"type": "subscribe", "topics": []string{"u"}, "last_id": "earliest", "ref": 2})
		if ack.Type != "ack" {
			t.Fatalf("subscribe u: %s", ack.Raw)
		}
		check(t, "added topic from earliest", wsData(t, before))
	})
	t.Run("long-poll", func(t *testing.T) {
		ep := setup(t)
		var got []string
		for cursor := "earliest"; len(got) < n; {
			a := testserver.Poll(t, ep, cursor, "t")
			if len(a.Messages) == 0 || a.Gap {
				t.Fatalf("poll from %s: %d messages, gap %v", cursor, len(a.Messages), a.Gap)
			}
			for _, m := range a.Messages {
				got = append(got, m.Data)
			}
			cursor = a.LastID
		}
		check(t, "long-poll from earliest", got)
	})
}
