package presence_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// The HS256 secret, handed to Caddy through the environment.
const (
	secret    = "presence-test-secret-0123456789abcdef"
	secretEnv = "PUBSUB_TEST_PRESENCE_SECRET"
)

// site serves /events with presence showing the name claim, HS256 tokens,
// and broker (none for memory).
func site(broker string) string {
	return `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		presence {
			claims name
		}
		jwt {
			secret {env.` + secretEnv + `}
		}
		` + broker + `
	}
}
`
}

// token returns a token of sub, valid for an hour, whose claims name and
// email are set and which may subscribe to subscribe.
func token(t testing.TB, sub, name string, subscribe ...string) string {
	t.Helper()
	c := jwt.MapClaims{
		"sub":    sub,
		"exp":    time.Now().Add(time.Hour).Unix(),
		"name":   name,
		"email":  sub + "@example.com",
		"pubsub": map[string]any{"subscribe": subscribe},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// query asks ep who is subscribed to topic with tok ("" for none) and the
// extra query, and returns the status and body.
func query(t testing.TB, ep, topic, tok, extra string) (int, string) {
	t.Helper()
	var h http.Header
	if tok != "" {
		h = http.Header{"Authorization": {"Bearer " + tok}}
	}
	code, body, _ := testserver.Request(t, http.MethodGet, ep+"?presence=1&topic="+url.QueryEscape(topic)+extra, "", "", h)
	return code, body
}

// list asks ep who is subscribed to topic, which must be answered.
func list(t testing.TB, ep, topic, tok, extra string) hub.PresenceList {
	t.Helper()
	code, body := query(t, ep, topic, tok, extra)
	if code != http.StatusOK {
		t.Fatalf("presence of %s: %d %s", topic, code, body)
	}
	var l hub.PresenceList
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("presence answer %s: %v", body, err)
	}
	return l
}

// eventually waits until ep's list of topic, as tok sees it, is want (see
// summary).
func eventually(t testing.TB, ep, topic, tok, want string) {
	t.Helper()
	got := ""
	testserver.Eventually(t, "presence of "+topic+" to be "+want, func() bool {
		got = summary(list(t, ep, topic, tok, ""))
		return got == want
	})
}

// summary renders a list for comparison: "sub:connections:claims ...
// anonymous N total N".
func summary(l hub.PresenceList) string {
	var b strings.Builder
	for _, e := range l.Subscribers {
		fmt.Fprintf(&b, "%s:%d:%s ", e.Sub, e.Connections, e.Claims)
	}
	fmt.Fprintf(&b, "anonymous %d total %d", l.Anonymous, l.Total)
	if l.Truncated {
		b.WriteString(" truncated")
	}
	return b.String()
}

// event is a presence event as a ?format=json watcher reads it.
type event struct {
	Topic  string          // the event's topic: $pubsub/subscribe, join...
	Sub    string          `json:"sub"`
	Claims json.RawMessage `json:"claims"`
	Topics []string        `json:"topics"` // subscribe and unsubscribe
	Of     string          `json:"topic"`  // join and leave
}

// next reads w's next presence event, waiting testserver.Wait at most.
func next(t testing.TB, w *testserver.SSEStream) event {
	t.Helper()
	return nextWithin(t, w, testserver.Wait)
}

// nextWithin reads w's next presence event, waiting d at most.
func nextWithin(t testing.TB, w *testserver.SSEStream, d time.Duration) event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case sse, ok := <-w.Events():
			if !ok {
				t.Fatal("the watcher's stream ended")
			}
			if sse.IsComment {
				continue
			}
			var env testserver.Envelope
			if err := json.Unmarshal([]byte(sse.Data), &env); err != nil {
				t.Fatal(err)
			}
			ev := event{Topic: env.Topic}
			if err := json.Unmarshal([]byte(env.Data), &ev); err != nil {
				t.Fatalf("presence data %q: %v", env.Data, err)
			}
			return ev
		case <-deadline:
			t.Fatalf("no presence event within %s", d)
		}
	}
}

// expect reads w's next event and checks it is on topic, for sub and the
// filter, with claims.
func expect(t testing.TB, w *testserver.SSEStream, topic, sub, filter, claims string) {
	t.Helper()
	check(t, next(t, w), topic, sub, filter, claims)
}

// check checks ev is on topic, for sub and the filter, with claims.
func check(t testing.TB, ev event, topic, sub, filter, claims string) {
	t.Helper()
	of := ev.Of
	if len(ev.Topics) == 1 {
		of = ev.Topics[0]
	}
	if ev.Topic != topic || ev.Sub != sub || of != filter || string(ev.Claims) != claims {
		t.Fatalf("got %+v (claims %s), want %s of %s to %s with claims %s", ev, ev.Claims, topic, sub, filter, claims)
	}
}

// bearer is the header of tok.
func bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}
