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
	testserver.ExpectCheapReplays(t, s.Base+"/events", func() { restart(t, s, site) })
}
