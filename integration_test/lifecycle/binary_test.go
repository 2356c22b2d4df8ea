package lifecycle_test

import (
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// site is served by the child Caddy; {VERSION} tells a reloaded config from
// the first one.
const site = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat {HEARTBEAT}
	}
	respond /version "{VERSION}"
}
`

func siteVersion(version, heartbeat string) string {
	return strings.NewReplacer("{VERSION}", version, "{HEARTBEAT}", heartbeat).Replace(site)
}

// The real binary, driven by its CLI: `caddy reload` leaves SSE, WebSocket
// and long-poll subscribers connected and delivering; `caddy stop` and
// Ctrl-C (SIGINT) end them cleanly and Caddy exits within stopLimit.
func TestBinaryReloadAndStop(t *testing.T) {
	bin := testserver.BuildCaddy(t)

	t.Run("reload keeps streams, caddy stop ends them", func(t *testing.T) {
		p := startCaddy(t, bin, siteVersion("v1", "30s"))
		ep := p.Base + "/events"
		sse := testserver.Subscribe(t, nil, ep+"?topic=news", nil)
		ws := testserver.DialWS(t, ep+"?topic=news", nil)
		poll := testserver.StartPoll(ep, "", "news")
		p.waitSubscribers(t, "default", map[string]int{"sse": 1, "ws": 1, "poll": 1})

		first := testserver.Publish(t, ep, url.Values{"topic": {"news"}, "data": {"before the reload"}})
		expectDelivered(t, sse, ws, first)
		if a := poll.Wait(t); len(a.Messages) != 1 || a.Messages[0].ID != first {
			t.Fatalf("long-poll answered %+v, want %s", a, first)
		}

		// A poll waits across the reload; the streams stay open.
		poll = testserver.StartPoll(ep, first, "news")
		p.waitSubscribers(t, "default", map[string]int{"sse": 1, "ws": 1, "poll": 1})
		p.reload(t, siteVersion("v2", "20s"))
		if v := get(t, p.Base+"/version"); v != "v2" {
			t.Fatalf("after caddy reload /version = %q, want v2", v)
		}
		p.waitSubscribers(t, "default", map[string]int{"sse": 1, "ws": 1, "poll": 1})
		second := testserver.Publish(t, ep, url.Values{"topic": {"news"}, "data": {"after the reload"}})
		expectDelivered(t, sse, ws, second)
		if a := poll.Wait(t); len(a.Messages) != 1 || a.Messages[0].ID != second {
			t.Fatalf("long-poll from before the reload answered %+v, want %s", a, second)
		}

		idle := testserver.StartPoll(ep, "", "idle")
		p.waitSubscribers(t, "default", map[string]int{"sse": 1, "ws": 1, "poll": 1})
		burst := publishBurst(t, ep, "news", 40, 4<<10)
		start := time.Now()
		p.cli(t, "stop")
		took, code := p.waitExit(t, start, stopLimit)
		t.Logf("caddy stop: exited with %d after %s", code, took.Round(time.Millisecond))
		if code != 0 {
			t.Errorf("exit code %d after caddy stop", code)
		}
		expectStreamsEnded(t, sse, ws, idle, burst)
		if !strings.Contains(p.out.String(), `"msg":"server stopping: ending pubsub streams"`) {
			t.Errorf("no shutdown log line in Caddy's output")
		}
	})

	t.Run("SIGINT ends streams", func(t *testing.T) {
		p := startCaddy(t, bin, siteVersion("v1", "30s"))
		ep := p.Base + "/events"
		sse := testserver.Subscribe(t, nil, ep+"?topic=news", nil)
		ws := testserver.DialWS(t, ep+"?topic=news", nil)
		bare := testserver.DialWS(t, ep, nil) // no topic yet
		idle := testserver.StartPoll(ep, "", "idle")
		p.waitSubscribers(t, "default", map[string]int{"sse": 1, "ws": 1, "poll": 1})

		burst := publishBurst(t, ep, "news", 40, 4<<10)
		start := time.Now()
		if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		took, code := p.waitExit(t, start, stopLimit)
		t.Logf("SIGINT: exited with %d after %s", code, took.Round(time.Millisecond))
		expectStreamsEnded(t, sse, ws, idle, burst)
		expectGoingAway(t, bare)
	})
}

// expectDelivered checks that the SSE stream and the WebSocket get id next.
func expectDelivered(t *testing.T, sse *testserver.SSEStream, ws *testserver.WSConn, id string) {
	t.Helper()
	if ev := sse.Next(); ev.ID != id {
		t.Fatalf("SSE got %+v, want %s", ev, id)
	}
	if f := ws.NextOf("message"); f.ID != id {
		t.Fatalf("WebSocket got %s, want %s", f.Raw, id)
	}
}
