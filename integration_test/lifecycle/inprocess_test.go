package lifecycle_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/goleak"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// inProcessSite has presence on (its goroutine must end too) and the
// metrics route, which tells when long-polls are in place.
const inProcessSite = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 30s
		presence
	}
	metrics /metrics
}
`

// caddy.Stop in this process ends every stream as a stop should, at once,
// and afterwards no goroutine of Caddy, the hub, presence or any
// transport is left: the count is back to what it was before.
func TestStopEndsStreamsAndLeavesNoGoroutines(t *testing.T) {
	// Caddy starts some goroutines once per process (certificate cache,
	// usage pools…): run a config once so the baseline has them.
	warm := testserver.Start(t, inProcessSite)
	s := testserver.Subscribe(t, nil, warm.Base+"/events?topic=warm", nil)
	testserver.Publish(t, warm.Base+"/events", url.Values{"topic": {"warm"}, "data": {"x"}})
	s.Next()
	s.Close()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	baseline := goleak.IgnoreCurrent()

	srv := testserver.Start(t, inProcessSite)
	ep := srv.Base + "/events"
	watcher := testserver.Subscribe(t, nil, ep+"?topic=$pubsub/%23", nil)
	sse := testserver.Subscribe(t, nil, ep+"?topic=news", nil)
	ws := testserver.DialWS(t, ep+"?topic=news", nil)
	bare := testserver.DialWS(t, ep, nil) // no topic yet
	for _, transport := range []string{"sse", "ws"} {
		if ev := watcher.Next(); !strings.Contains(ev.Data, `"transport":"`+transport+`"`) {
			t.Fatalf("presence: got %+v, want the %s subscription", ev, transport)
		}
	}
	idle := testserver.StartPoll(ep, "", "idle")
	testserver.Eventually(t, "long-poll waiting", func() bool {
		return strings.Contains(get(t, srv.Base+"/metrics"), `caddy_pubsub_subscribers{hub="default",transport="poll"} 1`)
	})
	burst := publishBurst(t, ep, "news", 40, 4<<10)

	start := time.Now()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("caddy.Stop with open streams took %s", took.Round(time.Millisecond))
	if took > stopLimit {
		t.Errorf("caddy.Stop took %s with streams open", took)
	}
	expectStreamsEnded(t, sse, ws, idle, burst)
	expectGoingAway(t, bare)
	if _, comments := readToEnd(t, watcher); len(comments) == 0 || comments[len(comments)-1] != "closed: server shutting down" {
		t.Errorf("presence watcher ended with %q", comments)
	}

	sse.Close()
	ws.Close()
	bare.Close()
	watcher.Close()
	http.DefaultClient.CloseIdleConnections()
	// certmagic refreshes a storage lock file from a goroutine that
	// notices the lock is gone only at its next tick, up to 5s later.
	goleak.VerifyNone(t, baseline, goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"))
}
