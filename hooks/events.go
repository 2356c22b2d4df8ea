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

// sendEvents sends queued events until Close, then what is still queued.
func (c *Client) sendEvents() {
	defer close(c.done)
	for {
		select {
		case req := <-c.events:
			c.sendEvent(req)
		case <-c.stop:
			c.drain()
			return
		}
	}
}

// drain sends the queued events, one attempt each, until none is left or
// Timeout has passed.
func (c *Client) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	for ctx.Err() == nil {
		select {
		case req := <-c.events:
			if c.attempt(ctx, req) != "sent" {
				c.stats.dropped.Add(1)
			}
		default:
			return
		}
	}
	c.stats.dropped.Add(uint64(len(c.events)))
}

// sendEvent sends req, retrying a failed send with back-off; once all
// attempts failed, or Close came, it counts the event dropped.
func (c *Client) sendEvent(req request) {
	wait := firstRetry
	for attempt := 0; ; attempt++ {
		if c.attempt(context.Background(), req) == "sent" {
			return
		}
		if attempt >= c.opts.Retries {
			c.stats.dropped.Add(1)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-c.stop:
			t.Stop()
			c.stats.dropped.Add(1)
			return
		case <-t.C:
		}
		wait = min(2*wait, maxRetryWait)
	}
}

// attempt makes one attempt at sending req within ctx and Timeout,
// counts it, and returns its outcome.
func (c *Client) attempt(ctx context.Context, req request) string {
	start := c.now()
	outcome := c.tryEvent(ctx, req)
	c.stats.observe(req.Hook, outcome, c.now().Sub(start))
	return outcome
}

func (c *Client) tryEvent(parent context.Context, req request) string {
	ok, _ := c.breaker.allow(c.now())
	if !ok {
		return "breaker_open"
	}
	ctx, cancel := context.WithTimeout(parent, c.opts.Timeout)
	defer cancel()
	if _, err := c.post(ctx, req, answerBase); err != nil {
		c.breaker.record(false, c.now())
		if ctx.Err() != nil {
			return "timeout"
		}
		return "error"
	}
	c.breaker.record(true, c.now())
	return "sent"
}
