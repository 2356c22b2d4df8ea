package transports_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// site is the endpoint most tests use: short heartbeat and poll timeout,
// so waits for them stay short.
const site = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		poll_timeout 1s
		history 1000 1h
	}
}
`

// start runs Caddy with site and returns the endpoint URL.
func start(t *testing.T, site string) (*testserver.Server, string) {
	t.Helper()
	s := testserver.Start(t, site)
	return s, s.Base + "/events"
}

// publish posts one message and returns its ID.
func publish(t *testing.T, ep, topic, data string) string {
	t.Helper()
	return testserver.Publish(t, ep, url.Values{"topic": {topic}, "data": {data}})
}

// postForm publishes one message and returns its ID or an error: for
// goroutines other than the test's, which must not call t.Fatal.
func postForm(ep, topic, data string) (string, error) {
	resp, err := http.PostForm(ep, url.Values{"topic": {topic}, "data": {data}})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("publish: status %d, %v", resp.StatusCode, err)
	}
	return out.ID, nil
}

// query builds "?topic=..&topic=..[&last_id=..]" for endpoint URLs.
func query(lastID string, topics ...string) string {
	q := url.Values{"topic": topics}
	if lastID != "" {
		q.Set("last_id", lastID)
	}
	return "?" + q.Encode()
}

// received lists frames as "ID DATA" (messages) or "gap LAST FIRST".
func received(frames []testserver.WSFrame) []string {
	var out []string
	for _, f := range frames {
		switch f.Type {
		case "message":
			out = append(out, f.ID+" "+f.Data)
		case "gap":
			out = append(out, "gap "+f.LastID+" "+f.FirstID)
		default:
			out = append(out, f.Type+" "+f.Raw)
		}
	}
	return out
}

// nextMessages reads n frames from c, which must all be messages, and
// returns them as "ID DATA".
func nextMessages(t *testing.T, c *testserver.WSConn, n int) []string {
	t.Helper()
	var frames []testserver.WSFrame
	for range n {
		frames = append(frames, c.NextOf("message"))
	}
	return received(frames)
}

// untilSentinel reads c's frames up to and including a message whose data
// is sentinel and returns those before it.
func untilSentinel(t *testing.T, c *testserver.WSConn, sentinel string) []testserver.WSFrame {
	t.Helper()
	var frames []testserver.WSFrame
	for {
		f := c.Next()
		if f.Type == "message" && f.Data == sentinel {
			return frames
		}
		frames = append(frames, f)
	}
}

func expectEqual(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func expectContains(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Fatalf("%s: %q does not contain %q", what, got, want)
	}
}

// basicSite is a plain endpoint with a short heartbeat and an hour of
// history.
const basicSite = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		history 100 1h
	}
}
`
