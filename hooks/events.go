package hooks

import (
	"context"
	"time"
)

// Events are sent by one goroutine per client, in the order they happen
// (an occupied before its vacated), each retried with exponential back-off
// and then given up. The queue is bounded: an event beyond it is dropped
// and counted, so a slow backend never holds a subscriber up.

// Event queues a subscribed or unsubscribed event about a subscription's
// topics, if that hook is on. It never blocks.
func (c *Client) Event(hook string, caller Caller, subscription string, topics []string) {
	if !c.On(hook) || len(topics) == 0 {
		return
	}
	c.queue(request{Hook: hook, Caller: &caller, Subscription: subscription, Topics: topics})
}

// Occupancy queues an occupied or vacated event about filter, if that
// hook is on. It never blocks.
func (c *Client) Occupancy(filter string, occupied bool) {
	hook := Vacated
	if occupied {
		hook = Occupied
	}
	if c.On(hook) {
		c.queue(request{Hook: hook, Topic: filter})
	}
}

func (c *Client) queue(req request) {
	select {
	case c.events <- req:
	default:
		c.stats.dropped.Add(1)
	}
}

// sendEvents sends queued events until Close.
func (c *Client) sendEvents() {
	defer close(c.done)
	for {
		select {
		case <-c.ctx.Done():
			return
		case req := <-c.events:
			c.sendEvent(req)
		}
	}
}

// sendEvent sends req, retrying a failed send; once all attempts failed,
// it counts the event dropped.
func (c *Client) sendEvent(req request) {
	wait := firstRetry
	for attempt := 0; ; attempt++ {
		start := c.now()
		outcome := c.tryEvent(req)
		c.stats.observe(req.Hook, outcome, c.now().Sub(start))
		if outcome == "sent" {
			return
		}
		if attempt >= c.opts.Retries {
			c.stats.dropped.Add(1)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxRetryWait)
	}
}

// tryEvent makes one attempt at sending req and returns its outcome.
func (c *Client) tryEvent(req request) string {
	ok, _ := c.breaker.allow(c.now())
	if !ok {
		return "breaker_open"
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	if _, err := c.post(ctx, req, answerBase); err != nil {
		if c.ctx.Err() != nil {
			return "canceled"
		}
		c.breaker.record(false, c.now())
		if ctx.Err() != nil {
			return "timeout"
		}
		return "error"
	}
	c.breaker.record(true, c.now())
	return "sent"
}
