package pubsub

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("pubsub", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("pubsub", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	pubsub [<matcher>] {
//		hub              <name>
//		history          <count> [<max_age>]
//		heartbeat        <duration>
//		queue            <length>
//		max_message_size <size>
//		topic            <topic with placeholders>
//		publish_key      <key>
//		anonymous_publish loopback | off
//		poll_timeout     <duration>
//		cors             <origin>...   # or *; repeatable
//		presence                       # publish $pubsub/subscribe and $pubsub/unsubscribe events
//		jwt              { ... }       # see parseJWT in jwt.go
//		limits           { ... }       # see parseLimits in limits.go
//		mqtt             <url> { ... }  # see parseMQTT in mqtt.go; repeatable
//		broker           memory | bolt <path> | redis <url> { ... }  # see unmarshalBroker in broker.go
//	}
//
// Every sub-directive is optional; see the README for defaults.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
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
		case "history":
			err = h.parseHistory(args)
		case "heartbeat":
			var v string
			if v, err = one(); err == nil {
				var dur time.Duration
				if dur, err = caddy.ParseDuration(v); err == nil {
					h.Heartbeat = caddy.Duration(dur)
					err = checkHeartbeat(dur)
				}
			}
		case "queue":
			var v string
			if v, err = one(); err == nil {
				if h.Queue, err = strconv.Atoi(v); err == nil {
					err = checkQueue(h.Queue)
				}
			}
		case "max_message_size":
			var v string
			if v, err = one(); err == nil {
				var n uint64
				if n, err = humanize.ParseBytes(v); err == nil {
					h.MaxMessageSize = int64(min(n, maxMessageSizeCap+1))
					err = checkMaxMessageSize(h.MaxMessageSize)
				}
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
		case "mqtt":
			if err := h.parseMQTT(d, args); err != nil {
				return err
			}
		case "broker":
			if err := h.unmarshalBroker(d, args); err != nil {
				return err
			}
		case "jwt":
			if err := h.parseJWT(d, args); err != nil {
				return err
			}
		case "limits":
			if err := h.parseLimits(d, args); err != nil {
				return err
			}
		case "presence":
			if len(args) != 0 {
				err = errArgCount
			}
			h.Presence = true
		default:
			return d.Errf("unknown pubsub sub-directive %q", name)
		}
		if errors.Is(err, errArgCount) {
			return d.ArgErr()
		}
		if err != nil {
			return d.Errf("%s: %v", name, err)
		}
	}
	return nil
}

// errArgCount marks a sub-directive with the wrong number of arguments.
var errArgCount = errors.New("wrong argument count")

func (h *Handler) parseHistory(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return errArgCount
	}
	count, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	var age time.Duration
	if len(args) == 2 {
		if age, err = caddy.ParseDuration(args[1]); err != nil {
			return err
		}
	}
	h.History = &History{Count: count, MaxAge: caddy.Duration(age)}
	return checkHistory(count, age)
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
