package brokertest

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// probeWait is how long one probe waits to be seen before the next is
// sent, while a listener may still be subscribing.
const probeWait = 100 * time.Millisecond

// testSignalsLiveOnly runs the broker under a Hub with presence: presence
// events reach a watcher live, without IDs, and three times the history
// bound of them neither evict a published message nor move the head.
func testSignalsLiveOnly(t *testing.T, newBroker NewBroker) {
	const keep = 5
	r := hub.Retention{Count: keep}
	h := hub.New(newBroker(t, r), hub.Options{Queue: 256, Retention: r, Presence: true})
	t.Cleanup(func() { _ = h.Close() })
	watcher, _, _, err := h.Subscribe(ctx(t), []string{"$pubsub/#"}, "")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(watcher.Close)
	next := func() *hub.Message {
		t.Helper()
		deadline := time.After(Wait)
		for {
			if m, ok := watcher.Next(); ok {
				return m
			}
			select {
			case <-watcher.Ready():
			case <-deadline:
				t.Fatalf("no presence event within %s", Wait)
			}
		}
	}
	// A broker that carries signals between instances may take a moment
	// to listen: probe until an event comes back.
	for seen := false; !seen; {
		probe, _, _, err := h.Subscribe(hub.WithClient(ctx(t), hub.Client{Transport: "test"}), []string{"probe"}, "")
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		select {
		case <-watcher.Ready():
			seen = watcher.Queued() > 0
		case <-time.After(probeWait):
		}
		probe.Close()
	}

	ids := make([]string, keep)
	for i := range ids {
		got, err := h.Publish(ctx(t), hub.Message{Topic: "real", Data: strconv.Itoa(i)})
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		ids[i] = got[0]
	}
	// The messages are delivered (the head is the last) before the
	// presence events begin.
	resume(t, h, ids[0]).expect(t, ids[1:])
	// Each from a connection of its own, so no budget holds them back.
	for i := range 3 * keep {
		s, _, _, err := h.Subscribe(hub.WithClient(ctx(t), hub.Client{Transport: "test"}), []string{"t/" + strconv.Itoa(i)}, "")
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		s.Close()
	}
	for i := 0; i < 6*keep; {
		m := next()
		var ev hub.PresenceEvent
		if err := json.Unmarshal([]byte(m.Data), &ev); err != nil {
			t.Fatalf("presence data %q: %v", m.Data, err)
		}
		if len(ev.Topics) != 1 || !strings.HasPrefix(ev.Topics[0], "t/") {
			continue // a probe, the resumer
		}
		want := hub.PresenceSubscribe
		if i%2 == 1 {
			want = hub.PresenceUnsubscribe
		}
		if m.ID != "" || m.Topic != want || !slices.Equal(ev.Topics, []string{"t/" + strconv.Itoa(i/2)}) {
			t.Fatalf("presence event %d: ID %q topic %s data %s; want no ID, %s of t/%d", i, m.ID, m.Topic, m.Data, want, i/2)
		}
		i++
	}
	if head := h.Head(); head != ids[keep-1] {
		t.Fatalf("head %q after presence events, want the last message %q", head, ids[keep-1])
	}
	page, err := h.History(ctx(t), hub.Query{After: ids[0], Upto: ids[keep-1], Limit: keep})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	checkIDs(t, "history after presence events", page.Messages, ids[1:])
	checkGap(t, "history after presence events", page.Gap, nil)
}

// testSignaler: a broker that is a Signaler hands signals to the function
// given to StartSignals, in order, with their fields and no ID, and neither
// delivers nor stores them as messages.
func testSignaler(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 10})
	sig := b.(hub.Signaler) // Run runs this clause for Signalers only
	signals := newRecorder(t)
	if err := sig.StartSignals(signals.deliver); err != nil {
		t.Fatalf("StartSignals: %v", err)
	}
	// Real signals, told apart from the probes that may still arrive.
	real := func() []*hub.Message {
		signals.mu.Lock()
		defer signals.mu.Unlock()
		return slices.DeleteFunc(slices.Clone(signals.got), func(m *hub.Message) bool { return m.Topic == "probe" })
	}
	for seen := false; !seen; {
		if err := sig.Signal(ctx(t), []hub.Message{{Topic: "probe", Time: time.Now()}}); err != nil {
			t.Fatalf("Signal: %v", err)
		}
		select {
		case <-signals.notify:
			seen = true
		case <-time.After(probeWait):
		}
	}

	when := time.UnixMilli(time.Now().UnixMilli())
	want := []*hub.Message{
		{Topic: hub.PresenceSubscribe, Data: `{"id":"x-1"}`, Time: when},
		{Topic: "a/b", Event: "e", Data: "line 1\nline 2 é", Time: when.Add(time.Millisecond)},
		{Topic: "$pubsub/unsubscribe", Data: strings.Repeat("d", 1000), Time: when.Add(2 * time.Millisecond)},
	}
	var msgs []hub.Message
	for _, m := range want {
		msgs = append(msgs, *m)
	}
	if err := sig.Signal(ctx(t), msgs); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	deadline := time.After(Wait)
	for len(real()) < len(want) {
		select {
		case <-signals.notify:
		case <-deadline:
			t.Fatalf("%d of %d signals within %s", len(real()), len(want), Wait)
		}
	}
	sameMessages(t, "signals", real(), want)

	id := publish(t, b, hub.Message{Topic: "real"})[0]
	checkIDs(t, "delivered after signals", rec.wait(1), []string{id})
	retained, gap := since(t, b, hub.Earliest, id)
	checkIDs(t, "history after signals", retained, []string{id})
	checkGap(t, "history after signals", gap, nil)
}
