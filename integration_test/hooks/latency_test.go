package hooks_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// The latency a publish hook adds: publishes to an endpoint with the hook
// and to one without, one at a time over a kept-alive connection, the
// backend on loopback answering at once. Run without -race for the
// numbers (docs/hooks.md):
//
//	go test -count=1 -run TestHookLatency -v ./integration_test/hooks/
func TestHookLatency(t *testing.T) {
	b := startBackend(t, allowAll)
	t.Setenv(hookSecretEnv, hookSecret)
	srv := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /hooked* {
		hub hooked
		hooks `+b.URL+` {
			secret {env.`+hookSecretEnv+`}
			on publish
		}
	}
	pubsub /plain* {
		hub plain
	}
}
`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	const n = 500
	measure := func(path string) []time.Duration {
		took := make([]time.Duration, n)
		for i := range took {
			began := time.Now()
			resp, err := client.Post(srv.Base+path, "application/x-www-form-urlencoded", strings.NewReader("topic=a&data=x"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			took[i] = time.Since(began)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("publish to %s: %d", path, resp.StatusCode)
			}
		}
		slices.Sort(took)
		return took
	}
	measure("/plain") // warm up both paths and connections
	measure("/hooked")
	plain, hooked := measure("/plain"), measure("/hooked")
	for range 2 * n {
		b.next("publish")
	}
	at := func(d []time.Duration, q float64) time.Duration { return d[int(q*float64(len(d)-1))] }
	t.Logf("publish p50 %s p99 %s without the hook; %s and %s with it: the hook adds p50 %s, p99 %s",
		at(plain, .5), at(plain, .99), at(hooked, .5), at(hooked, .99),
		at(hooked, .5)-at(plain, .5), at(hooked, .99)-at(plain, .99))
	if at(hooked, .99) > time.Second {
		t.Errorf("p99 with the hook is %s", at(hooked, .99))
	}
}
