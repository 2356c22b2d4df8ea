package observability_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
	"github.com/golang-jwt/jwt/v5"
)

// The admin API publishes into a hub (to any topic, batch included), and
// disconnects the subscriptions a topic reaches, with the reason; others
// stay. Bad input is a 4xx with the reason.
func TestAdminPublishAndDisconnect(t *testing.T) {
	s := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub chat
		publish_key secret-key
	}
}
`)
	ep := s.Base + "/events"
	lobby := testserver.Subscribe(t, nil, ep+"?topic=chat/lobby", nil)
	all := testserver.Subscribe(t, nil, ep+"?topic=chat/%23", nil)
	news := testserver.Subscribe(t, nil, ep+"?topic=news", nil)

	post := func(path, body string) (int, string) {
		code, out, _ := testserver.Request(t, http.MethodPost, s.Admin+path, "application/json", body, nil)
		return code, out
	}
	if code, body := post("/pubsub/publish?hub=chat", `[{"topic":"chat/lobby","data":"from the operator"},{"topic":"news","data":{"n":1}}]`); code != 200 || !strings.Contains(body, `"ids":[`) {
		t.Fatalf("publish: %d %s", code, body)
	}
	if ev := lobby.Next(); ev.Data != "from the operator" {
		t.Fatalf("lobby got %+v", ev)
	}
	if ev := news.Next(); ev.Data != `{"n":1}` {
		t.Fatalf("news got %+v", ev)
	}
	all.Next()

	if code, body := post("/pubsub/disconnect?hub=chat&topic=chat/lobby", ""); code != 200 || !strings.Contains(body, `"disconnected":2`) {
		t.Fatalf("disconnect: %d %s", code, body)
	}
	for _, sub := range []*testserver.SSEStream{lobby, all} {
		if ended := sub.ExpectEnd(); !strings.Contains(strings.Join(ended, " "), "closed: disconnected by the server") {
			t.Fatalf("a disconnected stream ended with %q", ended)
		}
	}
	if code, body := post("/pubsub/publish?hub=chat", `{"topic":"news","data":"still here"}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	if ev := news.Next(); ev.Data != "still here" {
		t.Fatalf("news got %+v after the disconnect", ev)
	}

	for _, tc := range []struct {
		path, body string
		code       int
		reason     string
	}{
		{"/pubsub/publish?hub=nope", `{"topic":"a","data":"x"}`, 404, `no hub \"nope\"`},
		{"/pubsub/publish?hub=chat", `{"topic":"a/#","data":"x"}`, 400, "message 0"},
		{"/pubsub/publish?hub=chat", `[]`, 400, "publish 1 to 1000 messages"},
		{"/pubsub/publish?hub=chat", `nonsense`, 400, "body"},
		{"/pubsub/disconnect?hub=chat&topic=a/%2B", ``, 400, "topic"},
		{"/pubsub/disconnect?hub=chat", ``, 400, "topic"},
	} {
		if code, body := post(tc.path, tc.body); code != tc.code || !strings.Contains(body, tc.reason) {
			t.Errorf("%s %s: %d %s, want %d with %q", tc.path, tc.body, code, body, tc.code, tc.reason)
		}
	}
	if code, _, _ := testserver.Request(t, http.MethodGet, s.Admin+"/pubsub/publish", "", "", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /pubsub/publish: %d, want 405", code)
	}
}

// With jwt, the admin API ends the subscriptions of one token subject,
// on any topic, and leaves the others.
func TestAdminDisconnectSubject(t *testing.T) {
	const secret = "a-test-secret-of-at-least-32-bytes!"
	s := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		jwt {
			secret `+secret+`
		}
	}
}
`)
	token := func(sub string) http.Header {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "pubsub": map[string]any{"subscribe": []string{"#"}},
		}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Bearer " + tok}}
	}
	alice := testserver.Subscribe(t, nil, s.Base+"/events?topic=a", token("alice"))
	aliceToo := testserver.Subscribe(t, nil, s.Base+"/events?topic=b", token("alice"))
	bob := testserver.Subscribe(t, nil, s.Base+"/events?topic=a", token("bob"))

	code, body, _ := testserver.Request(t, http.MethodPost, s.Admin+"/pubsub/disconnect?subject=alice", "", "", nil)
	if code != 200 || !strings.Contains(body, `"disconnected":2`) {
		t.Fatalf("disconnect alice: %d %s", code, body)
	}
	for _, sub := range []*testserver.SSEStream{alice, aliceToo} {
		sub.ExpectEnd()
	}
	code, body, _ = testserver.Request(t, http.MethodPost, s.Admin+"/pubsub/publish", "application/json", `{"topic":"a","data":"bob stays"}`, nil)
	if code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	if ev := bob.Next(); ev.Data != "bob stays" {
		t.Fatalf("bob got %+v", ev)
	}
}
