// Package hooks lets the application's backend take part over HTTP: it
// asks it for decisions (may this client connect, subscribe, publish; with
// what topics or data) and tells it of events (subscriptions begun and
// ended, topics occupied and vacated). Every request is signed with a
// shared secret; a bounded number run at once, each within a timeout,
// behind a circuit breaker, so a slow or dead backend costs bounded time
// and no goroutines. It speaks net/http and knows no Caddy.
package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// The hooks. Decisions are waited for; events are sent in the background.
const (
	Connect      = "connect"
	Subscribe    = "subscribe"
	Publish      = "publish"
	Subscribed   = "subscribed"
	Unsubscribed = "unsubscribed"
	Occupied     = "occupied"
	Vacated      = "vacated"
)

// Names lists every hook, decisions first.
var Names = []string{Connect, Subscribe, Publish, Subscribed, Unsubscribed, Occupied, Vacated}

// isDecision reports whether hook is one the caller waits for.
func isDecision(hook string) bool { return hook == Connect || hook == Subscribe || hook == Publish }

// Headers of a hook request.
const (
	// TimestampHeader holds the Unix time, in seconds, when the request
	// was signed.
	TimestampHeader = "Pubsub-Timestamp"
	// SignatureHeader holds "sha256=" and the hex HMAC-SHA256, keyed
	// with the shared secret, of the timestamp, ".", and the body.
	SignatureHeader = "Pubsub-Signature"
	// HookHeader names the hook, as the body's "hook" does.
	HookHeader = "Pubsub-Hook"
)

// Limits and defaults.
const (
	MinSecretLength    = 32
	DefaultTimeout     = 2 * time.Second
	DefaultConcurrency = 64
	DefaultRetries     = 3
	DefaultBreakerFail = 5
	DefaultBreakerOpen = 30 * time.Second
	// maxReason bounds the backend's reason in a denial.
	maxReason = 200
	// answerBase is the answer size allowed beside the messages a publish
	// answer may carry back (Options.MaxMessageSize).
	answerBase = 64 << 10
	// eventQueue bounds the events waiting to be sent; beyond it they are
	// dropped and counted.
	eventQueue = 1024
	// firstRetry is the wait before an event's first retry; each next
	// one doubles it, up to maxRetryWait.
	firstRetry   = 100 * time.Millisecond
	maxRetryWait = 5 * time.Second
)

// Options configure a Client.
type Options struct {
	URL    string
	Secret []byte
	// On lists the hooks called (Names); others are not.
	On []string
	// Timeout bounds one call.
	Timeout time.Duration
	// Concurrency bounds the decision calls in flight; a call beyond it
	// fails at once (and the failure policy decides).
	Concurrency int
	// FailOpen allows what a failed decision call asked (unchanged);
	// without it, a failed call refuses.
	FailOpen bool
	// Retries is how many times a failed event is sent again.
	Retries int
	// BreakerFailures consecutive failed calls open the breaker for
	// BreakerOpen: calls then fail at once, until one trial call succeeds.
	BreakerFailures int
	BreakerOpen     time.Duration
	// Transport sends the requests; nil means a transport of its own.
	Transport http.RoundTripper
	// Endpoint names the endpoint in requests (its Caddyfile location).
	Endpoint string
	// MaxMessageSize is the endpoint's: a publish answer may be this much
	// (in base64) larger than answerBase.
	MaxMessageSize int64
}

// Caller is who asks, as the backend is told.
type Caller struct {
	// Subject is the token's sub claim.
	Subject string `json:"sub,omitempty"`
	// Claims are the token's claims as the token carries them.
	Claims json.RawMessage `json:"claims,omitempty"`
	// IP is the client's address as the server sees it (a trusted
	// proxy's forwarded address).
	IP        string `json:"ip,omitempty"`
	Transport string `json:"transport,omitempty"`
}

// Message is a published message, as the backend is told it and may
// rewrite it.
type Message struct {
	Topic string `json:"topic"`
	Event string `json:"event,omitempty"`
	Data  string `json:"data"`
	// Encoding is EncodingBase64 when Data holds binary data in base64
	// (standard, padded), both in a request and in a rewrite; "" for text.
	Encoding string `json:"encoding,omitempty"`
}

// EncodingBase64 marks a Message whose Data is binary data in base64.
const EncodingBase64 = "base64"

// request is the body of every hook request.
type request struct {
	Hook     string    `json:"hook"`
	Endpoint string    `json:"endpoint,omitempty"`
	Time     int64     `json:"time"`
	Caller   *Caller   `json:"caller,omitempty"`
	Topics   []string  `json:"topics,omitempty"`
	Messages []Message `json:"messages,omitempty"`
	// Subscription names the subscription of a subscribed or
	// unsubscribed event.
	Subscription string `json:"subscription,omitempty"`
	// Topic is the filter an occupied or vacated event is about.
	Topic string `json:"topic,omitempty"`
}

// answer is the backend's answer to a decision.
type answer struct {
	Allow    *bool      `json:"allow"`
	Reason   string     `json:"reason"`
	Topics   []string   `json:"topics"`
	Messages *[]Message `json:"messages"`
}

// Decision is the outcome of a decision call.
type Decision struct {
	// Allowed: the backend allowed it, or the call failed and the
	// policy is open.
	Allowed bool
	// Reason is why not: the backend's reason, cleaned, or the failure.
	Reason string
	// Failed is why the call failed; nil when the backend answered.
	Failed error
	// Topics, for subscribe, are the topics allowed: those asked, or
	// the backend's narrower list.
	Topics []string
	// Messages, for publish, are the messages to publish: those asked,
	// or the backend's rewrite.
	Messages []Message
}

// Client calls one backend's hooks.
type Client struct {
	opts    Options
	http    *http.Client
	on      map[string]bool
	slots   chan struct{}
	breaker breaker
	events  chan request
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the event sender has returned
	now     func() time.Time

	stats stats
}

// Errors of a failed call.
var (
	ErrBreakerOpen = errors.New("hook backend circuit breaker open")
	ErrBusy        = errors.New("too many hook calls in flight")
	ErrTimeout     = errors.New("hook backend timed out")
	ErrAnswer      = errors.New("invalid hook answer")
)

// unreachable is a failure to reach the backend. Its message, which
// clients see in a refusal, names no address; Unwrap gives the cause, for
// the server's log.
type unreachable struct{ err error }

func (e unreachable) Error() string { return "hook backend unreachable" }
func (e unreachable) Unwrap() error { return e.err }

// New returns a client whose event sender runs until Close.
func New(opts Options) (*Client, error) {
	if len(opts.Secret) < MinSecretLength {
		return nil, fmt.Errorf("hooks: secret shorter than %d bytes", MinSecretLength)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.BreakerFailures <= 0 {
		opts.BreakerFailures = DefaultBreakerFail
	}
	if opts.BreakerOpen <= 0 {
		opts.BreakerOpen = DefaultBreakerOpen
	}
	rt := opts.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = opts.Concurrency
		t.MaxConnsPerHost = opts.Concurrency + 1
		rt = t
	}
	c := &Client{
		opts: opts,
		http: &http.Client{
			Transport: rt,
			// A hook answers itself: a redirect would carry the signed
			// body elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		on:     make(map[string]bool),
		slots:  make(chan struct{}, opts.Concurrency),
		events: make(chan request, eventQueue),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		now:    time.Now,
	}
	c.breaker = breaker{failures: opts.BreakerFailures, open: opts.BreakerOpen}
	for _, h := range opts.On {
		if !slices.Contains(Names, h) {
			return nil, fmt.Errorf("hooks: unknown hook %q: use %s", h, strings.Join(Names, ", "))
		}
		c.on[h] = true
	}
	go c.sendEvents()
	return c, nil
}

// Close stops the event sender and waits for it. It first sends the
// events still queued, once each, for Timeout at most: those of the
// subscriptions a stopping server ended, which only this instance can
// tell.
func (c *Client) Close() {
	close(c.stop)
	<-c.done
}

// On reports whether hook is called.
func (c *Client) On(hook string) bool { return c != nil && c.on[hook] }

// Connect asks whether caller may open a WebSocket.
func (c *Client) Connect(ctx context.Context, caller Caller) Decision {
	return c.decide(ctx, request{Hook: Connect, Caller: &caller}, nil)
}

// SubscribeTopics asks whether caller may subscribe to topics; the
// backend may narrow them to some of them.
func (c *Client) SubscribeTopics(ctx context.Context, caller Caller, topics []string) Decision {
	return c.decide(ctx, request{Hook: Subscribe, Caller: &caller, Topics: topics}, func(a *answer, d *Decision) error {
		d.Topics = topics
		if a.Topics == nil {
			return nil
		}
		for _, t := range a.Topics {
			if !slices.Contains(topics, t) {
				return fmt.Errorf("%w: topic %q was not asked for", ErrAnswer, t)
			}
		}
		if len(a.Topics) == 0 {
			d.Allowed, d.Reason = false, "the application allowed none of the topics"
		}
		d.Topics = a.Topics
		return nil
	})
}

// PublishMessages asks whether caller may publish msgs; the backend may
// rewrite them (the same number, in order).
func (c *Client) PublishMessages(ctx context.Context, caller Caller, msgs []Message) Decision {
	return c.decide(ctx, request{Hook: Publish, Caller: &caller, Messages: msgs}, func(a *answer, d *Decision) error {
		d.Messages = msgs
		if a.Messages == nil {
			return nil
		}
		if len(*a.Messages) != len(msgs) {
			return fmt.Errorf("%w: %d messages for %d", ErrAnswer, len(*a.Messages), len(msgs))
		}
		d.Messages = *a.Messages
		return nil
	})
}

// decide makes a decision call; apply reads an allowing answer's extras.
// A failed call decides by the policy, with the request's own topics and
// messages.
func (c *Client) decide(ctx context.Context, req request, apply func(*answer, *Decision) error) Decision {
	start := c.now()
	d, outcome := c.call(ctx, req, apply)
	c.stats.observe(req.Hook, outcome, c.now().Sub(start))
	if d.Failed != nil {
		d.Allowed = c.opts.FailOpen
		d.Topics, d.Messages = req.Topics, req.Messages
		d.Reason = "the application's backend failed: " + d.Failed.Error()
	}
	return d
}

// call makes one decision call and returns its outcome for metrics.
func (c *Client) call(ctx context.Context, req request, apply func(*answer, *Decision) error) (Decision, string) {
	ok, trial := c.breaker.allow(c.now())
	if !ok {
		return Decision{Failed: ErrBreakerOpen}, "breaker_open"
	}
	select {
	case c.slots <- struct{}{}:
	default:
		c.breaker.abandon(trial)
		return Decision{Failed: ErrBusy}, "busy"
	}
	defer func() { <-c.slots }()
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	// A rewrite's data may come back in base64, a third larger.
	body, err := c.post(ctx, req, answerBase+(c.opts.MaxMessageSize+2)/3*4)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The client went away: no fault of the backend's.
			c.breaker.abandon(trial)
			return Decision{Failed: err}, "canceled"
		}
		c.breaker.record(false, c.now())
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return Decision{Failed: ErrTimeout}, "timeout"
		}
		return Decision{Failed: err}, "error"
	}
	d, err := parseAnswer(body, apply)
	if err != nil {
		c.breaker.record(false, c.now())
		return Decision{Failed: err}, "invalid"
	}
	c.breaker.record(true, c.now())
	if d.Allowed {
		return d, "allow"
	}
	return d, "deny"
}

// parseAnswer reads a decision answer: {"allow":bool,"reason":"…",…}.
func parseAnswer(body []byte, apply func(*answer, *Decision) error) (Decision, error) {
	var a answer
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return Decision{}, fmt.Errorf("%w: %v", ErrAnswer, err)
	}
	if dec.More() {
		return Decision{}, fmt.Errorf("%w: trailing data", ErrAnswer)
	}
	if a.Allow == nil {
		return Decision{}, fmt.Errorf("%w: no \"allow\"", ErrAnswer)
	}
	if !*a.Allow {
		return Decision{Reason: cleanReason(a.Reason)}, nil
	}
	d := Decision{Allowed: true}
	if apply != nil {
		if err := apply(&a, &d); err != nil {
			return Decision{}, err
		}
	}
	return d, nil
}

// cleanReason makes the backend's reason one short printable line.
func cleanReason(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > maxReason {
		cut := maxReason
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if s = strings.TrimSpace(s); s == "" {
		return "refused by the application"
	}
	return s
}

// post sends req signed and returns the body of a 2xx answer, at most
// limit bytes.
func (c *Client) post(ctx context.Context, req request, limit int64) ([]byte, error) {
	now := c.now()
	req.Endpoint = c.opts.Endpoint
	req.Time = now.Unix()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.opts.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "caddy-pubsub-hooks")
	hr.Header.Set(HookHeader, req.Hook)
	hr.Header.Set(TimestampHeader, ts)
	hr.Header.Set(SignatureHeader, Sign(c.opts.Secret, ts, body))
	resp, err := c.http.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unreachable{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("hook backend answered %d", resp.StatusCode)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrAnswer, limit)
	}
	return data, nil
}

// Sign returns the signature header value of body signed at ts (Unix
// seconds, as sent in TimestampHeader): "sha256=" and the hex HMAC-SHA256
// of ts + "." + body.
func Sign(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// breaker opens after a run of failed calls: calls then fail at once for
// its open time, after which one trial call is let through; its success
// closes the breaker, its failure opens it again.
type breaker struct {
	failures int
	open     time.Duration

	mu     sync.Mutex
	run    int       // consecutive failures
	until  time.Time // open until; zero when closed
	trial  bool      // a trial call is in flight
	opened uint64    // times it opened
}

// Breaker states, as the metrics report them.
const (
	BreakerClosed   = 0
	BreakerOpen     = 1
	BreakerHalfOpen = 2
)

// allow reports whether a call may go out at now, and whether it is the
// trial call of an open breaker.
func (b *breaker) allow(now time.Time) (ok, trial bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.until.IsZero():
		return true, false
	case now.Before(b.until) || b.trial:
		return false, false
	}
	b.trial = true
	return true, true
}

// record counts the result of a call allow let out.
func (b *breaker) record(ok bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.trial = false
	if ok {
		b.run, b.until = 0, time.Time{}
		return
	}
	b.run++
	if !b.until.IsZero() || b.run >= b.failures {
		b.until = now.Add(b.open)
		b.opened++
	}
}

// abandon releases a call that ended without a result of the backend's:
// when it was the trial, the next call is.
func (b *breaker) abandon(trial bool) {
	if !trial {
		return
	}
	b.mu.Lock()
	b.trial = false
	b.mu.Unlock()
}

// state returns the breaker's state at now.
func (b *breaker) state(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.until.IsZero():
		return BreakerClosed
	case now.Before(b.until):
		return BreakerOpen
	}
	return BreakerHalfOpen
}
