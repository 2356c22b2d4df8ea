package transports_test

import (
	"net/http"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// resumer resumes a subscription on topic "t" from lastID and returns what
// it got: messages as "ID DATA", after a gap line when there was a gap.
type resumer func(t *testing.T, ep, lastID string) []string

// Each transport resumes the same way from the same IDs: what history
// still holds after the ID, or a gap and what it still holds when the ID
// is too old or unknown.
func TestResumeAndGapOnEveryTransport(t *testing.T) {
	transports := []struct {
		name   string
		resume resumer
	}{
		{"websocket", func(t *testing.T, ep, lastID string) []string {
			c := testserver.DialWS(t, ep+query(lastID, "t"), nil)
			publish(t, ep, "t", "sentinel")
			return received(untilSentinel(t, c, "sentinel"))
		}},
		{"sse", func(t *testing.T, ep, lastID string) []string {
			s := testserver.Subscribe(t, nil, ep+query("", "t"), http.Header{"Last-Event-Id": {lastID}})
			publish(t, ep, "t", "sentinel")
			var out []string
			for {
				ev := s.Next()
				switch {
				case ev.Data == "sentinel":
					return out
				case ev.Event == "gap":
					out = append(out, "gap "+ev.Data)
				default:
					out = append(out, ev.ID+" "+ev.Data)
				}
			}
		}},
		{"long-poll", func(t *testing.T, ep, lastID string) []string {
			a := testserver.Poll(t, ep, lastID, "t")
			var out []string
			if a.Gap {
				out = append(out, "gap")
			}
			for _, m := range a.Messages {
				out = append(out, m.ID+" "+m.Data)
			}
			return out
		}},
	}
	const historyOf3 = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		history 3
		poll_timeout 1s
	}
}
`
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			// A fresh hub for each case: sentinels take history slots too.
			setup := func(t *testing.T) (ep string, ids, msgs []string) {
				_, ep = start(t, historyOf3)
				for _, d := range []string{"p1", "p2", "p3", "p4", "p5"} {
					id := publish(t, ep, "t", d)
					ids = append(ids, id)
					msgs = append(msgs, id+" "+d)
				}
				return ep, ids, msgs
			}
			gap := func(last, first string) string {
				switch tr.name {
				case "sse":
					return `gap {"last_id":"` + last + `","first_id":"` + first + `"}`
				case "websocket":
					return "gap " + last + " " + first
				}
				return "gap"
			}
			cases := []struct {
				name   string
				lastID func(ids []string) string
				want   func(ids, msgs []string) []string
			}{
				{"from p3", func(ids []string) string { return ids[2] },
					func(_, msgs []string) []string { return msgs[3:] }},
				{"from p5, the latest", func(ids []string) string { return ids[4] },
					func(_, _ []string) []string { return nil }},
				{"from p1, no longer retained", func(ids []string) string { return ids[0] },
					func(ids, msgs []string) []string { return append([]string{gap(ids[0], ids[2])}, msgs[2:]...) }},
				{"from an ID of another hub", func([]string) string { return "0badbeef-1" },
					func(ids, msgs []string) []string { return append([]string{gap("0badbeef-1", ids[2])}, msgs[2:]...) }},
				{"earliest", func([]string) string { return "earliest" },
					func(_, msgs []string) []string { return msgs[2:] }},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					ep, ids, msgs := setup(t)
					expectEqual(t, "resumed", tr.resume(t, ep, tc.lastID(ids)), tc.want(ids, msgs))
				})
			}
		})
	}
}

// A long-poll answers at most 100 messages; its last_id continues where it
// stopped, so consecutive polls get everything once.
func TestLongPollPagesThroughHistory(t *testing.T) {
	_, ep := start(t, site)
	cursor := testserver.Poll(t, ep, "", "t").LastID
	var want []string
	for i := range 150 {
		d := "m" + string(rune('a'+i%26))
		want = append(want, publish(t, ep, "t", d)+" "+d)
	}
	first := testserver.Poll(t, ep, cursor, "t")
	second := testserver.Poll(t, ep, first.LastID, "t")
	if len(first.Messages) != 100 || first.LastID != first.Messages[99].ID {
		t.Fatalf("first page: %d messages, last_id %s", len(first.Messages), first.LastID)
	}
	var got []string
	for _, m := range append(first.Messages, second.Messages...) {
		got = append(got, m.ID+" "+m.Data)
	}
	expectEqual(t, "two pages", got, want)
	if second.LastID != second.Messages[len(second.Messages)-1].ID || first.Gap || second.Gap {
		t.Fatalf("second page: last_id %s, gaps %v %v", second.LastID, first.Gap, second.Gap)
	}
}
