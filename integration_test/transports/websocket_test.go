package transports_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Publishing over a WebSocket needs what an HTTP publish needs, judged on
// the upgrade request. A refused publish gets an error frame and the
// connection stays open.
func TestWebSocketPublishAuthorization(t *testing.T) {
	_, ep := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /open* {
	}
	pubsub /keyed* {
		publish_key s3cret-key
	}
}
`)
	base := strings.TrimSuffix(ep, "/events")
	cases := []struct {
		name, path string
		header     http.Header
		reason     string // "" for an ack
	}{
		{"loopback without key", "/open", nil, ""},
		{"loopback behind a proxy header", "/open", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "loopback only"},
		{"key missing", "/keyed", nil, "missing or wrong publish key"},
		{"key wrong", "/keyed", http.Header{"Authorization": {"Bearer nope"}}, "missing or wrong publish key"},
		{"key right", "/keyed", http.Header{"Authorization": {"Bearer s3cret-key"}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testserver.DialWS(t, base+tc.path+"?topic=news", &testserver.WSOptions{Header: tc.header})
			answer, before := c.Request(map[string]any{"type": "publish", "ref": "p1", "topic": "news", "data": "hi"})
			if tc.reason == "" {
				if answer.Type != "ack" || answer.ID == "" {
					t.Fatalf("got %s, want an ack with the ID", answer.Raw)
				}
				// Its own subscription gets the message (before or after the ack).
				if len(before) == 0 {
					before = append(before, c.NextOf("message"))
				}
				if before[0].ID != answer.ID || before[0].Data != "hi" {
					t.Fatalf("own message %s, ack %s", before[0].Raw, answer.Raw)
				}
				return
			}
			if answer.Type != "error" || len(before) != 0 {
				t.Fatalf("got %q then %s, want only an error", received(before), answer.Raw)
			}
			expectContains(t, "error reason", answer.Reason, tc.reason)
			// Still open and subscribed: an HTTP publish reaches it (both
			// endpoints serve the hub "default").
			id := testserver.Publish(t, base+"/open", url.Values{"topic": {"news"}, "data": {"from http"}})
			if f := c.NextOf("message"); f.ID != id {
				t.Fatalf("after the refused publish got %s, want message %s", f.Raw, id)
			}
		})
	}
}

// A frame larger than max_message_size closes the connection with 1009
// (message too big), sent by gorilla's read limit; smaller ones pass.
func TestWebSocketOversizeFrame(t *testing.T) {
	_, ep := start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		max_message_size 1KiB
	}
}
`)
	c := testserver.DialWS(t, ep, nil)
	fits := fmt.Sprintf(`{"type":"publish","ref":1,"topic":"t","data":"%s"}`, strings.Repeat("x", 900))
	c.SendRaw(websocket.TextMessage, []byte(fits))
	if f := c.Next(); f.Type != "ack" {
		t.Fatalf("a 950-byte frame got %s", f.Raw)
	}
	tooBig := fmt.Sprintf(`{"type":"publish","topic":"t","data":"%s"}`, strings.Repeat("x", 2000))
	c.SendRaw(websocket.TextMessage, []byte(tooBig))
	frames, err := c.ExpectClose()
	var ce *websocket.CloseError
	if len(frames) != 0 || !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("after an oversize frame: frames %q, close %v; want close 1009", received(frames), err)
	}
}

// Every malformed frame is answered with an error frame that says why
// (with the frame's ref when it has a valid one); the connection stays
// open and keeps working.
func TestWebSocketMalformedFrames(t *testing.T) {
	_, ep := start(t, site)
	c := testserver.DialWS(t, ep, nil)
	cases := []struct {
		name, frame string
		binary      bool
		ref         string // the ref echoed, "" for none
		reason      string
	}{
		{"not JSON", `hello`, false, "", "invalid frame"},
		{"JSON array", `[1,2]`, false, "", "invalid frame"},
		{"trailing data", `{"type":"subscribe","topics":["a"]} {}`, false, "", "trailing data"},
		{"unknown field", `{"type":"publish","ref":"r1","topic":"a","data":"x","colour":"red"}`, false, `"r1"`, "unknown field"},
		{"no type", `{"ref":7}`, false, "7", `unknown frame type ""`},
		{"unknown type", `{"type":"shout","ref":"r2"}`, false, `"r2"`, `unknown frame type "shout"`},
		{"ref not a string or number", `{"type":"subscribe","ref":{"a":1},"topics":["a"]}`, false, "", "ref must be"},
		{"subscribe without topics", `{"type":"subscribe","ref":"r3"}`, false, `"r3"`, "no topics"},
		{"subscribe with topic", `{"type":"subscribe","ref":"r4","topic":"a"}`, false, `"r4"`, `takes "topics"`},
		{"subscribe bad filter", `{"type":"subscribe","ref":"r5","topics":["a/#/b"]}`, false, `"r5"`, "# must be the last level"},
		{"unsubscribe with last_id", `{"type":"unsubscribe","ref":"r6","topics":["a"],"last_id":"x"}`, false, `"r6"`, "no last_id"},
		{"publish to a wildcard", `{"type":"publish","ref":"r7","topic":"a/+","data":"x"}`, false, `"r7"`, "wildcards"},
		{"publish without topic", `{"type":"publish","ref":"r8","data":"x"}`, false, `"r8"`, "no topic"},
		{"publish reserved event", `{"type":"publish","ref":"r9","topic":"a","event":"gap"}`, false, `"r9"`, "reserved"},
		{"publish both forms", `{"type":"publish","ref":"r10","topic":"a","messages":[{"topic":"a"}]}`, false, `"r10"`, "either"},
		{"publish empty batch", `{"type":"publish","ref":"r11","messages":[]}`, false, `"r11"`, "nothing to publish"},
		{"publish bad message in batch", `{"type":"publish","ref":"r12","messages":[{"topic":"a"},{"topic":""}]}`, false, `"r12"`, "message 1: no topic"},
		{"binary frame without its header length", `{"type":"subscribe","topics":["a"]}`, true, "", "invalid binary frame"},
	}
	for _, tc := range cases {
		kind := websocket.TextMessage
		if tc.binary {
			kind = websocket.BinaryMessage
		}
		c.SendRaw(kind, []byte(tc.frame))
		f := c.NextOf("error")
		if string(f.Ref) != tc.ref || !strings.Contains(f.Reason, tc.reason) {
			t.Errorf("%s: got %s, want reason containing %q and ref %s", tc.name, f.Raw, tc.reason, tc.ref)
		}
	}
	// Nothing was published or subscribed by the bad frames, and the
	// connection still works.
	ack, before := c.Request(map[string]any{"type": "subscribe", "ref": "ok", "topics": []string{"a"}})
	if ack.Type != "ack" || len(before) != 0 {
		t.Fatalf("after malformed frames: %q then %s", received(before), ack.Raw)
	}
	ack, _ = c.Request(map[string]any{"type": "publish", "ref": "batch", "messages": []map[string]string{
		{"topic": "a", "data": "one"}, {"topic": "a", "data": "two"}}})
	if len(ack.IDs) != 2 {
		t.Fatalf("batch publish answered %s", ack.Raw)
	}
	history := testserver.Poll(t, ep, "earliest", "#")
	if len(history.Messages) != 2 || history.Messages[0].ID != ack.IDs[0] {
		t.Fatalf("history holds %+v, want only the batch %v", history.Messages, ack.IDs)
	}
}

// Subscribe and unsubscribe frames change a live connection's topics: a
// message matching several of its topics comes once, the ack marks where a
// change takes effect, and a topic kept across changes loses and repeats
// nothing even while messages flow.
func TestWebSocketLiveSubscribeAndUnsubscribe(t *testing.T) {
	_, ep := start(t, site)
	c := testserver.DialWS(t, ep, nil)
	request := func(frame map[string]any) []testserver.WSFrame {
		t.Helper()
		ack, before := c.Request(frame)
		if ack.Type != "ack" {
			t.Fatalf("%v answered %s", frame, ack.Raw)
		}
		return before
	}

	request(map[string]any{"type": "subscribe", "ref": 1, "topics": []string{"a"}})
	idA := publish(t, ep, "a", "a1")
	expectEqual(t, "after subscribe a", nextMessages(t, c, 1), []string{idA + " a1"})

	// Overlapping topics: one frame per message.
	request(map[string]any{"type": "subscribe", "ref": 2, "topics": []string{"a/#", "b", "a"}})
	want := []string{publish(t, ep, "a", "a2") + " a2", publish(t, ep, "a/x", "ax") + " ax", publish(t, ep, "b", "b1") + " b1"}
	publish(t, ep, "b", "end")
	expectEqual(t, "overlapping topics", received(untilSentinel(t, c, "end")), want)

	// After the unsubscribe ack, no more a/x; a and b go on.
	request(map[string]any{"type": "unsubscribe", "ref": 3, "topics": []string{"a/#", "not-subscribed"}})
	publish(t, ep, "a/x", "gone")
	want = []string{publish(t, ep, "a", "a3") + " a3"}
	publish(t, ep, "b", "end")
	expectEqual(t, "after unsubscribe a/#", received(untilSentinel(t, c, "end")), want)

	// last_id on a later subscribe replays the retained messages of the
	// new topic (not those an existing topic already delivered).
	h1 := publish(t, ep, "h", "h1")
	h2 := publish(t, ep, "h", "h2")
	before := request(map[string]any{"type": "subscribe", "ref": 4, "topics": []string{"h", "b"}, "last_id": "earliest"})
	expectEqual(t, "history of the new topic", received(before), []string{h1 + " h1", h2 + " h2"})

	// Unsubscribing everything stops delivery; subscribing again resumes.
	request(map[string]any{"type": "unsubscribe", "ref": 5, "topics": []string{"a", "b", "h"}})
	publish(t, ep, "a", "unheard")
	request(map[string]any{"type": "subscribe", "ref": 6, "topics": []string{"z"}})
	want = []string{publish(t, ep, "z", "z1") + " z1"}
	expectEqual(t, "after resubscribing", nextMessages(t, c, 1), want)
}

// While a publisher floods topic "a", the subscriber adds and removes
// other topics over and over: it still gets every "a" message exactly
// once, in order.
func TestWebSocketTopicChangesUnderLoad(t *testing.T) {
	_, ep := start(t, site)
	c := testserver.DialWS(t, ep+query("", "a"), nil)
	const n = 300
	var wg sync.WaitGroup
	wg.Add(1)
	ids := make([]string, n)
	var publishErr error
	go func() {
		defer wg.Done()
		for i := range ids {
			if ids[i], publishErr = postForm(ep, "a", fmt.Sprint(i)); publishErr != nil {
				return
			}
		}
	}()
	for i := range 20 {
		kind := "subscribe"
		if i%2 == 1 {
			kind = "unsubscribe"
		}
		c.Send(map[string]any{"type": kind, "ref": i, "topics": []string{"a/#", "other"}})
	}
	var got []string
	acks := 0
	for len(got) < n || acks < 20 {
		switch f := c.Next(); f.Type {
		case "message":
			got = append(got, f.ID+" "+f.Data)
		case "ack":
			acks++
		default:
			t.Fatalf("unexpected frame %s", f.Raw)
		}
	}
	wg.Wait()
	if publishErr != nil {
		t.Fatal(publishErr)
	}
	var want []string
	for i, id := range ids {
		want = append(want, fmt.Sprintf("%s %d", id, i))
	}
	expectEqual(t, "messages of the kept topic", got, want)
}
