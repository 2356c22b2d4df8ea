package auth_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// The topics the tests publish, and which a chat/# + news/+ reader may
// receive. A wildcard subscription must never deliver the others, live or
// replayed, on any transport. ("$" topics are the server's: no client can
// publish them; TestPrivateTopics watches presence events for them.)
var (
	retained = []string{"chat/old", "secret/old", "news/old", "news/old/deep"}
	live     = []string{"secret/live", "chat/live", "news/live/deep", "news/live"}

	retainedAllowed = []string{"chat/old", "news/old"}
	liveAllowed     = []string{"chat/live", "news/live"}
)

// publishAll publishes one message per topic with the publish key.
func publishAll(t *testing.T, ep string, topics []string) {
	t.Helper()
	for _, topic := range topics {
		publish(t, ep, topic, topic)
	}
}

// A reader subscribing to "#" (partly covered by its grant) gets only what
// its token allows: over SSE, WebSocket and long-poll, from history and
// live. "$" topics need a grant naming them.
func TestWildcardSubscriptionNeverLeaks(t *testing.T) {
	ep := startHMAC(t, hmacSite("30s", ""))
	reader := chatReader(t)
	publishAll(t, ep, retained)

	sse := testserver.Subscribe(t, nil, ep+q("topic", "#", "format", "json", "last_id", "earliest"), bearer(reader))
	ws := testserver.DialWS(t, ep, &testserver.WSOptions{Header: bearer(reader)})
	wsReplay := wsSubscribe(t, ws, 1, "earliest", "#")
	pollAll := poll(t, ep+q("topic", "#", "last_id", "earliest"), cookie(reader))

	var sseReplay, wsTopics, pollTopics []string
	for range retainedAllowed {
		sseReplay = append(sseReplay, topicOf(t, sse.Next()))
	}
	for _, f := range wsReplay {
		wsTopics = append(wsTopics, f.Topic)
	}
	for _, m := range pollAll.Messages {
		pollTopics = append(pollTopics, m.Topic)
	}
	for name, got := range map[string][]string{"SSE": sseReplay, "WebSocket": wsTopics, "long-poll": pollTopics} {
		if !slices.Equal(got, retainedAllowed) {
			t.Errorf("%s replay: %q, want %q", name, got, retainedAllowed)
		}
	}

	// Live: a long-poll waits from the cursor of the last answer.
	polled := pollAsync(ep+q("topic", "#", "last_id", pollAll.LastID), cookie(reader))
	publishAll(t, ep, live)
	publish(t, ep, "chat/end", "end")
	want := append(slices.Clone(liveAllowed), "chat/end")

	var sseLive, wsLive []string
	for range want {
		sseLive = append(sseLive, topicOf(t, sse.Next()))
		wsLive = append(wsLive, ws.NextOf("message").Topic)
	}
	if !slices.Equal(sseLive, want) || !slices.Equal(wsLive, want) {
		t.Fatalf("live: SSE %q, WebSocket %q, want %q", sseLive, wsLive, want)
	}
	// The poll answers with the first allowed message at least, never a
	// forbidden one.
	a := (<-polled).answer(t)
	if len(a.Messages) == 0 {
		t.Fatal("live poll got nothing")
	}
	for _, m := range a.Messages {
		if !slices.Contains(want, m.Topic) {
			t.Fatalf("live poll leaked %q", m.Topic)
		}
	}

	// A later subscribe with last_id replays only allowed topics too.
	ws2 := testserver.DialWS(t, ep, &testserver.WSOptions{Header: bearer(reader)})
	wsSubscribe(t, ws2, 1, "", "chat/#")
	var replayed []string
	for _, f := range wsSubscribe(t, ws2, 2, "earliest", "+/+") {
		replayed = append(replayed, f.Topic)
	}
	if want := []string{"news/old", "news/live"}; !slices.Equal(replayed, want) {
		t.Fatalf("second subscribe replayed %q, want %q", replayed, want)
	}
}

// A filter that overlaps no granted pattern is refused; "$" topics are
// reachable only with a grant that names them.
func TestPrivateTopics(t *testing.T) {
	ep := startHMAC(t, hmacSite("30s", "presence"))
	everything := hs(t, grants{Subscribe: []string{"#"}})
	for topic, token := range map[string]string{
		"secret/#":     chatReader(t),
		"+/+/+":        chatReader(t), // chat/# overlaps it: accepted, checked per message
		"$pubsub/#":    everything,
		"$pubsub/live": everything,
	} {
		code, body, _ := sseStatus(t, ep+q("topic", topic), bearer(token))
		if topic == "+/+/+" {
			if code != 200 {
				t.Fatalf("%s: %d %s", topic, code, body)
			}
			continue
		}
		expectDenied(t, topic, code, body, 403, "does not allow subscribing")
	}

	// The "#" subscription is announced on $pubsub/subscribe: its watcher
	// gets the event, the "#" subscriber itself never does.
	watcher := hs(t, grants{Subscribe: []string{"$pubsub/#"}})
	s := testserver.Subscribe(t, nil, ep+q("topic", "$pubsub/#", "format", "json"), bearer(watcher))
	all := testserver.Subscribe(t, nil, ep+q("topic", "#", "format", "json"), bearer(everything))
	// The requests above begin and end on their own time, and their
	// presence events (their tokens have subjects: joins and leaves too)
	// may still be on their way: skip them, up to the "#" subscriber's.
	for {
		ev := s.Next()
		topic := topicOf(t, ev)
		var env testserver.Envelope
		var presence struct{ Topics []string }
		if err := json.Unmarshal([]byte(ev.Data), &env); err != nil {
			t.Fatalf("event data %q: %v", ev.Data, err)
		}
		if err := json.Unmarshal([]byte(env.Data), &presence); err != nil {
			t.Fatalf("presence data %q: %v", env.Data, err)
		}
		if !slices.Contains([]string{"$pubsub/subscribe", "$pubsub/unsubscribe", "$pubsub/join", "$pubsub/leave"}, topic) {
			t.Fatalf("watcher got %q, want presence events only", topic)
		}
		if topic == "$pubsub/subscribe" && slices.Equal(presence.Topics, []string{"#"}) {
			break
		}
	}
	publish(t, ep, "chat/a", "y")
	if got := topicOf(t, all.Next()); got != "chat/a" {
		t.Fatalf("# subscriber got %q, want chat/a (never $pubsub/subscribe)", got)
	}
}
