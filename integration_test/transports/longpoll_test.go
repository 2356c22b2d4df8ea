package transports_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A poll with nothing newer waits poll_timeout (1s here) and answers no
// messages with the same last_id; a message published while a poll waits
// answers it at once.
func TestLongPollWaitsThenAnswers(t *testing.T) {
	_, ep := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		poll_timeout 1s
	}
	pubsub /patient* {
		poll_timeout 30s
	}
}
`)
	id := publish(t, ep, "t", "old")
	began := time.Now()
	a := testserver.Poll(t, ep, id, "t")
	waited := time.Since(began)
	if len(a.Messages) != 0 || a.LastID != id || a.Gap {
		t.Fatalf("timed-out poll answered %+v, want no messages and last_id %s", a, id)
	}
	if waited < 900*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("poll answered after %s, want about poll_timeout (1s)", waited)
	}

	// A first poll starts at the hub's head and reads no history, so only
	// a message published once it waits can answer it: publish until one
	// does, long before its 30s poll_timeout.
	patient := strings.TrimSuffix(ep, "/events") + "/patient"
	type result struct {
		a   testserver.PollAnswer
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := testserver.PollContext(context.Background(), patient, "", "t")
		done <- result{a, err}
	}()
	var r result
	var published []string
	testserver.Eventually(t, "the waiting poll answering", func() bool {
		select {
		case r = <-done:
			return true
		default:
			published = append(published, publish(t, ep, "t", "live"))
			return false
		}
	})
	if r.err != nil || len(r.a.Messages) == 0 {
		t.Fatalf("waiting poll answered %+v, %v; want the live message", r.a, r.err)
	}
	last := r.a.Messages[len(r.a.Messages)-1]
	if r.a.LastID != last.ID || !slices.Contains(published, r.a.Messages[0].ID) {
		t.Fatalf("waiting poll answered %+v; published %v", r.a, published)
	}
}

// A first poll without last_id starts from the hub's head, so what is
// published between two polls is not lost; a plain GET is a long-poll.
func TestLongPollFirstPollCursor(t *testing.T) {
	_, ep := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		poll_timeout 1s
	}
	pubsub /empty* {
		hub empty
		poll_timeout 1s
	}
}
`)
	publish(t, ep, "t", "before")
	first := testserver.Poll(t, ep, "", "t")
	if len(first.Messages) != 0 || first.LastID == "" {
		t.Fatalf("first poll: %+v", first)
	}
	id := publish(t, ep, "t", "between polls")
	second := testserver.Poll(t, ep, first.LastID, "t")
	if len(second.Messages) != 1 || second.Messages[0].ID != id || second.LastID != id {
		t.Fatalf("second poll: %+v, want only %s", second, id)
	}

	// Before the hub has any message, the cursor asks for all that comes.
	ep2 := strings.TrimSuffix(ep, "/events") + "/empty"
	empty := testserver.Poll(t, ep2, "", "t")
	id = publish(t, ep2, "t", "first ever")
	if next := testserver.Poll(t, ep2, empty.LastID, "t"); len(next.Messages) != 1 || next.Messages[0].ID != id {
		t.Fatalf("after an empty hub's cursor %q: %+v", empty.LastID, next)
	}
}

// A client that gives up on a waiting poll releases everything the server
// held for it at once, long before poll_timeout (30s here).
func TestLongPollCancelReleasesServerSide(t *testing.T) {
	_, ep := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		poll_timeout 30s
	}
}
`)
	publish(t, ep, "t", "warm up")
	baseline := settledGoroutines(t)

	ctx, cancel := context.WithCancel(context.Background())
	const polls = 5
	errs := make(chan error, polls)
	for range polls {
		go func() {
			_, err := testserver.PollContext(ctx, ep, "", "t")
			errs <- err
		}()
	}
	// Each waiting poll holds a client connection (two goroutines) and a
	// server connection (one): wait until all are in flight.
	testserver.Eventually(t, "polls in flight", func() bool { return runtime.NumGoroutine() >= baseline+3*polls })
	cancel()
	for range polls {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled poll returned %v", err)
		}
	}
	testserver.Eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// settledGoroutines returns runtime.NumGoroutine once it holds still for
// a moment, so what earlier tests left winding down does not skew a
// baseline.
func settledGoroutines(t *testing.T) int {
	t.Helper()
	prev := -1
	testserver.Eventually(t, "goroutine count settling", func() bool {
		n := runtime.NumGoroutine()
		settled := n == prev
		prev = n
		return settled
	})
	return prev
}

// After a restart of a broker that keeps its history (bolt here), a first
// poll's cursor is the newest kept message: the next poll gets what is new
// since, not the whole old history.
func TestLongPollFirstCursorAfterRestart(t *testing.T) {
	site := fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		poll_timeout 1s
		broker bolt %s
	}
}
`, filepath.Join(t.TempDir(), "pubsub.db"))
	s, ep := start(t, site)
	old := publish(t, ep, "t", "before the restart")

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	s.Load(site)
	first := testserver.Poll(t, ep, "", "t")
	if len(first.Messages) != 0 || first.LastID != old {
		t.Fatalf("first poll after restart: %+v, want cursor %s", first, old)
	}
	id := publish(t, ep, "t", "after the restart")
	if next := testserver.Poll(t, ep, first.LastID, "t"); len(next.Messages) != 1 || next.Messages[0].ID != id {
		t.Fatalf("second poll: %+v, want only %s", next, id)
	}
}

// A HEAD answers at once with the hub's position in Pubsub-Last-Id, also
// to a page cors allows (which may read it); a poll from there gets what
// was published after the HEAD, before the poll began.
func TestHeadGivesTheCursor(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		cors https://app.example.com
	}
}
`)
	ep := s.Base + "/events?topic=t"
	before := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"t"}, "data": {"before"}})
	code, body, h := testserver.Request(t, http.MethodHead, ep, "", "", http.Header{"Origin": {"https://app.example.com"}})
	if code != 200 || body != "" || h.Get("Pubsub-Last-Id") != before {
		t.Fatalf("HEAD: %d %q, Pubsub-Last-Id %q; want 200, no body, %s", code, body, h.Get("Pubsub-Last-Id"), before)
	}
	if !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Pubsub-Last-Id") {
		t.Fatalf("the header is not exposed to the allowed page: %v", h)
	}
	between := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"t"}, "data": {"between"}})
	code, body, h = testserver.Request(t, http.MethodGet, ep+"&last_id="+url.QueryEscape(h.Get("Pubsub-Last-Id")), "", "", nil)
	if code != 200 || !strings.Contains(body, `"data":"between"`) || strings.Contains(body, `"data":"before"`) || h.Get("Pubsub-Last-Id") != between {
		t.Fatalf("poll from the HEAD's cursor: %d %s, Pubsub-Last-Id %q", code, body, h.Get("Pubsub-Last-Id"))
	}
}
