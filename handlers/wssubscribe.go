package handlers

// A WebSocket's subscriptions: subscribe and unsubscribe frames change the
// connection's one hub.Subscriber, and a resume replays history page by
// page. All of it runs on the writer goroutine (see websocket.go).

import (
	"encoding/json"
	"slices"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

func (c *wsConn) run(cmd wsCommand) error {
	switch cmd.kind {
	case "subscribe":
		return c.subscribe(cmd)
	case "unsubscribe":
		return c.unsubscribe(cmd)
	case "refresh":
		return c.regrant(cmd)
	default:
		return c.writeFrame(cmd.frame)
	}
}

// subscribe adds topics. On a connection without topics it is a plain
// subscription resuming from lastID, as SSE does. On one with topics, the
// filter set grows in one step; the messages queued before that go out
// first, then, with lastID, the retained messages after it that the new
// topics match and the old ones do not, then the ack.
func (c *wsConn) subscribe(cmd wsCommand) error {
	if c.sub == nil {
		opts, denied := c.ident().subscription(cmd.topics)
		if denied == nil {
			cmd.topics, opts, denied = c.ep.hookFirst(c.ctx, c.ident(), c.r, c.rq, cmd.topics, opts)
		}
		if denied != nil {
			return c.writeFrame(errorFrame(cmd.ref, denied.reason))
		}
		sub, backlog, gap, err := c.ep.Hub.Subscribe(c.ctx, cmd.topics, cmd.lastID, opts...)
		if err != nil {
			return c.writeFrame(errorFrame(cmd.ref, err.Error()))
		}
		c.sub = sub
		// A replay cut short has answered with an error frame instead.
		if done, err := c.replayAll(cmd.ref, gap, backlog); !done || err != nil {
			return err
		}
		return c.writeFrame(ackFrame(cmd.ref))
	}
	var denied *denial
	if cmd.topics, denied = c.ep.hookSubscribe(c.ctx, c.ident(), c.r, c.rq, cmd.topics); denied != nil {
		return c.writeFrame(errorFrame(cmd.ref, denied.reason))
	}
	old := c.sub.Filters()
	topics := slices.Clone(old)
	for _, t := range cmd.topics {
		if !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	if err := checkFilters(topics, c.ep.Limits.topics(), " on one connection"); err != nil {
		return c.writeFrame(errorFrame(cmd.ref, err.Error()))
	}
	opts, denied := c.ident().subscription(topics)
	if denied != nil {
		return c.writeFrame(errorFrame(cmd.ref, denied.reason))
	}
	head, queued, err := c.sub.SetFilters(topics, opts...)
	if err != nil {
		return c.writeFrame(errorFrame(cmd.ref, err.Error()))
	}
	if err := c.writeQueued(queued); err != nil {
		return err
	}
	if cmd.lastID != "" {
		// The broker filters and pages the history: one page in memory
		// at a time, each sent before the next is read.
		q := hub.Query{After: cmd.lastID, Upto: head, Match: func(topic string) bool {
			return matchesAny(cmd.topics, topic) && !matchesAny(old, topic) && c.ident().mayReceive(topic)
		}}
		for {
			page, err := c.ep.Hub.History(c.ctx, q)
			if err != nil {
				return c.writeFrame(errorFrame(cmd.ref, "subscribed, but "+err.Error()))
			}
			if err := c.sendPage(page.Gap, page.Messages, head); err != nil {
				return err
			}
			if !page.More {
				break
			}
			q.Next(page)
		}
	}
	return c.writeFrame(ackFrame(cmd.ref))
}

// unsubscribe removes topics (unknown ones are ignored). Messages queued
// before the change go out before the ack; none of the removed topics
// come after it.
func (c *wsConn) unsubscribe(cmd wsCommand) error {
	if c.sub != nil {
		topics := slices.DeleteFunc(slices.Clone(c.sub.Filters()), func(t string) bool {
			return slices.Contains(cmd.topics, t)
		})
		var queued int
		if len(topics) == 0 {
			c.sub.Close()
			queued = c.sub.Queued()
		} else {
			var err error
			if _, queued, err = c.sub.SetFilters(topics); err != nil {
				return c.writeFrame(errorFrame(cmd.ref, err.Error()))
			}
		}
		if err := c.writeQueued(queued); err != nil {
			return err
		}
		if len(topics) == 0 {
			c.sub = nil
		}
	}
	return c.writeFrame(ackFrame(cmd.ref))
}

func matchesAny(filters []string, topic string) bool {
	return slices.ContainsFunc(filters, func(f string) bool { return hub.Match(f, topic) })
}

// replayAll sends the history a new subscription resumes with: the first
// page (gap and msgs) from Subscribe, then the next pages, each read once
// the one before is written. done is false when reading the rest failed:
// it answered with an error frame (with ref, the frame that subscribed)
// instead, and the client resumes from the last ID it got. err is a
// failed write.
func (c *wsConn) replayAll(ref json.RawMessage, gap *hub.Gap, msgs []*hub.Message) (done bool, err error) {
	if c.sub == nil {
		return true, nil
	}
	for {
		if err := c.sendPage(gap, msgs, c.sub.Head()); err != nil {
			return false, err
		}
		if !c.sub.Replaying() {
			return true, nil
		}
		var readErr error
		if msgs, gap, readErr = c.sub.Replay(c.ctx); readErr != nil {
			return false, c.writeFrame(errorFrame(ref, "subscribed, but "+readErr.Error()))
		}
	}
}

// sendPage sends a gap frame, if any, then msgs. With a gap and nothing to
// replay, the gap frame's id moves the client's cursor to head, so it does
// not report the same gap on its next resume.
func (c *wsConn) sendPage(gap *hub.Gap, msgs []*hub.Message, head string) error {
	if gap != nil {
		frame := wsGap{Type: "gap", Gap: *gap}
		if len(msgs) == 0 {
			frame.ID = head
		}
		b, _ := json.Marshal(frame)
		if err := c.writeFrame(b); err != nil {
			return err
		}
	}
	return c.writeMessages(msgs)
}
