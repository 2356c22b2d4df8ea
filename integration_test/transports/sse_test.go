package transports_test

import (
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"

	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A publisher posts to exact topics; subscribers on exact and wildcard
// filters each get exactly the messages they match, in order.
func TestPublishReachesExactAndWildcardSubscribers(t *testing.T) {
	s := testserver.Start(t, basicSite)
	ep := s.Base + "/events"

	exact := testserver.Subscribe(t, nil, ep+"?topic=chat/a", nil)
	plus := testserver.Subscribe(t, nil, ep+"?topic=chat/%2B", nil)
	hash := testserver.Subscribe(t, nil, ep+"?topic=chat/%23", nil)
	two := testserver.Subscribe(t, nil, ep+"?topic=chat/a&topic=news/b", nil)
	other := testserver.Subscribe(t, nil, ep+"?topic=other", nil)

	id1 := testserver.Publish(t, ep, url.Values{"topic": {"chat/a"}, "data": {"one"}})
	id2 := testserver.Publish(t, ep, url.Values{"topic": {"chat/b"}, "data": {"two"}})
	id3 := testserver.Publish(t, ep, url.Values{"topic": {"chat/a/deep"}, "data": {"three"}})
	id4 := testserver.Publish(t, ep, url.Values{"topic": {"news/b"}, "data": {"four"}})
	idEnd := testserver.Publish(t, ep, url.Values{"topic": {"other"}, "data": {"end"}})

	want := map[*testserver.SSEStream][]string{
		exact: {id1 + " one"},
		plus:  {id1 + " one", id2 + " two"},
		hash:  {id1 + " one", id2 + " two", id3 + " three"},
		two:   {id1 + " one", id4 + " four"},
		other: {idEnd + " end"},
	}
	for sub, msgs := range want {
		for _, w := range msgs {
			ev := sub.Next()
			if got := ev.ID + " " + ev.Data; got != w {
				t.Errorf("got %q, want %q", got, w)
			}
		}
	}
	// Nothing else arrived before the sentinel: publish it to every
	// subscriber's topic and expect it next.
	testserver.Publish(t, ep, url.Values{"topic": {"chat/a"}, "data": {"sentinel"}})
	for _, sub := range []*testserver.SSEStream{exact, plus, hash, two} {
		if ev := sub.Next(); ev.Data != "sentinel" {
			t.Errorf("unexpected extra event %+v", ev)
		}
	}
}

// IDs increase in publish order, multi-line data arrives line by line, an
// event name becomes the SSE event field, and ?format=json wraps messages
// in an envelope that carries the topic.
func TestSSEFraming(t *testing.T) {
	s := testserver.Start(t, basicSite)
	ep := s.Base + "/events"
	plain := testserver.Subscribe(t, nil, ep+"?topic=t", nil)
	enveloped := testserver.Subscribe(t, nil, ep+"?topic=t&format=json", nil)

	code, body, _ := testserver.Request(t, "POST", ep, "application/json",
		`[{"topic":"t","data":"line1\nline2\r\nline3","event":"note"},{"topic":"t","data":{"temp":21.5}}]`, nil)
	if code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	var ids struct{ IDs []string }
	if err := json.Unmarshal([]byte(body), &ids); err != nil || len(ids.IDs) != 2 {
		t.Fatalf("publish answer %q", body)
	}

	ev := plain.Next()
	if ev.ID != ids.IDs[0] || ev.Event != "note" || ev.Data != "line1\nline2\nline3" {
		t.Errorf("multi-line event: %+v", ev)
	}
	if ev := plain.Next(); ev.ID != ids.IDs[1] || ev.Data != `{"temp":21.5}` {
		t.Errorf("JSON data event: %+v", ev)
	}

	ev = enveloped.Next()
	var env struct{ ID, Topic, Event, Data, Time string }
	if err := json.Unmarshal([]byte(ev.Data), &env); err != nil {
		t.Fatalf("envelope %q: %v", ev.Data, err)
	}
	if ev.Event != "" || env.ID != ids.IDs[0] || env.Topic != "t" || env.Event != "note" || env.Data != "line1\nline2\r\nline3" || env.Time == "" {
		t.Errorf("envelope: %+v from %+v", env, ev)
	}
}

// A subscriber that drops resumes from its last ID (Last-Event-ID header
// or ?last_id=) and gets exactly what it missed; the header wins over the
// query, since a reconnecting EventSource reuses its URL.
func TestResumeAfterDisconnect(t *testing.T) {
	s := testserver.Start(t, basicSite)
	ep := s.Base + "/events"
	first := testserver.Subscribe(t, nil, ep+"?topic=r", nil)
	var ids []string
	for i := range 3 {
		ids = append(ids, testserver.Publish(t, ep, url.Values{"topic": {"r"}, "data": {fmt.Sprint(i)}}))
	}
	for i := range 3 {
		if ev := first.Next(); ev.ID != ids[i] {
			t.Fatalf("live: got %+v, want id %s", ev, ids[i])
		}
	}
	first.Close()
	for i := 3; i < 6; i++ {
		ids = append(ids, testserver.Publish(t, ep, url.Values{"topic": {"r"}, "data": {fmt.Sprint(i)}}))
	}
	testserver.Publish(t, ep, url.Values{"topic": {"elsewhere"}, "data": {"not for r"}})

	check := func(name string, sub *testserver.SSEStream, want []string) {
		t.Helper()
		for _, id := range want {
			if ev := sub.Next(); ev.ID != id {
				t.Fatalf("%s: got %+v, want id %s", name, ev, id)
			}
		}
		last := testserver.Publish(t, ep, url.Values{"topic": {"r"}, "data": {"live"}})
		if ev := sub.Next(); ev.ID != last {
			t.Fatalf("%s: after the backlog got %+v, want the live message %s", name, ev, last)
		}
		ids = append(ids, last)
		sub.Close()
	}
	check("header", testserver.Subscribe(t, nil, ep+"?topic=r", http.Header{"Last-Event-Id": {ids[2]}}), ids[3:6])
	check("query", testserver.Subscribe(t, nil, ep+"?topic=r&last_id="+ids[5], nil), ids[6:7])
	check("header wins", testserver.Subscribe(t, nil, ep+"?topic=r&last_id=earliest", http.Header{"Last-Event-Id": {ids[6]}}), ids[7:8])
	check("earliest", testserver.Subscribe(t, nil, ep+"?topic=r&last_id=earliest", nil), ids)
}

// A client resuming from an ID history no longer covers is told with a gap
// event, then gets what is still retained.
func TestGapWhenHistoryNoLongerCoversTheID(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		history 3
	}
}
`)
	ep := s.Base + "/events"
	var ids []string
	for i := range 10 {
		ids = append(ids, testserver.Publish(t, ep, url.Values{"topic": {"g"}, "data": {fmt.Sprint(i)}}))
	}

	sub := testserver.Subscribe(t, nil, ep+"?topic=g", http.Header{"Last-Event-Id": {ids[1]}})
	ev := sub.Next()
	var gap struct {
		LastID  string `json:"last_id"`
		FirstID string `json:"first_id"`
	}
	if ev.Event != "gap" || json.Unmarshal([]byte(ev.Data), &gap) != nil || gap.LastID != ids[1] || gap.FirstID != ids[7] {
		t.Fatalf("want gap from %s to %s, got %+v", ids[1], ids[7], ev)
	}
	if ev.ID != "" {
		t.Errorf("a gap followed by replayed messages must not move the cursor: %+v", ev)
	}
	for _, id := range ids[7:] {
		if ev := sub.Next(); ev.ID != id {
			t.Fatalf("after gap got %+v, want %s", ev, id)
		}
	}

	// An ID from another hub incarnation is a gap too.
	foreign := testserver.Subscribe(t, nil, ep+"?topic=nothing-here", http.Header{"Last-Event-Id": {"0000beef-5"}})
	ev = foreign.Next()
	if ev.Event != "gap" || !strings.Contains(ev.Data, `"last_id":"0000beef-5"`) {
		t.Fatalf("foreign ID: want gap, got %+v", ev)
	}
	if ev.ID != ids[9] {
		t.Errorf("a gap with nothing to replay moves the cursor to the head %s: %+v", ids[9], ev)
	}

	// Resuming from the last evicted ID is not a gap.
	exact := testserver.Subscribe(t, nil, ep+"?topic=g", http.Header{"Last-Event-Id": {ids[6]}})
	if ev := exact.Next(); ev.ID != ids[7] || ev.Event == "gap" {
		t.Fatalf("resume from last evicted: got %+v, want %s", ev, ids[7])
	}
}

// An idle stream gets a heartbeat comment every heartbeat interval, after
// the retry hint.
func TestHeartbeatAndRetry(t *testing.T) {
	s := testserver.Start(t, basicSite)
	req, _ := http.NewRequest("GET", s.Base+"/events?topic=quiet", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"); ct != "text/event-stream" || !strings.Contains(cc, "no-transform") {
		t.Errorf("headers: Content-Type %q, Cache-Control %q", ct, cc)
	}
	first := make([]byte, len("retry: 2000\n\n"))
	if _, err := resp.Body.Read(first); err != nil || string(first) != "retry: 2000\n\n" {
		t.Fatalf("stream starts with %q (%v)", first, err)
	}
	resp.Body.Close()

	sub := testserver.Subscribe(t, nil, s.Base+"/events?topic=quiet", nil)
	for range 2 {
		if ev := sub.NextAny(); !ev.IsComment {
			t.Fatalf("want only heartbeats on an idle topic, got %+v", ev)
		}
	}
}
