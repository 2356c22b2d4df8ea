package presence_test

import (
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Two instances on one Redis answer the same list, the union of their
// subscribers; an identity joins on its first connection on either and
// leaves with its last on either, each told once; a killed instance's
// users leave once its liveness lapses, told by the survivor.
func TestPresenceAcrossInstances(t *testing.T) {
	redis := testserver.StartRedis(t)
	t.Setenv(secretEnv, secret)
	s := site("broker redis " + redis.URL)
	bin := testserver.BuildCaddy(t)
	one, two := testserver.StartChild(t, bin, "", s), testserver.StartChild(t, bin, "", s)
	onOne, onTwo := one.Base+"/events", two.Base+"/events"
	alice := token(t, "alice", "Alice", "chat/#")
	bob := token(t, "bob", "Bob", "chat/#")
	ops := token(t, "ops", "Ops", "$pubsub/#")
	claims := `{"name":"Alice"}`

	// Each instance's watcher sees every instance's events (signals).
	watcher := testserver.Subscribe(t, nil, onOne+"?topic=$pubsub/join&topic=$pubsub/leave&format=json", bearer(ops))

	testserver.Subscribe(t, nil, onOne+"?topic=chat/lobby", bearer(alice))
	expect(t, watcher, "$pubsub/join", "alice", "chat/lobby", claims)
	second := testserver.Subscribe(t, nil, onTwo+"?topic=chat/lobby", bearer(alice))
	testserver.Subscribe(t, nil, onTwo+"?topic=chat/lobby", bearer(bob))
	expect(t, watcher, "$pubsub/join", "bob", "chat/lobby", `{"name":"Bob"}`)

	want := `alice:2:{"name":"Alice"} bob:1:{"name":"Bob"} anonymous 0 total 3`
	eventually(t, onOne, "chat/lobby", alice, want)
	eventually(t, onTwo, "chat/lobby", alice, want)
	if code, body := query(t, onTwo, "secret/room", alice, ""); code != 403 {
		t.Fatalf("a topic the token may not read: %d %s", code, body)
	}

	// alice's tab on two goes: she is still on one, so no leave.
	second.Close()
	eventually(t, onOne, "chat/lobby", alice, `alice:1:{"name":"Alice"} bob:1:{"name":"Bob"} anonymous 0 total 2`)

	// two dies with bob: the survivor finds its liveness lapsed (15s,
	// renewed every 5s) and tells that bob left.
	killed := time.Now()
	two.Kill()
	check(t, nextWithin(t, watcher, 30*time.Second), "$pubsub/leave", "bob", "chat/lobby", `{"name":"Bob"}`)
	t.Logf("a killed instance's user left %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	eventually(t, onOne, "chat/lobby", alice, `alice:1:{"name":"Alice"} anonymous 0 total 1`)
}
