package brokertest

// Clauses on a hub's resume over the broker: backlog and live messages,
// within one page and across pages, lose and repeat nothing.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// testHubResume runs the broker under a Hub: subscribers that resume while
// messages keep coming get each message after their last ID exactly once,
// whether it comes from history or live.
func testHubResume(t *testing.T, newBroker NewBroker) {
	const n = 150
	h := hub.New(newBroker(t, hub.Retention{Count: 1000}), hub.Options{Queue: 2 * n, Retention: hub.Retention{Count: 1000}})
	t.Cleanup(func() { _ = h.Close() })
	if err := h.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	fromStart := resume(t, h, hub.Earliest)

	var ids []string
	var resumed []*resumer
	for i := range n {
		got, err := h.Publish(ctx(t), hub.Message{Topic: "t", Data: strconv.Itoa(i)})
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
		ids = append(ids, got...)
		if i%25 == 10 {
			resumed = append(resumed, resume(t, h, ids[i-7]))
		}
	}
	fromStart.expect(t, ids)
	for _, r := range resumed {
		k := slices.Index(ids, r.lastID)
		r.expect(t, ids[k+1:])
	}
}

// testHubResumePages resumes over more history than one page holds while
// messages keep coming: the pages and the live messages together are each
// message after the resume point exactly once.
func testHubResumePages(t *testing.T, newBroker NewBroker) {
	const before, during = 3*hub.ReplayPage + 5, 50
	h := hub.New(newBroker(t, hub.Retention{Count: 2000}), hub.Options{Queue: 4 * during, Retention: hub.Retention{Count: 2000}})
	t.Cleanup(func() { _ = h.Close() })
	if err := h.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var ids []string
	for i := 0; i < before; i += 50 {
		msgs := make([]hub.Message, min(50, before-i))
		for j := range msgs {
			msgs[j] = hub.Message{Topic: fmt.Sprintf("t/%d", (i+j)%2), Data: strconv.Itoa(i + j)}
		}
		got, err := h.Publish(ctx(t), msgs...)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		ids = append(ids, got...)
	}
	// Wait for the hub to have delivered them all: Subscribe replays up to
	// what it delivered.
	probe := resume(t, h, ids[len(ids)-2])
	probe.expect(t, ids[len(ids)-1:])

	sub, backlog, gap, err := h.Subscribe(ctx(t), []string{"t/0"}, ids[2])
	if err != nil || gap != nil {
		t.Fatalf("Subscribe: %v, gap %+v", err, gap)
	}
	t.Cleanup(sub.Close)
	if len(backlog) != hub.ReplayPage || !sub.Replaying() {
		t.Fatalf("first page: %d messages, replaying %v; want %d and more to come", len(backlog), sub.Replaying(), hub.ReplayPage)
	}
	published := make(chan []string, 1)
	go func() {
		var more []string
		for i := range during {
			got, err := h.Publish(context.Background(), hub.Message{Topic: "t/0", Data: "live " + strconv.Itoa(i)})
			if err != nil {
				t.Errorf("Publish: %v", err)
				break
			}
			more = append(more, got...)
		}
		published <- more
	}()
	got := idsOf(backlog)
	for sub.Replaying() {
		page, gap, err := sub.Replay(ctx(t))
		if err != nil || gap != nil {
			t.Fatalf("Replay: %v, gap %+v", err, gap)
		}
		got = append(got, idsOf(page)...)
	}
	var want []string
	for i, id := range ids[3:] {
		if (i+3)%2 == 0 {
			want = append(want, id)
		}
	}
	want = append(want, <-published...)
	r := &resumer{lastID: ids[2], sub: sub}
	r.backlog = make([]*hub.Message, len(got))
	for i, id := range got {
		r.backlog[i] = &hub.Message{ID: id}
	}
	r.expect(t, want)
}

type resumer struct {
	lastID  string
	sub     *hub.Subscriber
	backlog []*hub.Message
}

func resume(t *testing.T, h *hub.Hub, lastID string) *resumer {
	t.Helper()
	sub, backlog, gap, err := h.Subscribe(ctx(t), []string{"#"}, lastID)
	if err != nil {
		t.Fatalf("Subscribe from %q: %v", lastID, err)
	}
	if gap != nil {
		t.Fatalf("Subscribe from %q: unexpected gap %+v", lastID, gap)
	}
	t.Cleanup(sub.Close)
	return &resumer{lastID: lastID, sub: sub, backlog: backlog}
}

// expect checks that backlog and live messages together are exactly want.
func (r *resumer) expect(t *testing.T, want []string) {
	t.Helper()
	got := idsOf(r.backlog)
	deadline := time.After(Wait)
	for len(got) < len(want) {
		if m, ok := r.sub.Next(); ok {
			got = append(got, m.ID)
			continue
		}
		select {
		case <-r.sub.Ready():
		case <-r.sub.Done():
			t.Fatalf("resumed from %q: subscription ended: %v", r.lastID, r.sub.Err())
		case <-deadline:
			t.Fatalf("resumed from %q: %d of %d messages within %s", r.lastID, len(got), len(want), Wait)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("resumed from %q (%d from history): got %s, want %s", r.lastID, len(r.backlog), abbreviate(got), abbreviate(want))
	}
	if m, ok := r.sub.Next(); ok {
		t.Fatalf("resumed from %q: extra message %s", r.lastID, m.ID)
	}
}
