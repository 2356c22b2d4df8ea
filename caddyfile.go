package pubsub

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("pubsub", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("pubsub", httpcaddyfile.Before, "respond")
	// Also just before respond, so after pubsub: an endpoint's topic
	// paths win over the client's file names.
	httpcaddyfile.RegisterHandlerDirective("pubsub_client", parseClientCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("pubsub_client", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	global, err := globalHubs(h.Option("pubsub"))
	if err != nil {
		return nil, err
	}
	var handler Handler
	err = handler.unmarshal(h.Dispenser, global)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	pubsub [<matcher>] {
//		<endpoint settings>  # hub, heartbeat, poll_timeout, topic, publish_key, cors, jwt, hooks, limits...
//		<hub settings>       # history, retain, queue, presence, broker, mqtt: for a hub the global option does not define
//	}
//
// docs/caddyfile.md holds the complete syntax, each sub-directive's default
// and range, and examples; TestDocumentedCaddyfilesAdapt adapts them.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return h.unmarshal(d, nil)
}

// unmarshal is UnmarshalCaddyfile knowing the hubs the global pubsub
// option defines: a hub setting in a handler of one of them is an error at
// the setting's line.
func (h *Handler) unmarshal(d *caddyfile.Dispenser, global map[string]bool) error {
	d.Next() // directive name
	h.Location = fmt.Sprintf("%s:%d", d.File(), d.Line())
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		name := d.Val()
		args := d.RemainingArgs()
		one := func() (string, error) {
			if len(args) != 1 {
				return "", errArgCount
			}
			return args[0], nil
		}
		var err error
		switch name {
		case "hub":
			if h.Hub, err = one(); err == nil {
				err = checkHubName(h.Hub)
			}
		case "heartbeat":
			var v string
			if v, err = one(); err == nil {
				var dur time.Duration
				if dur, err = caddy.ParseDuration(v); err == nil {
					h.Heartbeat = caddy.Duration(dur)
					err = checkHeartbeat(dur)
				}
			}
		case "max_message_size":
			var v string
			if v, err = one(); err == nil {
				h.MaxMessageSize, err = parseSize(v)
			}
		case "topic":
			if h.Topic, err = one(); err == nil {
				err = checkTopicTemplate(h.Topic)
			}
		case "anonymous_publish":
			if h.AnonymousPublish, err = one(); err == nil {
				err = checkAnonymousPublish(h.AnonymousPublish)
			}
		case "publish_key":
			if h.PublishKey, err = one(); err == nil && h.PublishKey == "" {
				err = errors.New("empty key")
			}
		case "poll_timeout":
			var v string
			if v, err = one(); err == nil {
				var dur time.Duration
				if dur, err = caddy.ParseDuration(v); err == nil {
					h.PollTimeout = caddy.Duration(dur)
					err = checkPollTimeout(dur)
				}
			}
		case "cors":
			if len(args) == 0 {
				err = errArgCount
			} else {
				h.CORS = append(h.CORS, args...)
				err = checkOrigins(args)
			}
		case "jwt":
			if err := h.parseJWT(d, args); err != nil {
				return err
			}
		case "hooks":
			if err := h.parseHooks(d, args); err != nil {
				return err
			}
		default:
			ok, err := h.HubConfig.parseSetting(d, name, args)
			if err != nil {
				return err
			}
			if !ok {
				return d.Errf("unknown pubsub sub-directive %q", name)
			}
		}
		if errors.Is(err, errArgCount) {
			return d.ArgErr()
		}
		if err != nil {
			return d.Errf("%s: %v", name, err)
		}
	}
	hubName := h.Hub
	if hubName == "" {
		hubName = DefaultHub
	}
	// The hub may be named after its settings, so they are refused here,
	// at the first one's line.
	if global[hubName] && h.firstAt != nil {
		return errAt(*h.firstAt, globalHubError(hubName, h.hubSettings()))
	}
	return nil
}

// errArgCount marks a sub-directive with the wrong number of arguments.
var errArgCount = errors.New("wrong argument count")

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
