package presence_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A presence query is authorised as subscribing to its topic would be: no
// token where jwt is required is 401, a topic the token may not read 403.
// Three tabs of one user are one entry with three connections, a WebSocket
// of another user a second entry; only the chosen claims appear; pages
// follow their cursor.
func TestPresenceList(t *testing.T) {
	t.Setenv(secretEnv, secret)
	ep := testserver.Start(t, site("")).Base + "/events"
	alice := token(t, "alice", "Alice", "chat/#")
	bob := token(t, "bob", "Bob", "chat/lobby")

	if code, body := query(t, ep, "chat/lobby", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d %s", code, body)
	}
	if code, body := query(t, ep, "secret/room", alice, ""); code != http.StatusForbidden {
		t.Fatalf("a topic the token may not read: %d %s", code, body)
	}
	if code, body := query(t, ep, "chat/other", bob, ""); code != http.StatusForbidden {
		t.Fatalf("a topic outside bob's grant: %d %s", code, body)
	}

	for range 3 {
		testserver.Subscribe(t, nil, ep+"?topic=chat/lobby", bearer(alice))
	}
	ws := testserver.DialWS(t, ep, &testserver.WSOptions{Header: bearer(bob)})
	if answer, _ := ws.Request(map[string]any{"type": "subscribe", "topics": []string{"chat/lobby"}, "ref": 1}); answer.Type != "ack" {
		t.Fatalf("subscribe frame: %s", answer.Raw)
	}
	// A long-poll lasts one answer: it is not counted.
	testserver.StartPoll(ep+"?access_token="+alice, "", "chat/lobby")

	eventually(t, ep, "chat/lobby", bob, `alice:3:{"name":"Alice"} bob:1:{"name":"Bob"} anonymous 0 total 4`)
	code, body := query(t, ep, "chat/lobby", alice, "")
	if code != http.StatusOK || strings.Contains(body, "email") || strings.Contains(body, "example.com") {
		t.Fatalf("a claim not chosen appears: %d %s", code, body)
	}

	first := list(t, ep, "chat/lobby", alice, "&limit=1")
	if len(first.Subscribers) != 1 || first.Subscribers[0].Sub != "alice" || first.Next != "alice" {
		t.Fatalf("first page: %+v", first)
	}
	second := list(t, ep, "chat/lobby", alice, "&limit=1&after="+first.Next)
	if len(second.Subscribers) != 1 || second.Subscribers[0].Sub != "bob" || second.Next != "" {
		t.Fatalf("second page: %+v", second)
	}
	if code, body := query(t, ep, "chat/lobby", alice, "&limit=0"); code != http.StatusBadRequest {
		t.Fatalf("limit=0: %d %s", code, body)
	}

	ws.Close()
	eventually(t, ep, "chat/lobby", alice, `alice:3:{"name":"Alice"} anonymous 0 total 3`)
}

// Without jwt, subscribers are anonymous: counted, never listed. Without
// presence the query is 404.
func TestPresenceAnonymous(t *testing.T) {
	ep := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		presence
	}
	pubsub /quiet* {
		hub quiet
	}
}
`).Base
	testserver.Subscribe(t, nil, ep+"/events?topic=room", nil)
	ws := testserver.DialWS(t, ep+"/events?topic=room", nil)
	eventually(t, ep+"/events", "room", "", "anonymous 2 total 2")
	ws.Close()
	eventually(t, ep+"/events", "room", "", "anonymous 1 total 1")
	if code, body := query(t, ep+"/quiet", "room", "", ""); code != http.StatusNotFound {
		t.Fatalf("presence off: %d %s", code, body)
	}
}

// Join and leave come with the identity and its chosen claims, on its
// first connection to a topic and its last; the subscribe and unsubscribe
// events of each connection carry the identity too. A client that
// vanishes (its connection reset) leaves once the server notices.
func TestJoinLeave(t *testing.T) {
	t.Setenv(secretEnv, secret)
	ep := testserver.Start(t, site("")).Base + "/events"
	watcher := testserver.Subscribe(t, nil, ep+"?topic=$pubsub/%23&format=json", bearer(token(t, "ops", "Ops", "$pubsub/#")))
	alice := token(t, "alice", "Alice", "chat/#")
	claims := `{"name":"Alice"}`

	one := testserver.Subscribe(t, nil, ep+"?topic=chat/lobby", bearer(alice))
	expect(t, watcher, "$pubsub/subscribe", "alice", "chat/lobby", claims)
	expect(t, watcher, "$pubsub/join", "alice", "chat/lobby", claims)
	two := testserver.Subscribe(t, nil, ep+"?topic=chat/lobby", bearer(alice))
	expect(t, watcher, "$pubsub/subscribe", "alice", "chat/lobby", claims)
	// No join for the second tab: the next event is the first tab's end.
	one.Close()
	expect(t, watcher, "$pubsub/unsubscribe", "alice", "chat/lobby", claims)
	two.Close()
	expect(t, watcher, "$pubsub/unsubscribe", "alice", "chat/lobby", claims)
	expect(t, watcher, "$pubsub/leave", "alice", "chat/lobby", claims)

	testserver.Vanish(testserver.RawSSE(t, ep, "topic=chat/lobby&access_token="+alice))
	expect(t, watcher, "$pubsub/subscribe", "alice", "chat/lobby", claims)
	expect(t, watcher, "$pubsub/join", "alice", "chat/lobby", claims)
	expect(t, watcher, "$pubsub/unsubscribe", "alice", "chat/lobby", claims)
	expect(t, watcher, "$pubsub/leave", "alice", "chat/lobby", claims)
	eventually(t, ep, "chat/lobby", alice, "anonymous 0 total 0")
}
