package auth_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// With the README's log filter, the access log keeps the request but no
// token: ?access_token= is deleted from the URI, and Caddy redacts the
// Authorization and Cookie headers itself.
func TestAccessLogKeepsTokensOut(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	ep := startHMAC(t, `
http://127.0.0.1:{PORT} {
	log {
		output file `+logFile+`
		format filter {
			request>uri query {
				delete access_token
			}
		}
	}
	pubsub /events* {
		poll_timeout 1s
		jwt {
			secret {env.`+secretEnv+`}
			cookie pubsub_token
		}
	}
}
`)
	queryToken, headerToken, cookieToken := chatReader(t), hs(t, grants{Subscribe: []string{"chat/#"}}), hs(t, grants{Subscribe: []string{"news/+"}})
	id, writer := publishWithToken(t, ep)
	for _, r := range []struct {
		url    string
		header http.Header
	}{
		{ep + q("topic", "chat/a", "last_id", "earliest", "access_token", queryToken), nil},
		{ep + q("topic", "chat/a", "last_id", "earliest"), bearer(headerToken)},
		{ep + q("topic", "news/a", "last_id", id), cookie(cookieToken)},
	} {
		// HEAD: a long-poll that answers at once.
		if code, body, _ := testserver.Request(t, http.MethodHead, r.url, "", "", r.header); code != http.StatusOK {
			t.Fatalf("poll: %d %s", code, body)
		}
	}

	var log string
	testserver.Eventually(t, "four access log entries", func() bool {
		b, _ := os.ReadFile(logFile)
		log = string(b)
		return strings.Count(log, `"uri":`) >= 4
	})
	for name, token := range map[string]string{"publish": writer, "query": queryToken, "header": headerToken, "cookie": cookieToken} {
		if strings.Contains(log, token) {
			t.Errorf("the %s token is in the access log:\n%s", name, log)
		}
	}
	if strings.Contains(log, "access_token") || !strings.Contains(log, "topic=chat%2Fa") {
		t.Fatalf("access log URIs are not filtered as expected:\n%s", log)
	}
}

// publishWithToken publishes to news/a with a token in the query, the
// first access log entry, and returns the ID and the token.
func publishWithToken(t *testing.T, ep string) (id, token string) {
	t.Helper()
	writer := hs(t, grants{Publish: []string{"news/+"}})
	code, body := publishAs(t, ep+q("access_token", writer), nil, "news/a", "x")
	if code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	return strings.TrimSuffix(strings.TrimPrefix(body, `{"id":"`), `"}`), writer
}
