package hooks_test

import (
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Across two Caddy instances on one Redis a topic is occupied by its first
// subscriber on either and vacated by its last on either, each told once;
// an instance that dies with subscribers (killed, saying goodbye to no
// one) has them counted gone once its liveness lapses, one that stops at
// its survivor's next heartbeat, and a survivor tells the backend.
func TestOccupancyAcrossInstances(t *testing.T) {
	redis := testserver.StartRedis(t)
	b := startBackend(t, allowAll)
	t.Setenv(hookSecretEnv, hookSecret)
	s := site(b.URL, "on occupied vacated", "broker redis "+redis.URL)
	bin := testserver.BuildCaddy(t)
	one, two := testserver.StartChild(t, bin, "", s), testserver.StartChild(t, bin, "", s)
	onOne, onTwo := one.Base+"/events", two.Base+"/events"

	first := testserver.Subscribe(t, nil, onOne+"?topic=room", nil)
	if c := b.next("occupied"); c.Topic != "room" {
		t.Fatalf("occupied: %+v", c)
	}
	testserver.Subscribe(t, nil, onTwo+"?topic=room", nil)
	// Each instance sends its events in order: once the second's later
	// marker is told, an occupied room from it would have come first.
	marker(t, b, onTwo, "marker/1")

	first.Close()
	marker(t, b, onOne, "marker/2")

	// The second instance dies with its room subscriber: the first finds
	// its liveness lapsed (15s, renewed every 5s) and vacates room.
	testserver.RawSSE(t, onTwo, "topic=gone")
	if c := b.next("occupied"); c.Topic != "gone" {
		t.Fatalf("occupied: %+v", c)
	}
	killed := time.Now()
	two.Kill()
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case c := <-b.ch("vacated"):
			got[c.Topic] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("vacated %v within 30s of the kill, want room and gone", got)
		}
	}
	if !got["room"] || !got["gone"] {
		t.Fatalf("vacated %v, want room and gone", got)
	}
	t.Logf("a killed instance's topics were vacated %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	b.none("vacated")

	// An instance that stops ends its subscriptions and tells the
	// backend before it exits.
	three := testserver.StartChild(t, bin, "", s)
	testserver.RawSSE(t, three.Base+"/events", "topic=calm")
	if c := b.next("occupied"); c.Topic != "calm" {
		t.Fatalf("occupied: %+v", c)
	}
	three.Stop(t)
	select {
	case c := <-b.ch("vacated"):
		if c.Topic != "calm" {
			t.Fatalf("vacated: %+v", c)
		}
	default:
		t.Fatal("a stopped instance exited without telling the backend its topic was vacated")
	}
}

// marker subscribes to topic on endpoint and leaves it: the next occupied
// and vacated events must be topic's, so the instance queued no other
// before.
func marker(t *testing.T, b *backend, endpoint, topic string) {
	t.Helper()
	s := testserver.Subscribe(t, nil, endpoint+"?topic="+topic, nil)
	if c := b.next("occupied"); c.Topic != topic {
		t.Fatalf("occupied %q, want the marker %s", c.Topic, topic)
	}
	s.Close()
	if c := b.next("vacated"); c.Topic != topic {
		t.Fatalf("vacated %q, want the marker %s", c.Topic, topic)
	}
}
