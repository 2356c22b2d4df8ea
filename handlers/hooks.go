package handlers

// The application's backend hooks (package hooks) at each decision point:
// after the server's own checks have passed, the backend may still refuse
// (403 with its reason), narrow a subscription's topics or rewrite a
// publish. A call that fails (backend down, slow, answering garbage)
// decides by the endpoint's failure policy: refused with 503, or allowed
// unchanged.

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hooks"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// caller is who the identity is, as the backend is told. It is made only
// when a hook is called: publishes without hooks pay nothing for it.
func (id *identity) caller(r *http.Request, rq Request) hooks.Caller {
	c := hooks.Caller{IP: rq.Client, Transport: cmp.Or(rq.transport, "http")}
	if c.IP == "" {
		c.IP, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	if id.token != nil {
		c.Subject, c.Claims = id.token.Subject, id.token.Claims
	}
	return c
}

// hookDenial turns a refusing decision into the answer: 403 with the
// backend's reason, or 503 when the backend failed (its cause, which may
// name the backend's address, goes to the log only).
func (ep *Endpoint) hookDenial(hook string, d hooks.Decision) *denial {
	if d.Failed != nil {
		ep.Logger.Debug("hook call failed", zap.String("hook", hook), zap.Error(d.Failed), zap.NamedError("cause", errors.Unwrap(d.Failed)))
		return &denial{status: http.StatusServiceUnavailable, reason: d.Reason}
	}
	return &denial{status: http.StatusForbidden, reason: d.Reason}
}

// hookConnect asks the backend whether a WebSocket may open.
func (ep *Endpoint) hookConnect(id *identity, r *http.Request, rq Request) *denial {
	if !ep.Hooks.On(hooks.Connect) {
		return nil
	}
	if d := ep.Hooks.Connect(r.Context(), id.caller(r, rq)); !d.Allowed {
		return ep.hookDenial(hooks.Connect, d)
	}
	return nil
}

// hookSubscribe asks the backend whether id (who made r) may subscribe
// to topics, and returns the topics it allows (all, or fewer).
func (ep *Endpoint) hookSubscribe(ctx context.Context, id *identity, r *http.Request, rq Request, topics []string) ([]string, *denial) {
	if !ep.Hooks.On(hooks.Subscribe) {
		return topics, nil
	}
	d := ep.Hooks.SubscribeTopics(ctx, id.caller(r, rq), topics)
	if !d.Allowed {
		return nil, ep.hookDenial(hooks.Subscribe, d)
	}
	return d.Topics, nil
}

// hookPublish asks the backend whether id may publish msgs and applies
// its rewrite, which must pass the checks the messages passed.
func (ep *Endpoint) hookPublish(ctx context.Context, id *identity, r *http.Request, rq Request, msgs []hub.Message) *denial {
	if !ep.Hooks.On(hooks.Publish) {
		return nil
	}
	in := make([]hooks.Message, len(msgs))
	for i, m := range msgs {
		in[i] = hooks.Message{Topic: m.Topic, Event: m.Event, Data: m.Data}
		if m.Binary {
			// JSON carries text: bytes go in base64, marked.
			in[i].Data, in[i].Encoding = base64.StdEncoding.EncodeToString([]byte(m.Data)), hooks.EncodingBase64
		}
	}
	d := ep.Hooks.PublishMessages(ctx, id.caller(r, rq), in)
	if !d.Allowed {
		return ep.hookDenial(hooks.Publish, d)
	}
	for i, m := range d.Messages {
		rewritten, err := fromHook(m)
		if err == nil {
			err = checkMessage(rewritten)
		}
		if err != nil {
			return &denial{status: http.StatusBadGateway, reason: "the application's rewrite is not a valid message: " + err.Error()}
		}
		if int64(len(rewritten.Data)) > ep.MaxMessageSize {
			return &denial{status: http.StatusBadGateway, reason: "the application's rewrite is larger than max_message_size"}
		}
		msgs[i].Topic, msgs[i].Event, msgs[i].Data, msgs[i].Binary = rewritten.Topic, rewritten.Event, rewritten.Data, rewritten.Binary
	}
	return id.mayPublishTo(msgs)
}

// fromHook reads a message of the backend's rewrite: text, or binary data
// in base64.
func fromHook(m hooks.Message) (hub.Message, error) {
	out := hub.Message{Topic: m.Topic, Event: m.Event, Data: m.Data}
	switch m.Encoding {
	case "":
	case hooks.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(m.Data)
		if err != nil {
			return out, errors.New("data is not valid base64")
		}
		out.Data, out.Binary = string(b), true
	default:
		return out, fmt.Errorf("unknown encoding %q (base64, or none for text)", m.Encoding)
	}
	return out, nil
}

// hookTag marks a subscription for the backend's subscribed and
// unsubscribed events; no option without them.
func (ep *Endpoint) hookTag(id *identity, r *http.Request, rq Request) []hub.SubscribeOption {
	if !ep.Hooks.On(hooks.Subscribed) && !ep.Hooks.On(hooks.Unsubscribed) {
		return nil
	}
	return []hub.SubscribeOption{hub.Tag(&hooks.Tag{Client: ep.Hooks, Caller: id.caller(r, rq)})}
}

// hookFirst asks the backend about a subscription's first topics (an SSE
// or long-poll request, a WebSocket's upgrade request or its first
// subscribe frame: the same hook) and adds the tag to its options.
func (ep *Endpoint) hookFirst(ctx context.Context, id *identity, r *http.Request, rq Request, topics []string, opts []hub.SubscribeOption) ([]string, []hub.SubscribeOption, *denial) {
	topics, denied := ep.hookSubscribe(ctx, id, r, rq, topics)
	if denied != nil {
		return nil, nil, denied
	}
	return topics, append(opts, ep.hookTag(id, r, rq)...), nil
}
