package redis_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Two Caddy processes on one Redis with presence: a watcher on B sees the
// subscriptions made on A begin and end, as events without an ID, and the
// events never enter the stream, so they take no room in history.
func TestPresenceAcrossProcesses(t *testing.T) {
	srv := testserver.StartRedis(t)
	site := fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		presence
		heartbeat 30s
		history 100
		broker redis %s {
			dial_timeout 1s
			key_prefix test:
			stream presence
		}
	}
}
`, srv.URL)
	a := testserver.Start(t, site)
	b := startChild(t, site)
	epA, epB := a.Base+"/events", b.Base+"/events"

	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	const channel = "test:presence:signals:0"
	listeners := func() int64 {
		n, err := rdb.PubSubNumSub(context.Background(), channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n[channel]
	}

	watcher := testserver.Subscribe(t, nil, epB+"?topic=$pubsub/%23&format=json", nil)
	id := testserver.Publish(t, epA, url.Values{"topic": {"room"}, "data": {"real"}})
	testserver.Eventually(t, "A and B listening for signals", func() bool { return listeners() == 2 })

	onA := testserver.Subscribe(t, nil, epA+"?topic=room/1", nil)
	expect := func(what, topic string) string {
		t.Helper()
		ev := watcher.Next()
		var env struct {
			ID, Topic, Data string
		}
		var p struct {
			ID     string   `json:"id"`
			Topics []string `json:"topics"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &env); err != nil {
			t.Fatalf("%s: %+v: %v", what, ev, err)
		}
		if err := json.Unmarshal([]byte(env.Data), &p); err != nil || ev.ID != "" || env.ID != "" || env.Topic != topic || !slices.Equal(p.Topics, []string{"room/1"}) {
			t.Fatalf("%s: got SSE id %q, envelope %+v; want no ID, %s of room/1", what, ev.ID, env, topic)
		}
		return p.ID
	}
	began := expect("subscription on A, seen on B", "$pubsub/subscribe")
	onA.Close()
	if ended := expect("its end, seen on B", "$pubsub/unsubscribe"); ended != began {
		t.Fatalf("began as %s, ended as %s", began, ended)
	}

	ctx, cancel := context.WithTimeout(context.Background(), testserver.Wait)
	defer cancel()
	entries, err := rdb.XRange(ctx, "test:presence", "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("stream after presence events: %d entries (%v), want the one message", len(entries), err)
	}
	resumed := testserver.Subscribe(t, nil, epB+"?topic=room", lastEventID("earliest"))
	if ev := resumed.Next(); ev.ID != id || ev.Data != "real" {
		t.Fatalf("history on B: %+v, want only %s", ev, id)
	}
}
