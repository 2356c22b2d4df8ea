package config_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Two sites naming one hub share it; one config defining one hub two ways
// is refused.
func TestHubsAreSharedByName(t *testing.T) {
	port2 := testserver.FreePort(t)
	s := testserver.Start(t, fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub team
	}
}
http://127.0.0.1:%d {
	pubsub /feed* {
		hub team
	}
	pubsub /other* {
		hub private
	}
}
`, port2))
	second := fmt.Sprintf("http://127.0.0.1:%d", port2)
	shared := testserver.Subscribe(t, nil, second+"/feed?topic=t", nil)
	private := testserver.Subscribe(t, nil, second+"/other?topic=t", nil)
	id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"t"}, "data": {"x"}})
	if ev := shared.Next(); ev.ID != id {
		t.Fatalf("shared hub got %+v", ev)
	}
	own := testserver.Publish(t, second+"/other", url.Values{"topic": {"t"}, "data": {"own"}})
	if ev := private.Next(); ev.ID != own {
		t.Fatalf("a separate hub leaked %+v, want only its own %s", ev, own)
	}

	cfg, err := testserver.Adapt(`
http://127.0.0.1:1 {
	pubsub /a* {
		hub team
		history 10
	}
	pubsub /b* {
		hub team
		history 20
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if err := testserver.Validate(t, cfg); err == nil || !strings.Contains(err.Error(), `hub "team" is defined twice`) {
		t.Fatalf("conflicting hub definitions: got %v", err)
	}
}

// Every endpoint of a hub reads all of it, history included, so endpoints
// of one hub that decide differently who may subscribe are refused at
// load, naming the hub and both endpoints. Publish-side differences (a
// keyed publish endpoint beside an open one) stay allowed.
func TestEndpointsOfAHubAuthoriseSubscribersAlike(t *testing.T) {
	t.Setenv("PUBSUB_TEST_SECRET", strings.Repeat("s", 32))
	refused := []struct{ name, site string }{
		{"open beside jwt", `
http://127.0.0.1:{PORT} {
	pubsub /public* {
		hub h
	}
	pubsub /private* {
		hub h
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
		}
	}
}
`},
		{"two bare routes share the hub default", `
http://127.0.0.1:{PORT} {
	pubsub /public* {
	}
	pubsub /private* {
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
			cookie token
		}
	}
}
`},
		{"different jwt settings", `
http://127.0.0.1:{PORT} {
	pubsub /public* {
		hub h
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
			audience a
		}
	}
	pubsub /private* {
		hub h
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
		}
	}
}
`},
		{"keys that grant the presence topics", `
http://127.0.0.1:{PORT} {
	pubsub /public* {
		hub h
		presence
	}
	pubsub /private* {
		hub h
		presence
		publish_key k
	}
}
`},
	}
	s := testserver.Start(t, basicSite)
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			var endpoints []string // where the site's pubsub directives are
			for i, line := range strings.Split(tc.site, "\n") {
				if strings.HasPrefix(line, "\tpubsub ") {
					endpoints = append(endpoints, fmt.Sprintf("Caddyfile:%d", strings.Count(testserver.GlobalOptions, "\n")+i+1))
				}
			}
			err := s.TryLoad(tc.site)
			if err == nil || !strings.Contains(err.Error(), "decide differently who may subscribe") ||
				!strings.Contains(err.Error(), "different hub names") ||
				!strings.Contains(err.Error(), endpoints[0]) || !strings.Contains(err.Error(), endpoints[1]) {
				t.Fatalf("loaded, or refused without naming both endpoints %q: %v", endpoints, err)
			}
		})
	}
	s.Load(`
http://127.0.0.1:{PORT} {
	pubsub /publish* {
		hub h
		publish_key k
	}
	pubsub /events* {
		hub h
	}
}
`)
	sub := testserver.Subscribe(t, nil, s.Base+"/events?topic=t", nil)
	code, body, _ := testserver.Request(t, "POST", s.Base+"/publish", "application/x-www-form-urlencoded", "topic=t&data=keyed", http.Header{"Authorization": {"Bearer k"}})
	if code != 200 {
		t.Fatalf("keyed publish beside an open subscribe endpoint: %d %q", code, body)
	}
	if ev := sub.Next(); ev.Data != "keyed" {
		t.Fatalf("subscriber got %+v", ev)
	}
}
