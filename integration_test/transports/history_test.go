package transports_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// `history 0` keeps no messages, as the README says, and `history 0 AGE`
// is refused where it is written instead of keeping every message for AGE.
func TestHistoryZeroKeepsNone(t *testing.T) {
	const n = 50
	site := func(history string) string {
		return "http://127.0.0.1:{PORT} {\n\tpubsub /events* {\n\t\thistory " + history + "\n\t\tpoll_timeout 1s\n\t}\n}\n"
	}
	retained := func(s *testserver.Server) int {
		for i := range n {
			testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"t"}, "data": {fmt.Sprint(i)}})
		}
		return len(testserver.Poll(t, s.Base+"/events", "earliest", "t").Messages)
	}

	_, err := testserver.Adapt(strings.ReplaceAll(site("0 1h"), "{PORT}", "1"))
	if err == nil {
		s := testserver.Start(t, site("0 1h"))
		got := retained(s)
		_ = caddy.Stop()
		t.Fatalf("history 0 1h adapted without error, and %d of %d messages came back from earliest", got, n)
	}
	at := fmt.Sprintf("Caddyfile:%d", strings.Count(testserver.GlobalOptions, "\n")+3) // the history line
	if !strings.Contains(err.Error(), "keeps no messages") || !strings.Contains(err.Error(), at) {
		t.Fatalf("history 0 1h: %q; want it refused at %s, saying a count of 0 keeps no messages", err, at)
	}

	// The JSON config is checked the same way.
	raw := `{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"pubsub","history":{"count":0,"max_age":3600000000000}}]}]}}}}}`
	if err := testserver.Validate(t, []byte(raw)); err == nil || !strings.Contains(err.Error(), "keeps no messages") {
		t.Fatalf("JSON history count 0 with max_age: %v; want it refused", err)
	}

	s := testserver.Start(t, site("0"))
	if got := retained(s); got != 0 {
		t.Fatalf("history 0: %d of %d messages came back from earliest, want none", got, n)
	}
}
