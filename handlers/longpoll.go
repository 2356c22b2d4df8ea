package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// pollTransport serves long-polls: any GET or HEAD that asks for no other
// transport. It is quiet: presence does not announce a subscription that
// lasts one answer.
var pollTransport = &Transport{Name: "poll", Quiet: true, asks: func(*http.Request) bool { return true }, serve: (*Endpoint).servePoll}

// LastIDHeader carries a long-poll answer's cursor (its last_id) as a
// header too, so a HEAD, which has no body, gives a client the point to
// poll from: what is published between its HEAD and its first GET is not
// missed.
const LastIDHeader = "Pubsub-Last-Id"

// frameJSON is the kind of a message's shared JSON envelope, as long-poll
// answers carry it.
var frameJSON = hub.NewFrameKind()

// servePoll serves a long-poll subscriber: it answers at once with the
// retained messages after the request's last ID, or waits up to
// PollTimeout for the next ones. The answer's last_id is the cursor for the
// next poll.
func (ep *Endpoint) servePoll(w http.ResponseWriter, r *http.Request, rq Request) {
	topics, err := rq.topics(r, ep.Limits.topics())
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	resume, err := lastID(r)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	// The subscription is live before history is read, so a message
	// published while this poll waits (or between two polls, through the
	// cursor) is never missed.
	id, topics, opts, denied := ep.authorizeSubscribe(r, rq, topics)
	if denied != nil {
		denied.send(w)
		return
	}
	batch := ep.Limits.pollBatch()
	opts = append(opts, hub.ReplayLimit(batch))
	sub, msgs, gap, err := ep.Hub.Subscribe(r.Context(), topics, resume, opts...)
	if err != nil {
		failSubscribe(w, err)
		return
	}
	defer sub.Close()

	cursor := resume
	if cursor == "" || gap != nil {
		cursor = sub.Head()
	}
	if cursor == "" {
		cursor = ep.startCursor(r.Context())
	}
	if len(msgs) == 0 && gap == nil && r.Method != http.MethodHead {
		timeout := time.NewTimer(ep.PollTimeout)
		defer timeout.Stop()
		// A poll waits no longer than its token lasts; the next one is
		// refused.
		expired, stopExpiry := id.expiry()
		defer stopExpiry()
		select {
		case <-sub.Ready():
			// A message, or the end of the subscription (shutting down,
			// too slow): answer with what was queued.
			msgs = drainPoll(msgs, sub, batch)
		case <-timeout.C:
		case <-expired:
		case <-r.Context().Done():
			return
		}
	}
	// Signals (presence events) have no ID: the cursor is the last
	// message's.
	for _, m := range msgs {
		if m.ID != "" {
			cursor = m.ID
		}
	}

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set(LastIDHeader, cursor)
	_, _ = w.Write(pollAnswer(msgs, cursor, gap != nil))
}

// startCursor is the cursor of a poll that begins before the hub has
// delivered anything: the newest message its broker kept from before (a
// shared or durable history), else Earliest, since all that comes is new.
// The broker answers without reading its history.
func (ep *Endpoint) startCursor(ctx context.Context) string {
	head, err := ep.Hub.StoredHead(ctx)
	if err != nil || head == "" {
		return hub.Earliest
	}
	return head
}

// drainPoll appends what is queued, up to batch messages in all.
func drainPoll(msgs []*hub.Message, sub *hub.Subscriber, batch int) []*hub.Message {
	if n := len(msgs); n < batch {
		msgs = sub.Take(slices.Grow(msgs, batch-n)[:n:batch])
	}
	return msgs
}

// pollAnswer encodes {"messages":[...],"last_id":"..","gap":false} from
// each message's shared envelope bytes.
func pollAnswer(msgs []*hub.Message, cursor string, gap bool) []byte {
	b := []byte(`{"messages":[`)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Frame(frameJSON, encodeEnvelope)...)
	}
	b = append(b, `],"last_id":`...)
	id, _ := json.Marshal(cursor)
	b = append(b, id...)
	b = append(b, `,"gap":`...)
	b = strconv.AppendBool(b, gap)
	return append(b, "}\n"...)
}

// encodeEnvelope encodes m as its JSON envelope (see envelope in sse.go).
func encodeEnvelope(m *hub.Message) []byte {
	return appendEnvelope(make([]byte, 0, envelopeSize(m)), m)
}
