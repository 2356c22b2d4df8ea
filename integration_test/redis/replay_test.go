package redis_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Replay cost on Redis: a resume that matches none of thousands of large
// retained messages, or a first long-poll on a restarted Caddy, must not
// bring the history over from Redis. Caddy runs in this process, so the
// bytes it allocates per request show what a request read.
func TestReplayDoesNotCopyHistory(t *testing.T) {
	srv := testserver.StartRedis(t)
	site := fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		history 10000 1h
		max_message_size 1MiB
		broker redis %s
	}
}
`, srv.URL)
	s := testserver.Start(t, site)
	testserver.ExpectCheapReplays(t, s.Base+"/events", func() {
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		s.Load(site)
	})
}

// Whoever can write to Redis can add entries to a hub's stream. Entries
// with a line break in the event name or epoch, a reserved event name,
// data that is not UTF-8 or a malformed epoch never reach a subscriber,
// live or resuming, and the messages around them still do.
func TestInjectedEntriesNeverReachSubscribers(t *testing.T) {
	srv := testserver.StartRedis(t)
	s := testserver.Start(t, redisSite(srv.URL, "default", "stream inject"))
	ep := s.Base + "/events"
	live := testserver.Subscribe(t, nil, ep+"?topic=t", nil)
	first := testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"before"}})
	expect(t, live, []string{first}, []string{"before"})

	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	ctx := context.Background()
	epoch, _, _ := strings.Cut(first, "-")
	for _, values := range []map[string]any{
		{"epoch": epoch, "topic": "t", "event": "x\r\nevent: admin", "data": "injected event"},
		{"epoch": epoch, "topic": "t", "event": "x\nid: forged", "data": "injected event"},
		{"epoch": epoch, "topic": "t", "event": "gap", "data": "reserved event"},
		{"epoch": epoch, "topic": "t", "event": "", "data": "not utf-8 \xff"},
		{"epoch": epoch + "\r\nevent: admin", "topic": "t", "event": "", "data": "injected epoch"},
		{"epoch": "zz", "topic": "t", "event": "", "data": "bad epoch"},
		{"epoch": epoch, "topic": "t\n", "event": "", "data": "bad topic"},
	} {
		if err := raw.XAdd(ctx, &goredis.XAddArgs{Stream: "pubsub:inject", Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	last := testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"after"}})

	expect(t, live, []string{last}, []string{"after"})
	for _, format := range []string{"", "&format=json"} {
		resumed := testserver.Subscribe(t, nil, ep+"?topic=t&last_id=earliest"+format, nil)
		ev := resumed.Next()
		if ev.ID != first || ev.Event != "" {
			t.Fatalf("resumed%s: first event %+v, want %s", format, ev, first)
		}
		if ev = resumed.Next(); ev.ID != last || ev.Event != "" {
			t.Fatalf("resumed%s: second event %+v, want %s: an injected entry came through", format, ev, last)
		}
	}
	a := testserver.Poll(t, ep, "earliest", "t")
	if len(a.Messages) != 2 || a.Messages[0].ID != first || a.Messages[1].ID != last {
		t.Fatalf("long-poll from earliest: %+v, want only %s and %s", a.Messages, first, last)
	}
}
