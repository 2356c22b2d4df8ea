package redis_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Two Caddy processes on one Redis: messages published on A reach SSE
// subscribers on B in order with A's IDs, and the other way round; a client
// that saw an ID on A resumes from it on B.
func TestTwoProcessesShareAHub(t *testing.T) {
	srv := testserver.StartRedis(t)
	site := redisSite(srv.URL, "chat", "")
	a := testserver.Start(t, site)
	b := startChild(t, site)
	epA, epB := a.Base+"/events", b.Base+"/events"

	onB := testserver.Subscribe(t, nil, epB+"?topic=room/1", nil)
	wildOnB := testserver.Subscribe(t, nil, epB+"?topic=room/%23&format=json", nil)
	onA := testserver.Subscribe(t, nil, epA+"?topic=room/1", nil)

	var ids, data []string
	for i := range 4 {
		d := "from A " + strconv.Itoa(i)
		ids = append(ids, testserver.Publish(t, epA, url.Values{"topic": {"room/1"}, "data": {d}}))
		data = append(data, d)
	}
	code, body, _ := testserver.Request(t, "POST", epA, "application/json",
		`[{"topic":"room/1","data":"batch 1"},{"topic":"room/1","data":"batch 2"}]`, nil)
	if code != http.StatusOK {
		t.Fatalf("batch publish on A: %d %s", code, body)
	}
	var batch struct{ IDs []string }
	if err := json.Unmarshal([]byte(body), &batch); err != nil || len(batch.IDs) != 2 {
		t.Fatalf("batch answer %q", body)
	}
	ids, data = append(ids, batch.IDs...), append(data, "batch 1", "batch 2")
	fromB := testserver.Publish(t, epB, url.Values{"topic": {"room/1"}, "data": {"from B"}})
	ids, data = append(ids, fromB), append(data, "from B")

	expect(t, onB, ids, data)
	expect(t, onA, ids, data)
	for i, id := range ids {
		ev := wildOnB.Next()
		var env struct{ ID, Topic, Data string }
		if err := json.Unmarshal([]byte(ev.Data), &env); err != nil || env.ID != id || env.Topic != "room/1" || env.Data != data[i] {
			t.Fatalf("wildcard subscriber on B, message %d: %+v", i, ev)
		}
	}

	// A client of A drops after the second message and reconnects to B.
	resumed := testserver.Subscribe(t, nil, epB+"?topic=room/1", lastEventID(ids[1]))
	expect(t, resumed, ids[2:], data[2:])
	next := testserver.Publish(t, epA, url.Values{"topic": {"room/1"}, "data": {"after resume"}})
	expect(t, resumed, []string{next}, []string{"after resume"})
}

// Two hubs in one Caddy that name one stream share it like two instances
// would: same messages, same IDs, resume across them.
func TestTwoHubsShareOneStream(t *testing.T) {
	srv := testserver.StartRedis(t)
	s := testserver.Start(t, fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /a* {
		hub a
		broker redis %[1]s {
			stream shared
		}
	}
	pubsub /b* {
		hub b
		broker redis %[1]s {
			stream shared
		}
	}
}
`, srv.URL))
	onB := testserver.Subscribe(t, nil, s.Base+"/b?topic=t", nil)
	var ids []string
	for i := range 3 {
		ids = append(ids, testserver.Publish(t, s.Base+"/a", url.Values{"topic": {"t"}, "data": {strconv.Itoa(i)}}))
	}
	expect(t, onB, ids, []string{"0", "1", "2"})
	resumed := testserver.Subscribe(t, nil, s.Base+"/b?topic=t", lastEventID(ids[0]))
	expect(t, resumed, ids[1:], []string{"1", "2"})
}

// Redis down when Caddy starts: Caddy starts anyway, publishes get 503
// with a reason, subscribers stay connected with heartbeats, and once
// Redis is up they get what is published.
func TestRedisDownAtStart(t *testing.T) {
	srv := testserver.NewRedis(t)
	s := testserver.Start(t, redisSite(srv.URL, "default", ""))
	ep := s.Base + "/events"

	code, body, _ := testserver.Request(t, "POST", ep, "application/x-www-form-urlencoded", "topic=t&data=x", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "broker unavailable") {
		t.Fatalf("publish with Redis down: %d %q; want 503 saying the broker is unavailable", code, body)
	}
	sub := testserver.Subscribe(t, nil, ep+"?topic=t", nil)
	expectHeartbeat(t, sub)
	expectHeartbeat(t, sub)

	srv.Start()
	id := publishWhenUp(t, ep, "t", "hello")
	expect(t, sub, []string{id}, []string{"hello"})
}

// Redis killed mid-stream and restarted empty: subscribers stay connected
// through the outage; when the stream goes on in a new epoch their streams
// end with the reason, and resuming tells them of the loss with a gap.
func TestRedisRestartedEmptyMidStream(t *testing.T) {
	srv := testserver.StartRedis(t)
	s := startChild(t, redisSite(srv.URL, "default", ""))
	ep := s.Base + "/events"
	sub := testserver.Subscribe(t, nil, ep+"?topic=t", nil)
	before := []string{
		testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"1"}}),
		testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"2"}}),
	}
	expect(t, sub, before, []string{"1", "2"})

	srv.Kill()
	code, body, _ := testserver.Request(t, "POST", ep, "application/x-www-form-urlencoded", "topic=t&data=x", nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("publish with Redis killed: %d %s", code, body)
	}
	expectHeartbeat(t, sub)

	srv.Start()
	after := publishWhenUp(t, ep, "t", "3")
	expectClosed(t, sub, "the broker lost messages")

	resumed := testserver.Subscribe(t, nil, ep+"?topic=t", lastEventID(before[1]))
	expectGap(t, resumed, before[1], after)
	expect(t, resumed, []string{after}, []string{"3"})
	// A restart of the same server is a reconnect and a loss, not a
	// failover; the resume's gap is counted.
	if l := linkOf(t, s.Admin, "default"); l.Reconnects != 1 || l.Losses != 1 || l.Failovers != 0 || l.Gaps != 1 || l.Server != srv.Addr {
		t.Fatalf("after the restart: %+v, want 1 reconnect, 1 loss, no failover, 1 gap, on %s", l, srv.Addr)
	}
}

// A resume from an ID older than history keeps gets a gap, then what is
// retained; from an ID inside history, exactly the rest.
func TestHistoryTrimIsGap(t *testing.T) {
	srv := testserver.StartRedis(t)
	s := testserver.Start(t, strings.Replace(redisSite(srv.URL, "default", ""), "history 100 1h", "history 5", 1))
	ep := s.Base + "/events"
	live := testserver.Subscribe(t, nil, ep+"?topic=t", nil)
	msgs := make([]string, 30)
	for i := range msgs {
		msgs[i] = fmt.Sprintf(`{"topic":"t","data":"%d"}`, i)
	}
	code, body, _ := testserver.Request(t, "POST", ep, "application/json", "["+strings.Join(msgs, ",")+"]", nil)
	if code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	var out struct{ IDs []string }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	ids := out.IDs
	expect(t, live, ids, nil) // the hub has delivered them all

	old := testserver.Subscribe(t, nil, ep+"?topic=t", lastEventID(ids[3]))
	expectGap(t, old, ids[3], ids[25])
	expect(t, old, ids[25:], []string{"25", "26", "27", "28", "29"})

	edge := testserver.Subscribe(t, nil, ep+"?topic=t", lastEventID(ids[24]))
	expect(t, edge, ids[25:], nil)
}

// A reload that changes the broker gives the hub a new broker: streams on
// the old one end (their clients reconnect and resume); a reload that
// keeps it keeps the streams.
func TestReloadChangingBroker(t *testing.T) {
	srv := testserver.StartRedis(t)
	memory := `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
	}
}
`
	s := testserver.Start(t, memory)
	ep := s.Base + "/events"
	onMemory := testserver.Subscribe(t, nil, ep+"?topic=t", nil)

	s.Load(redisSite(srv.URL, "default", ""))
	if comments := onMemory.ExpectEnd(); len(comments) == 0 || !strings.Contains(comments[len(comments)-1], "hub closed") {
		t.Fatalf("stream on the memory broker ended with %q, want the hub-closed reason", comments)
	}
	onRedis := testserver.Subscribe(t, nil, ep+"?topic=t", nil)
	s.Load(strings.Replace(redisSite(srv.URL, "default", ""), "history 100 1h", "history 50 1h", 1))
	id := testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"kept"}})
	expect(t, onRedis, []string{id}, []string{"kept"})
}

// Broker settings that cannot work fail adapt or load with the place and
// the reason.
func TestBrokerConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, site, want string
	}{
		{"bad scheme", `pubsub {
		broker redis http://127.0.0.1:6379
	}`, "Caddyfile:12"},
		{"unknown kind", `pubsub {
		broker kafka localhost
	}`, `unknown kind "kafka"`},
		{"unknown option", `pubsub {
		broker redis redis://127.0.0.1 {
			pasword x
		}
	}`, "Caddyfile:13"},
		{"bolt with two paths", `pubsub {
		broker bolt /a /b
	}`, "wrong argument count"},
		{"memory with options", `pubsub {
		broker memory {
			db 1
		}
	}`, "takes no options"},
		{"bad timeout", `pubsub {
		broker redis redis://127.0.0.1 {
			dial_timeout soon
		}
	}`, "dial_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testserver.Adapt("http://127.0.0.1:9 {\n\t" + tc.site + "\n}\n")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("adapt: %v; want an error with %q", err, tc.want)
			}
		})
	}

	srv := testserver.StartRedis(t)
	cfg, err := testserver.Adapt(fmt.Sprintf(`
http://127.0.0.1:%d {
	pubsub /a* {
		hub shared
	}
	pubsub /b* {
		hub shared
		broker redis %s
	}
}
`, testserver.FreePort(t), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err == nil || !strings.Contains(err.Error(), "defined twice") {
		_ = caddy.Stop()
		t.Fatalf("one hub with two brokers: %v, want an error", err)
	}
}

// The README's two-instance example, examples/redis/Caddyfile, loads as
// written and chats through Redis.
func TestExampleCaddyfile(t *testing.T) {
	srv := testserver.StartRedis(t)
	port := testserver.FreePort(t)
	t.Setenv("PORT", strconv.Itoa(port))
	t.Setenv("REDIS_URL", srv.URL)
	body, err := os.ReadFile("../../examples/redis/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	ep := fmt.Sprintf("http://localhost:%d/events/lobby", port)
	sub := testserver.Subscribe(t, nil, ep, nil)
	id := testserver.Publish(t, ep, url.Values{"data": {"hello from 8081"}})
	expect(t, sub, []string{id}, []string{"hello from 8081"})
}
