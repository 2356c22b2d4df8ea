package fanout_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// site has a one-second heartbeat and no other setting.
const site = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
	}
}
`

// nextComment waits for st's next comment and returns when it came.
func nextComment(st *testserver.SSEStream) (time.Time, error) {
	deadline := time.After(testserver.Wait)
	for {
		select {
		case ev, ok := <-st.Events():
			if !ok {
				return time.Time{}, errors.New("stream ended")
			}
			if ev.IsComment {
				return time.Now(), nil
			}
		case <-deadline:
			return time.Time{}, fmt.Errorf("no heartbeat within %s", testserver.Wait)
		}
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

// readUntil returns a reader that stops after marker has been read.
func readUntil(r io.Reader, marker string) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		var seen []byte
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Read(buf)
			pw.Write(buf[:n])
			seen = append(seen, buf[:n]...)
			if strings.Contains(string(seen), marker) || err != nil {
				pw.Close()
				return
			}
			// Keep enough to find a marker split across reads.
			seen = seen[max(0, len(seen)-len(marker)):]
		}
	}()
	return pr
}

// tail returns the end of b, for failure messages.
func tail(b []byte) string {
	if len(b) > 200 {
		b = b[len(b)-200:]
	}
	return string(b)
}
