package retain_test

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// brokers are the lines that choose each broker, which all keep rules;
// the redis one starts a redis-server for the test.
var brokers = map[string]func(t *testing.T) string{
	"memory": func(*testing.T) string { return "" },
	"bolt":   func(t *testing.T) string { return "broker bolt " + filepath.Join(t.TempDir(), "history.db") },
	"redis":  func(t *testing.T) string { return "broker redis " + testserver.StartRedis(t).URL },
}

// `retain metrics/+ 1` beside a history of 5: a last-value cache that a
// busy chat does not push out, on each broker.
func TestLastValueCache(t *testing.T) {
	for name, broker := range brokers {
		t.Run(name, func(t *testing.T) { testLastValueCache(t, broker(t)) })
	}
}

func testLastValueCache(t *testing.T, broker string) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		history 5
		retain metrics/+ 1
		`+broker+`
	}
}
`)
	ep := s.Base + "/events"
	publish := func(topic string, data any) string {
		return testserver.Publish(t, ep, url.Values{"topic": {topic}, "data": {fmt.Sprint(data)}})
	}
	ids := map[string][]string{}
	for i := range 4 {
		for _, topic := range []string{"metrics/a", "metrics/b"} {
			ids[topic] = append(ids[topic], publish(topic, i))
		}
		for j := range 10 {
			publish("chat", j) // far more than history keeps
		}
	}

	// A new subscriber gets the latest of each metric at once, and
	// nothing the rule dropped.
	sub := testserver.Subscribe(t, nil, ep+"?topic=metrics/%2B&last_id=earliest", nil)
	for _, want := range []string{ids["metrics/a"][3], ids["metrics/b"][3]} {
		if ev := sub.Next(); ev.ID != want || ev.Event == "gap" {
			t.Fatalf("last-value replay: got %+v, want %s", ev, want)
		}
	}
	live := publish("metrics/c", "live")
	if ev := sub.Next(); ev.ID != live {
		t.Fatalf("after the cached values: got %+v, want the live %s", ev, live)
	}

	// A resume from a value that has been superseded twice since missed
	// one: it gets a gap, then the latest.
	resume := testserver.Subscribe(t, nil, ep+"?topic=metrics/a", http.Header{"Last-Event-Id": {ids["metrics/a"][1]}})
	if ev := resume.Next(); ev.Event != "gap" || !strings.Contains(ev.Data, `"last_id":"`+ids["metrics/a"][1]+`"`) {
		t.Fatalf("resume after a superseded value: got %+v, want a gap", ev)
	}
	if ev := resume.Next(); ev.ID != ids["metrics/a"][3] {
		t.Fatalf("after the gap: got %+v, want %s", ev, ids["metrics/a"][3])
	}

	// A resume from the latest value missed nothing of its topic: no
	// gap, though history dropped chat messages published after it.
	upToDate := testserver.Subscribe(t, nil, ep+"?topic=metrics/b", http.Header{"Last-Event-Id": {ids["metrics/b"][3]}})
	next := publish("metrics/b", "next")
	if ev := upToDate.Next(); ev.ID != next {
		t.Fatalf("resume from the latest value: got %+v, want the live %s", ev, next)
	}
}

// A rule is checked where it is written.
func TestRetainRefused(t *testing.T) {
	site := func(lines string) string {
		return "http://127.0.0.1:{PORT} {\n\tpubsub /events* {\n\t\t" + lines + "\n\t}\n}\n"
	}
	at := fmt.Sprintf("Caddyfile:%d", strings.Count(testserver.GlobalOptions, "\n")+3)
	for line, want := range map[string]string{
		"retain metrics/#/x 1":  "# must be the last level",
		"retain metrics/+ one":  `count "one" is not a number`,
		"retain metrics/+ 1 1x": `age "1x"`,
	} {
		_, err := testserver.Adapt(strings.ReplaceAll(site(line), "{PORT}", "1"))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), at) {
			t.Errorf("%s: %v; want %q at %s", line, err, want, at)
		}
	}
}

// A reload that adds a rule applies it to the messages the hub kept, and
// keeps its subscribers, on each broker.
func TestReloadAppliesRules(t *testing.T) {
	for name, broker := range brokers {
		t.Run(name, func(t *testing.T) { testReloadAppliesRules(t, broker(t)) })
	}
}

func testReloadAppliesRules(t *testing.T, broker string) {
	site := func(lines string) string {
		return "http://127.0.0.1:{PORT} {\n\tpubsub /events* {\n\t\thistory 100\n\t\t" + broker + "\n\t\t" + lines + "\n\t}\n}\n"
	}
	s := testserver.Start(t, site(""))
	ep := s.Base + "/events"
	var ids []string
	for i := range 3 {
		ids = append(ids, testserver.Publish(t, ep, url.Values{"topic": {"metrics/a"}, "data": {fmt.Sprint(i)}}))
	}
	sub := testserver.Subscribe(t, nil, ep+"?topic=metrics/a", nil)

	s.Load(site("retain metrics/+ 1"))
	fresh := testserver.Subscribe(t, nil, ep+"?topic=metrics/%2B&last_id=earliest", nil)
	if ev := fresh.Next(); ev.ID != ids[2] {
		t.Fatalf("after the reload, a new subscriber got %+v first, want only the latest %s", ev, ids[2])
	}
	live := testserver.Publish(t, ep, url.Values{"topic": {"metrics/a"}, "data": {"live"}})
	for name, stream := range map[string]*testserver.SSEStream{"new": fresh, "from before the reload": sub} {
		if ev := stream.Next(); ev.ID != live {
			t.Fatalf("subscriber %s: got %+v, want the live %s", name, ev, live)
		}
	}
}
