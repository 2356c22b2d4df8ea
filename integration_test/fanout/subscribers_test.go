package fanout_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A subscriber that goes away is removed at once: its goroutines end.
func TestDisconnectedSubscribersAreReleased(t *testing.T) {
	s := testserver.Start(t, basicSite)
	ep := s.Base + "/events?topic=leak"
	warm := testserver.Subscribe(t, nil, ep, nil)
	warm.Close()
	baseline := runtime.NumGoroutine()

	var subs []*testserver.SSEStream
	for range 50 {
		subs = append(subs, testserver.Subscribe(t, nil, ep, nil))
	}
	testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"leak"}, "data": {"x"}})
	for _, sub := range subs {
		sub.Next()
	}
	if n := runtime.NumGoroutine(); n < baseline+50 {
		t.Fatalf("expected goroutines for 50 streams: %d -> %d", baseline, n)
	}
	for _, sub := range subs {
		sub.Close()
	}
	testserver.Eventually(t, "goroutines back to baseline", func() bool {
		return runtime.NumGoroutine() <= baseline+2
	})
}

// A subscriber that stops reading is disconnected with a reason once its
// queue overflows, and never holds back the others.
func TestSlowConsumerIsDroppedOthersUnaffected(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		queue 8
		max_message_size 1MiB
		presence
	}
}
`)
	// The slow subscription's end is announced: publishing stops there.
	// With batches of 6, which the fast subscriber's queue of 8 holds, a
	// batch or two overflow the slow one's queue once its socket is full,
	// so the slow client starts reading well within the write timeout (10
	// s) after that, however slowly a loaded machine publishes.
	ended := testserver.Subscribe(t, nil, s.Base+"/events?topic=$pubsub/unsubscribe", nil)
	path := "/events?topic=firehose"
	// The slow client sends its request and then reads nothing: socket
	// buffers fill, the server's writer blocks, the queue overflows.
	slow, err := net.Dial("tcp", s.Base[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n", path)
	fast := testserver.Subscribe(t, nil, s.Base+path, nil)
	// Wait until the slow client's stream is up: it gets the first message.
	message := `{"topic":"firehose","data":"` + strings.Repeat("x", 64<<10) + `"}`
	batch := "[" + strings.Repeat(message+",", 5) + message + "]"
publishing:
	for range 67 {
		testserver.PublishInStep(t, s.Base+"/events", batch, fast)
		select {
		case <-ended.Events():
			break publishing
		default:
		}
	}
	// Everything the slow client will ever get, then the reason.
	slow.SetReadDeadline(time.Now().Add(testserver.Wait))
	got, _ := io.ReadAll(io.LimitReader(readUntil(slow, "closed: slow consumer"), 64<<20))
	if !strings.Contains(string(got), ": closed: slow consumer") {
		t.Fatalf("slow subscriber's stream ends with %q, want the slow consumer reason", tail(got))
	}
	if n := strings.Count(string(got), "\nid: "); n >= 6*67 {
		t.Fatalf("slow subscriber got all %d messages: it was never slow", n)
	}
}

// A thousand concurrent subscribers each receive every message, in order.
func TestThousandSubscribersReceiveEverythingInOrder(t *testing.T) {
	s := testserver.Start(t, basicSite)
	const subscribers, messages = 1000, 20
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	subs := make([]*testserver.SSEStream, subscribers)
	for i := range subs {
		subs[i] = testserver.Subscribe(t, client, s.Base+"/events?topic=crowd/%2B", nil)
	}
	ids := make([]string, messages)
	for i := range ids {
		ids[i] = testserver.Publish(t, s.Base+"/events", url.Values{"topic": {fmt.Sprintf("crowd/%d", i%3)}, "data": {fmt.Sprint(i)}})
	}
	errs := make(chan error, subscribers)
	for _, sub := range subs {
		go func() {
			deadline := time.After(testserver.Wait)
			for i := 0; i < len(ids); {
				select {
				case ev, ok := <-sub.Events():
					switch {
					case !ok:
						errs <- fmt.Errorf("stream ended after %d messages", i)
						return
					case ev.IsComment:
					case ev.ID != ids[i] || ev.Data != fmt.Sprint(i):
						errs <- fmt.Errorf("message %d: got %+v, want %s", i, ev, ids[i])
						return
					default:
						i++
					}
				case <-deadline:
					errs <- fmt.Errorf("message %d: not within %s", i, testserver.Wait)
					return
				}
			}
			errs <- nil
		}()
	}
	for range subscribers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
