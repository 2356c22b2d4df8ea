package bolt_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Replay cost: with thousands of large retained messages, a resume that
// matches none of them, or a first long-poll on a restarted hub, must not
// read the history into memory. Caddy runs in this process, so the bytes
// it allocates per request show what a request read.
func TestReplayDoesNotCopyHistory(t *testing.T) {
	const messages, size = 3000, 8 << 10
	history := messages * size
	path := filepath.Join(t.TempDir(), "pubsub.db")
	site := fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		history 10000 1h
		max_message_size 1MiB
		broker bolt %s
	}
}
`, path)
	s := testserver.Start(t, site)
	ep := s.Base + "/events"
	testserver.Fill(t, ep, "t", messages, size)

	// At most a twentieth of one copy of the history per request.
	limit := uint64(history / 20)
	perRequest := func(what, query string) {
		t.Helper()
		alloc, cpu := testserver.HeadCost(t, ep+"?"+query, 100, 10)
		t.Logf("%s: %d KiB allocated, %s CPU per request (history %d MiB)", what, alloc>>10, cpu, history>>20)
		if alloc > limit {
			t.Errorf("%s: %d KiB allocated per request, want at most %d KiB: the history was read", what, alloc>>10, limit>>10)
		}
	}
	perRequest("resume matching nothing", "topic=nomatch&last_id=earliest")

	restart(t, s, site)
	perRequest("first long-poll after restart", "topic=nomatch")
	perRequest("resume matching nothing after restart", "topic=nomatch&last_id=earliest")

	// The history is still all there, in order, for a topic that matches.
	a := testserver.Poll(t, ep, "earliest", "t")
	if len(a.Messages) != 100 || a.Messages[0].Data[:8] != "00000000" {
		t.Fatalf("poll from earliest: %d messages, want the first 100", len(a.Messages))
	}
}
