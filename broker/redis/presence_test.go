package redis_test

import (
	"context"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// sharing returns an instance of the hub on stream that shares presence.
func sharing(t *testing.T, url, stream string) *redis.Occupancy {
	t.Helper()
	b := redis.WithOccupancy(newBroker(t, url, stream, hub.Retention{Count: 10}))
	if err := b.StartPresence(func(hub.PresenceChange) {}, func() {}); err != nil {
		t.Fatal(err)
	}
	return b
}

// An identity joins with its first connection on any instance and leaves
// with its last on any, each crossing told to one instance; the lists
// are the union, connections summed; a record written by something else
// that does not parse is skipped, without an error.
func TestPresenceSharedByInstances(t *testing.T) {
	srv := testserver.StartRedis(t)
	stream := streamKey()
	a, b := sharing(t, srv.URL, stream), sharing(t, srv.URL, stream)
	ctx := context.Background()
	share := func(o *redis.Occupancy, conns, total int, want bool) {
		t.Helper()
		s := hub.PresenceShare{Filter: "room", Sub: "alice", Claims: []byte(`{"name":"Alice"}`), Connections: conns, Anonymous: 1, Total: total}
		crossed, err := o.SharePresence(ctx, s)
		if err != nil || crossed != want {
			t.Fatalf("share %+v: crossed %v, %v; want %v", s, crossed, err, want)
		}
	}
	share(a, 2, 3, true)
	share(b, 1, 2, false)
	share(a, 3, 4, false)

	raw := rawClient(t, srv)
	key := stream + ":occ:p:room"
	if err := raw.HSet(ctx, key,
		"i0123456789abcdefbob", "many",
		"i0123456789abcdefeve", "2:{not json",
		"i0123456789abcdef", "1:{}",
		"a0123456789abcdef", "-7",
		"short", "1",
	).Err(); err != nil {
		t.Fatal(err)
	}
	l, err := b.PresentAll(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]hub.PresenceIdentity{}
	for _, e := range l.Subscribers {
		got[e.Sub] = e
	}
	if len(got) != 2 || got["alice"].Connections != 4 || string(got["alice"].Claims) != `{"name":"Alice"}` ||
		got["eve"].Connections != 2 || got["eve"].Claims != nil || l.Anonymous != 2 || l.Total != 6 {
		t.Fatalf("lists: %+v", l)
	}

	share(a, 0, 1, false)
	share(b, 0, 0, true)
	if l, err := a.PresentAll(ctx, "room"); err != nil || len(l.Subscribers) != 1 || l.Subscribers[0].Sub != "eve" || l.Total != 1 {
		t.Fatalf("after alice left: %+v, %v", l, err)
	}
}
