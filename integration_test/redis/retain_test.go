package redis_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// `retain metrics/+ 1` on two Caddy processes sharing one Redis: each
// publishes metrics and a chat far beyond history; a new subscriber on
// either gets exactly the latest value of each metric, whichever instance
// published it, and a resume from a value superseded on the other
// instance is told of a gap.
func TestRetainAcrossProcesses(t *testing.T) {
	srv := testserver.StartRedis(t)
	site := fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		history 5
		retain metrics/+ 1
		broker redis %s
	}
}
`, srv.URL)
	a := testserver.Start(t, site)
	b := startChild(t, site)
	eps := []string{a.Base + "/events", b.Base + "/events"}

	ids := map[string][]string{} // by topic
	var metrics []string         // every metric's ID, in order
	publish := func(ep, topic, data string) string {
		id := testserver.Publish(t, ep, url.Values{"topic": {topic}, "data": {data}})
		ids[topic] = append(ids[topic], id)
		metrics = append(metrics, id)
		return id
	}
	latest := func(topic string) string { return ids[topic][len(ids[topic])-1] }
	// The latest of each metric, in ID order.
	cached := func() []string {
		var out []string
		for _, id := range metrics {
			for _, topic := range ids {
				if topic[len(topic)-1] == id {
					out = append(out, id)
				}
			}
		}
		return out
	}
	for round := range 3 {
		for i, topic := range []string{"metrics/a", "metrics/b", "metrics/c", "metrics/a"} {
			ep := eps[(round+i)%2]
			publish(ep, topic, fmt.Sprint(round))
			for j := range 3 {
				testserver.Publish(t, ep, url.Values{"topic": {"chat"}, "data": {fmt.Sprint(j)}})
			}
		}
	}

	for n, ep := range eps {
		sub := testserver.Subscribe(t, nil, ep+"?topic=metrics/%2B&last_id=earliest", nil)
		expect(t, sub, cached(), nil)
		live := publish(eps[1-n], "metrics/d", "live")
		expect(t, sub, []string{live}, nil)
	}

	// metrics/a 0 was superseded by metrics/a 1, published on the other
	// instance: a resume from it missed one.
	superseded := ids["metrics/a"][0]
	resume := testserver.Subscribe(t, nil, eps[1]+"?topic=metrics/a", lastEventID(superseded))
	if ev := resume.Next(); ev.Event != "gap" || !strings.Contains(ev.Data, `"last_id":"`+superseded+`"`) {
		t.Fatalf("resume from a superseded value: got %+v, want a gap", ev)
	}
	expect(t, resume, []string{latest("metrics/a")}, nil)

	// A resume from the latest value missed nothing of its topic, though
	// history dropped chat messages after it.
	upToDate := testserver.Subscribe(t, nil, eps[0]+"?topic=metrics/c", lastEventID(latest("metrics/c")))
	next := testserver.Publish(t, eps[1], url.Values{"topic": {"metrics/c"}, "data": {"next"}})
	expect(t, upToDate, []string{next}, nil)
}
