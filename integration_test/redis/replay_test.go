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
	const messages, size = 3000, 8 << 10
	history := messages * size
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
	ep := s.Base + "/events"
	testserver.Fill(t, ep, "t", messages, size)

	limit := uint64(history / 20)
	perRequest := func(what, query string) {
		t.Helper()
		alloc, cpu := testserver.HeadCost(t, ep+"?"+query, 100, 10)
		t.Logf("%s: %d KiB allocated, %s CPU per request in this process (history %d MiB)", what, alloc>>10, cpu, history>>20)
		if alloc > limit {
			t.Errorf("%s: %d KiB allocated per request, want at most %d KiB: the history was read", what, alloc>>10, limit>>10)
		}
	}
	perRequest("resume matching nothing", "topic=nomatch&last_id=earliest")

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	s.Load(site)
	perRequest("first long-poll after restart", "topic=nomatch")
	perRequest("resume matching nothing after restart", "topic=nomatch&last_id=earliest")

	a := testserver.Poll(t, ep, "earliest", "t")
	if len(a.Messages) != 100 || a.Messages[0].Data[:8] != "00000000" {
		t.Fatalf("poll from earliest: %d messages, want the first 100", len(a.Messages))
	}
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
