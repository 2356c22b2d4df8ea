package observability_test

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/mqtttest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Three subscribers over three transports, five publishes and a slow
// consumer: /metrics (the metrics handler and the admin endpoint) shows
// exactly what happened.
func TestMetricsAfterAScriptedSequence(t *testing.T) {
	s := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /main* {
		hub main
		history 100
		heartbeat 30s
	}
	pubsub /slow* {
		hub slow
		queue 8
		max_message_size 256KiB
		heartbeat 30s
	}
	metrics /metrics
}
`)
	scrapeURL := s.Base + "/metrics"
	main := s.Base + "/main"
	sse := testserver.Subscribe(t, nil, main+"?topic=news/%23", nil)
	ws := testserver.DialWS(t, main+"?topic=news/%23", nil)
	poll := testserver.StartPoll(main, "", "news/last")
	m := testserver.WaitMetric(t, scrapeURL, `caddy_pubsub_subscribers{hub="main",transport="poll"}`, 1)
	m.Want(t, map[string]float64{
		`caddy_pubsub_subscribers{hub="main",transport="sse"}`: 1,
		`caddy_pubsub_subscribers{hub="main",transport="ws"}`:  1,
	})

	var ids []string
	for i, topic := range []string{"news/a", "news/b", "news/a", "news/c", "news/last"} {
		ids = append(ids, testserver.Publish(t, main, url.Values{"topic": {topic}, "data": {fmt.Sprint(i)}}))
	}
	for _, id := range ids {
		if ev := sse.Next(); ev.ID != id {
			t.Fatalf("SSE got %+v, want %s", ev, id)
		}
		if f := ws.NextOf("message"); f.ID != id {
			t.Fatalf("WebSocket got %s, want %s", f.Raw, id)
		}
	}
	if a := poll.Wait(t); len(a.Messages) != 1 || a.Messages[0].ID != ids[4] {
		t.Fatalf("long-poll answered %+v, want %s", a, ids[4])
	}
	// A resume inside history is no gap; one from an ID the hub never
	// issued is.
	testserver.Subscribe(t, nil, main+"?topic=news/%23", http.Header{"Last-Event-ID": {ids[1]}}).Next()
	if ev := testserver.Subscribe(t, nil, main+"?topic=news/%23", http.Header{"Last-Event-ID": {"unknown-1"}}).Next(); ev.Event != "gap" {
		t.Fatalf("resume from an unknown ID: got %+v, want a gap", ev)
	}

	// The slow hub: one subscriber reads nothing and overflows its queue
	// of 8, while another keeps up.
	slowPath := "/slow?topic=firehose"
	slow, err := net.Dial("tcp", s.Base[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n", slowPath)
	fast := testserver.Subscribe(t, nil, s.Base+slowPath, nil)
	testserver.WaitMetric(t, scrapeURL, `caddy_pubsub_subscribers{hub="slow",transport="sse"}`, 2)
	payload := strings.Repeat("x", 64<<10)
	published := 0
	for m[`caddy_pubsub_slow_consumer_disconnects_total{hub="slow"}`] == 0 {
		if published == 1000 {
			t.Fatal("no slow consumer after 1000 messages of 64KiB")
		}
		id := testserver.Publish(t, s.Base+"/slow", url.Values{"topic": {"firehose"}, "data": {payload}})
		if ev := fast.Next(); ev.ID != id {
			t.Fatalf("fast subscriber got %s, want %s", ev.ID, id)
		}
		published++
		if published%10 == 0 {
			m = testserver.Scrape(t, scrapeURL)
		}
	}

	m = testserver.Scrape(t, scrapeURL)
	m.Want(t, map[string]float64{
		`caddy_pubsub_subscribers{hub="main",transport="sse"}`:  3,
		`caddy_pubsub_subscribers{hub="main",transport="ws"}`:   1,
		`caddy_pubsub_subscribers{hub="main",transport="poll"}`: 0,
		`caddy_pubsub_messages_published_total{hub="main"}`:     5,
		// Five to SSE, five to WebSocket, news/last to the long-poll
		// (replays to the resumes not counted).
		`caddy_pubsub_messages_delivered_total{hub="main"}`:                     11,
		`caddy_pubsub_messages_dropped_total{hub="main"}`:                       0,
		`caddy_pubsub_slow_consumer_disconnects_total{hub="main"}`:              0,
		`caddy_pubsub_history_messages{hub="main"}`:                             5,
		`caddy_pubsub_publish_duration_seconds_count{hub="main"}`:               5,
		`caddy_pubsub_presence_events_dropped_total{hub="main"}`:                0,
		`caddy_pubsub_gaps_total{hub="main"}`:                                   1,
		`caddy_pubsub_gaps_total{hub="slow"}`:                                   0,
		`caddy_pubsub_messages_refused_total{hub="main",reason="overloaded"}`:   0,
		`caddy_pubsub_messages_refused_total{hub="main",reason="rate_limited"}`: 0,
		`caddy_pubsub_subscribers{hub="slow",transport="sse"}`:                  1,
		`caddy_pubsub_slow_consumer_disconnects_total{hub="slow"}`:              1,
		`caddy_pubsub_messages_published_total{hub="slow"}`:                     float64(published),
		`caddy_pubsub_publish_duration_seconds_count{hub="slow"}`:               float64(published),
		`caddy_pubsub_history_messages{hub="slow"}`:                             float64(min(published, 1000)),
		`caddy_pubsub_subscribers{hub="slow",transport="ws"}`:                   0,
	})
	// The message that overflowed, and at most the queue's 8 still in it.
	if d := m[`caddy_pubsub_messages_dropped_total{hub="slow"}`]; d < 1 || d > 9 {
		t.Errorf("slow hub dropped %v messages, want 1 to 9", d)
	}
	// Caddy's admin endpoint serves the same registry.
	testserver.Scrape(t, s.Admin+"/metrics").Want(t, map[string]float64{
		`caddy_pubsub_messages_published_total{hub="main"}`:   5,
		`caddy_pubsub_messages_delivered_total{hub="main"}`:   11,
		`caddy_pubsub_subscribers{hub="main",transport="ws"}`: 1,
	})
}

// An MQTT link's state and reconnects show as link metrics and in the
// stats.
func TestMQTTLinkState(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{})
	s := start(t, fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		mqtt %s {
			client_id observability-test
			subscribe sensors/# 0
		}
	}
	metrics /metrics
}
`, b.URL()))
	link := fmt.Sprintf(`{hub="default",kind="mqtt",link="127.0.0.1:%d observability-test"}`, b.LinkPort)
	scrapeURL := s.Base + "/metrics"
	m := testserver.WaitMetric(t, scrapeURL, "caddy_pubsub_link_up"+link, 1)
	m.Want(t, map[string]float64{"caddy_pubsub_link_reconnects_total" + link: 0})
	st := stats(t, s)["default"]
	if len(st.Links) != 1 || st.Links[0].Kind != "mqtt" || st.Links[0].Status != "connected" || !st.Links[0].Up {
		t.Fatalf("stats links: %+v", st.Links)
	}

	b.Down()
	testserver.WaitMetric(t, scrapeURL, "caddy_pubsub_link_up"+link, 0)
	if l := stats(t, s)["default"].Links[0]; l.Up || l.Status == "connected" {
		t.Fatalf("link down, stats say %+v", l)
	}
	b.Up()
	testserver.WaitMetric(t, scrapeURL, "caddy_pubsub_link_up"+link, 1).
		Want(t, map[string]float64{"caddy_pubsub_link_reconnects_total" + link: 1})
}
