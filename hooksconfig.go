package pubsub

// The hooks sub-directive: the application's backend over HTTP. The hooks
// package makes the calls; this file holds the configuration, its
// Caddyfile syntax and its provisioning.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hooks"
)

// Bounds of the hooks settings.
const (
	maxHookTimeout = 30 * time.Second
	maxHookRetries = 10
)

// Failure policies.
const (
	failClosed = "closed"
	failOpen   = "open"
)

// Hooks asks the application's backend, over HTTP, whether a client may
// connect, subscribe and publish, and tells it of subscriptions and of
// topics gaining their first subscriber or losing their last. See
// docs/hooks.md for the requests, answers and signature.
type Hooks struct {
	// URL is the backend's hook endpoint, http or https; every hook is a
	// POST to it.
	URL string `json:"url,omitempty"`

	// Secret signs each request (HMAC-SHA256), at least 32 bytes. Usually
	// a placeholder such as {env.HOOK_SECRET}, which must not resolve
	// empty.
	Secret string `json:"secret,omitempty"`

	// On lists the hooks called: decisions connect, subscribe and
	// publish; events subscribed, unsubscribed, occupied and vacated.
	// Default: connect, subscribe, publish.
	On []string `json:"on,omitempty"`

	// Timeout bounds each call, at most 30s. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Concurrency bounds the decision calls in flight; a call beyond it
	// fails at once, and Failure decides. Default: 64.
	Concurrency int `json:"concurrency,omitempty"`

	// Failure decides what a failed decision call (backend down, slow,
	// answering garbage, breaker open) does: "closed" refuses with 503,
	// "open" allows the request unchanged. Default: "closed".
	Failure string `json:"failure,omitempty"`

	// Retries is how many times a failed event is sent again, with
	// exponential back-off from 100ms; decisions are never retried. At
	// most 10. Default: 3.
	Retries *int `json:"retries,omitempty"`

	// BreakerFailures consecutive failed calls open the circuit breaker
	// for BreakerOpen: calls then fail at once, until a trial call
	// succeeds. Default: 5 and 30s.
	BreakerFailures int            `json:"breaker_failures,omitempty"`
	BreakerOpen     caddy.Duration `json:"breaker_open,omitempty"`

	// TransportRaw configures how the backend is reached (TLS, CAs,
	// client certificates, dial and keep-alive timeouts) as the reverse
	// proxy's transport module does: only "http" is supported. Default:
	// Go's transport.
	TransportRaw json.RawMessage `json:"transport,omitempty" caddy:"namespace=http.reverse_proxy.transport inline_key=protocol"`
}

// check validates the settings that need no placeholder resolved.
func (k *Hooks) check() error {
	if k == nil {
		return nil
	}
	var errs []error
	if u, err := url.Parse(k.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("hooks: URL %q: want http:// or https:// and a host", k.URL))
	}
	if k.Secret == "" {
		errs = append(errs, errors.New("hooks: secret is required"))
	}
	for _, h := range k.On {
		if !slices.Contains(hooks.Names, h) {
			errs = append(errs, fmt.Errorf("hooks: on: unknown hook %q: use %s", h, strings.Join(hooks.Names, ", ")))
		}
	}
	if t := time.Duration(k.Timeout); t < 0 || t > maxHookTimeout {
		errs = append(errs, fmt.Errorf("hooks: timeout %s out of range 1ms..%s", t, maxHookTimeout))
	}
	if k.Concurrency < 0 {
		errs = append(errs, errors.New("hooks: concurrency must be at least 1"))
	}
	if k.Failure != "" && k.Failure != failClosed && k.Failure != failOpen {
		errs = append(errs, fmt.Errorf("hooks: failure %q: use closed or open", k.Failure))
	}
	if k.Retries != nil && (*k.Retries < 0 || *k.Retries > maxHookRetries) {
		errs = append(errs, fmt.Errorf("hooks: retries %d out of range 0..%d", *k.Retries, maxHookRetries))
	}
	if k.BreakerFailures < 0 || k.BreakerOpen < 0 {
		errs = append(errs, errors.New("hooks: breaker: failures and duration must be positive"))
	}
	return errors.Join(errs...)
}

// client resolves the secret, loads the transport and returns the hooks
// client of the endpoint at location.
func (k *Hooks) client(ctx caddy.Context, location string, maxMessageSize int64, logger *zap.Logger) (*hooks.Client, error) {
	secret, err := resolve("hooks: secret", k.Secret)
	if err != nil {
		return nil, err
	}
	if secret == k.Secret {
		logger.Warn("hooks secret is written in the configuration, which Caddy may save to disk: use a placeholder such as {env.HOOK_SECRET}")
	}
	if len(secret) < hooks.MinSecretLength {
		return nil, fmt.Errorf("hooks: secret shorter than %d bytes", hooks.MinSecretLength)
	}
	var rt http.RoundTripper
	if k.TransportRaw != nil {
		mod, err := ctx.LoadModule(k, "TransportRaw")
		if err != nil {
			return nil, fmt.Errorf("hooks: loading transport: %w", err)
		}
		t, ok := mod.(*reverseproxy.HTTPTransport)
		if !ok {
			return nil, fmt.Errorf("hooks: transport %T: only the http transport is supported", mod)
		}
		// Both read a proxied request's context, which a hook has not.
		if t.ProxyProtocol != "" {
			return nil, errors.New("hooks: transport: proxy_protocol is for proxied requests")
		}
		if t.TLS != nil && strings.Contains(t.TLS.ServerName, "{") {
			return nil, errors.New("hooks: transport: tls_server_name cannot hold placeholders")
		}
		rt = t
	}
	on := k.On
	if len(on) == 0 {
		on = []string{hooks.Connect, hooks.Subscribe, hooks.Publish}
	}
	retries := hooks.DefaultRetries
	if k.Retries != nil {
		retries = *k.Retries
	}
	return hooks.New(hooks.Options{
		URL:             k.URL,
		Secret:          []byte(secret),
		On:              on,
		Timeout:         time.Duration(k.Timeout),
		Concurrency:     k.Concurrency,
		FailOpen:        k.Failure == failOpen,
		Retries:         retries,
		BreakerFailures: k.BreakerFailures,
		BreakerOpen:     time.Duration(k.BreakerOpen),
		Transport:       rt,
		Endpoint:        location,
		MaxMessageSize:  maxMessageSize,
	})
}

// parseHooks reads a hooks block:
//
//	hooks <url> {
//		secret      <key>                 # required, at least 32 bytes
//		on          <hook...>             # default: connect subscribe publish
//		timeout     <duration>            # default: 2s
//		concurrency <n>                   # default: 64
//		failure     closed|open           # default: closed
//		retries     <n>                   # events only; default: 3
//		breaker     <failures> <duration> # default: 5 30s
//		transport   http { ... }          # as reverse_proxy's
//	}
func (h *Handler) parseHooks(d *caddyfile.Dispenser, args []string) error {
	if len(args) != 1 {
		return d.ArgErr()
	}
	if h.Hooks != nil {
		return d.Err("hooks: given twice")
	}
	k := &Hooks{URL: args[0]}
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("hooks: %s given twice", name)
		}
		seen[name] = true
		if name == "transport" {
			if err := k.parseTransport(d); err != nil {
				return err
			}
			continue
		}
		vals := d.RemainingArgs()
		if len(vals) == 0 {
			return d.ArgErr()
		}
		one := func() (string, error) {
			if len(vals) != 1 {
				return "", d.ArgErr()
			}
			return vals[0], nil
		}
		var err error
		switch name {
		case "secret":
			k.Secret, err = one()
		case "on":
			k.On = vals
		case "timeout":
			var v string
			if v, err = one(); err == nil {
				var dur time.Duration
				if dur, err = caddy.ParseDuration(v); err == nil && dur <= 0 {
					err = errors.New("must be positive")
				}
				k.Timeout = caddy.Duration(dur)
			}
		case "concurrency":
			var v string
			if v, err = one(); err == nil {
				k.Concurrency, err = positive(v)
			}
		case "failure":
			k.Failure, err = one()
		case "retries":
			var v string
			if v, err = one(); err == nil {
				var n int
				n, err = strconv.Atoi(v)
				k.Retries = &n
			}
		case "breaker":
			if len(vals) != 2 {
				return d.ArgErr()
			}
			if k.BreakerFailures, err = positive(vals[0]); err == nil {
				var dur time.Duration
				if dur, err = caddy.ParseDuration(vals[1]); err == nil && dur <= 0 {
					err = errors.New("duration must be positive")
				}
				k.BreakerOpen = caddy.Duration(dur)
			}
		default:
			return d.Errf("unknown hooks option %q: use secret, on, timeout, concurrency, failure, retries, breaker or transport", name)
		}
		if err != nil {
			return d.Errf("hooks: %s: %v", name, err)
		}
	}
	if err := k.check(); err != nil {
		return d.Err(err.Error())
	}
	h.Hooks = k
	return nil
}

// parseTransport reads "transport http { ... }" with the reverse proxy's
// own parser.
func (k *Hooks) parseTransport(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	if name != "http" {
		return d.Errf("hooks: transport %q: only http is supported", name)
	}
	unm, err := caddyfile.UnmarshalModule(d, "http.reverse_proxy.transport."+name)
	if err != nil {
		return err
	}
	k.TransportRaw = caddyconfig.JSONModuleObject(unm, "protocol", name, nil)
	return nil
}

// positive parses a count of at least 1.
func positive(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a positive number", v)
	}
	return n, nil
}
