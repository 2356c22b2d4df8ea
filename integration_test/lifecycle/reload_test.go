package lifecycle_test

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A config reload keeps subscribers connected: they get messages published
// after the reload, and history from before it still resumes.
func TestReloadKeepsSubscribersAndHistory(t *testing.T) {
	s := testserver.Start(t, basicSite)
	ep := s.Base + "/events"
	sub := testserver.Subscribe(t, nil, ep+"?topic=k", nil)
	before := testserver.Publish(t, ep, url.Values{"topic": {"k"}, "data": {"before"}})
	if ev := sub.Next(); ev.ID != before {
		t.Fatalf("before reload got %+v", ev)
	}

	// Another heartbeat, history and an extra route: a real config change.
	s.Load(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 2s
		history 50 30m
	}
	respond /health "ok"
}
`)
	if code, body, _ := testserver.Request(t, "GET", s.Base+"/health", "", "", nil); code != 200 || body != "ok" {
		t.Fatalf("new config not live: %d %q", code, body)
	}
	after := testserver.Publish(t, ep, url.Values{"topic": {"k"}, "data": {"after"}})
	if ev := sub.Next(); ev.ID != after || ev.Data != "after" {
		t.Fatalf("subscriber from before the reload got %+v, want %s", ev, after)
	}
	resumed := testserver.Subscribe(t, nil, ep+"?topic=k&last_id=earliest", nil)
	for _, id := range []string{before, after} {
		if ev := resumed.Next(); ev.ID != id {
			t.Fatalf("history across reload: got %+v, want %s", ev, id)
		}
	}
}

// A reload that Caddy refuses changes nothing that runs: the options of
// the refused config (here a shorter durable history, a subscriber cap)
// never reach the live hub.
func TestRefusedReloadChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		broker bolt `+path+`
		history 1000
	}
}
`)
	ep := s.Base + "/events"
	for i := range 50 {
		testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {fmt.Sprint(i)}})
	}
	err := s.TryLoad(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		broker bolt ` + path + `
		history 10
		limits {
			subscribers 1
		}
	}
	pubsub /other* {
		hub default
		broker bolt ` + path + `
		history 20
	}
}
`)
	if err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatalf("conflicting config loaded: %v", err)
	}
	first := testserver.Subscribe(t, nil, ep+"?topic=t&last_id=earliest", nil)
	second := testserver.Subscribe(t, nil, ep+"?topic=t&last_id=earliest", nil)
	for _, sub := range []*testserver.SSEStream{first, second} {
		for i := range 50 {
			if ev := sub.Next(); ev.Data != fmt.Sprint(i) {
				t.Fatalf("history after the refused reload: message %d is %+v", i, ev)
			}
		}
	}
}
