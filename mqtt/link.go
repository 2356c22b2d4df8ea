// Package mqtt brings an upstream MQTT broker into a hub: a Link keeps a
// persistent MQTT session, subscribes to topic filters and publishes every
// message it receives into the hub, acknowledging it only once stored, and
// reconnects with back-off whenever the broker goes away. It knows nothing
// of Caddy or HTTP.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Target is where a link publishes: a *hub.Hub.
type Target interface {
	Publish(ctx context.Context, msgs ...hub.Message) ([]string, error)
	PublishOnce(ctx context.Context, key string, msgs ...hub.Message) ([]string, error)
}

// Options are a link's settings that come from its surroundings rather
// than from the mqtt block.
type Options struct {
	// MaxMessageSize drops messages whose hub data (after base64 for
	// binary payloads) is larger, in bytes. 0: no limit.
	MaxMessageSize int64
	// Logger receives the link's connection state changes; nil: none.
	Logger *zap.Logger
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts: it starts at MinBackoff and doubles up to MaxBackoff.
	// Defaults: 1s and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Queue and QueueBytes bound the messages received but not yet
	// stored in the hub: at most Queue messages holding at most
	// QueueBytes (payload and hub data). Defaults: DefaultQueue and
	// DefaultQueueBytes.
	Queue      int
	QueueBytes int64
	// Hub is the name of the hub the link publishes into, part of the
	// default client ID.
	Hub string
	// Leaser, when set, is the hub's broker shared with other instances:
	// the link connects only while it holds its lease there, and its
	// publishes carry the lease's fencing token. Nil: this instance is
	// alone and always holds the link.
	Leaser hub.Leaser
}

// Timings of the MQTT connection.
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 30 * time.Second
	connectTimeout    = 10 * time.Second
	keepAlive         = 30 * time.Second
	pingTimeout       = 10 * time.Second
	publishTimeout    = 5 * time.Second
	quiesce           = 250 // ms given to a clean DISCONNECT
	// closeWait bounds how long a closing link waits for paho to finish
	// a CONNECT or SUBSCRIBE in flight.
	closeWait = time.Second
	// A connection that stayed up this long resets the back-off.
	stableAfter = 10 * time.Second
)

// Status is where a link stands.
type Status string

// Link statuses, as State reports them.
const (
	StatusIdle         Status = "idle"         // created, not started
	StatusConnecting   Status = "connecting"   // first connection attempts
	StatusConnected    Status = "connected"    // subscribed and receiving
	StatusReconnecting Status = "reconnecting" // lost the broker, trying again
	StatusStandby      Status = "standby"      // a newer link with the same client ID holds the session
	StatusFollowing    Status = "following"    // another instance holds the link's lease
	StatusClosed       Status = "closed"
)

// State is a snapshot of a link, for stats and metrics.
type State struct {
	Status    Status    `json:"status"`
	Since     time.Time `json:"since"`                // when Status last changed
	LastError string    `json:"last_error,omitempty"` // why the last attempt or connection failed
	Connects  uint64    `json:"connects"`             // successful connections
	Received  uint64    `json:"received"`             // MQTT messages received, a message sent again counted again
	Published uint64    `json:"published"`            // of those, published into the hub
	Dropped   uint64    `json:"dropped"`              // of those, dropped (see the logs)
	// Redelivered counts the messages received with the DUP flag: sent
	// again by the broker after a reconnect or a takeover, possibly
	// stored already (see onceKey).
	Redelivered uint64     `json:"redelivered"`
	Lease       LeaseState `json:"lease"`
}

// Link is one upstream MQTT subscription. New prepares it without any
// network activity (so validating a config opens no connection), Start
// connects in the background and Close disconnects.
type Link struct {
	cfg      Config
	url      *url.URL
	clientID string
	tls      *tls.Config
	target   Target
	opts     Options
	log      *zap.Logger
	// session names the broker session (broker address and client ID):
	// of the started links sharing one, only the newest connects.
	session string

	received, published, dropped, connects, redelivered atomic.Uint64
	warnings                                            [dropKinds]warnLimiter
	retryWarn                                           warnLimiter

	lease leasing // who holds the link (lease.go)

	queue     *queue        // received messages, for the store loop
	done      chan struct{} // closed when run returns
	storeDone chan struct{} // closed when the store loop returns

	mu      sync.Mutex
	status  Status
	since   time.Time
	lastErr string
	standby bool
	changed chan struct{} // closed and replaced when standby changes
	started bool
	closed  bool
	cancel  context.CancelFunc
}

// New checks cfg, reads its TLS files and returns a link that publishes
// into target once started.
func New(cfg Config, target Target, opts Options) (*Link, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := tlsConfig(u, cfg.TLS)
	if err != nil {
		return nil, err
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(opts.MinBackoff, DefaultMaxBackoff)
	}
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	l := &Link{
		cfg:       cfg,
		url:       u,
		clientID:  cfg.ClientID,
		tls:       tlsCfg,
		target:    target,
		opts:      opts,
		log:       opts.Logger,
		queue:     newQueue(opts.Queue, opts.QueueBytes),
		done:      make(chan struct{}),
		storeDone: make(chan struct{}),
		changed:   make(chan struct{}),
		status:    StatusIdle,
		since:     time.Now(),
	}
	if l.clientID == "" {
		l.clientID = DefaultClientID(opts.Hub, cfg)
	}
	if l.log == nil {
		l.log = zap.NewNop()
	}
	l.log = l.log.With(zap.String("broker", redact(cfg.URL)), zap.String("client_id", l.clientID))
	l.session = u.Host + " " + l.clientID
	l.lease.init(l.session, time.Duration(cfg.Lease), opts.Leaser)
	return l, nil
}

// Session names the link's broker session: the broker's address and the
// client ID. Two links with one session cannot both be connected.
func (l *Link) Session() string { return l.session }

// State returns the link's current state.
func (l *Link) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return State{
		Status:      l.status,
		Since:       l.since,
		LastError:   l.lastErr,
		Connects:    l.connects.Load(),
		Received:    l.received.Load(),
		Published:   l.published.Load(),
		Dropped:     l.dropped.Load(),
		Redelivered: l.redelivered.Load(),
		Lease:       l.lease.state(l.started && !l.standby && !l.closed),
	}
}

// sessions holds the started links by session, oldest first. Only the
// newest of a session connects: a broker keeps one connection per client
// ID and drops the older one, so two links fighting over an ID would
// disconnect each other forever.
var sessions = struct {
	sync.Mutex
	links map[string][]*Link
}{links: make(map[string][]*Link)}

// Start connects in the background and returns at once; a broker that is
// down only delays the connection. An older started link with the same
// broker and client ID (the previous config's, during a reload) steps
// aside: the broker hands this link the session, with the messages queued
// in it, and the older one does not reconnect. Start after Start or Close
// does nothing.
func (l *Link) Start() {
	sessions.Lock()
	defer sessions.Unlock()
	l.mu.Lock()
	if l.started || l.closed {
		l.mu.Unlock()
		return
	}
	l.started = true
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.mu.Unlock()

	older := sessions.links[l.session]
	for _, o := range older {
		o.setStandby(true)
	}
	sessions.links[l.session] = append(older, l)
	go l.run(ctx)
	go l.store(ctx)
}

// Close disconnects from the broker, keeping the session there, and waits
// for the link to stop. The messages not yet stored in the hub were not
// acknowledged: the broker keeps those of QoS 1 and 2 in the session. If
// this was the newest link of its session, the next newest takes the
// session back.
func (l *Link) Close() error {
	sessions.Lock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		sessions.Unlock()
		return nil
	}
	l.closed = true
	started := l.started
	l.mu.Unlock()
	if started {
		links := sessions.links[l.session]
		rest := make([]*Link, 0, len(links))
		for _, o := range links {
			if o != l {
				rest = append(rest, o)
			}
		}
		if len(rest) == 0 {
			delete(sessions.links, l.session)
		} else {
			sessions.links[l.session] = rest
			if links[len(links)-1] == l {
				rest[len(rest)-1].setStandby(false)
			}
		}
	}
	sessions.Unlock()

	if started {
		l.cancel()
		<-l.done
		<-l.storeDone
		l.log.Info("mqtt link closed")
	}
	l.setStatus(StatusClosed, "")
	return nil
}

func (l *Link) setStandby(on bool) {
	l.mu.Lock()
	l.standby = on
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *Link) isStandby() bool {
	on, _ := l.standbyState()
	return on
}

// standbyState reports whether the link is on standby, and a channel
// closed when that changes.
func (l *Link) standbyState() (bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.standby, l.changed
}

func (l *Link) setStatus(s Status, lastErr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s != l.status {
		l.status, l.since = s, time.Now()
	}
	if lastErr != "" || s == StatusConnected {
		l.lastErr = lastErr
	}
}

// run keeps the link connected until ctx ends: always, or while this
// instance holds the link's lease when it has one.
func (l *Link) run(ctx context.Context) {
	defer close(l.done)
	if l.lease.leaser == nil {
		l.serve(ctx, 0)
		return
	}
	l.lead(ctx)
}

// serve keeps the link connected until ctx ends; its messages go into
// the hub under the lease's fencing token (0: no lease).
func (l *Link) serve(ctx context.Context, token uint64) {
	b := backoff{min: l.opts.MinBackoff, max: l.opts.MaxBackoff}
	connected := false
	for {
		if !l.waitActive(ctx) {
			return
		}
		if connected {
			l.setStatus(StatusReconnecting, "")
		} else {
			l.setStatus(StatusConnecting, "")
		}
		c, err := l.connect(ctx, token)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errRefused) {
				// Messages kept in the session came in right after
				// CONNACK, more than the queue took.
				b.reset()
			}
			wait := b.next()
			if errors.Is(err, errRefused) {
				l.drained(wait)
			} else {
				l.connectFailed(err, wait)
			}
			if !l.sleep(ctx, wait) {
				return
			}
			continue
		}
		connected = true
		if l.isStandby() {
			// A newer link took over while this one was connecting: leave
			// the session to it rather than kick it off.
			c.client.Disconnect(quiesce)
			c.cancel()
			continue
		}
		l.setStatus(StatusConnected, "")
		up := time.Now()
		select {
		case <-ctx.Done():
			c.client.Disconnect(quiesce)
			c.cancel()
			l.log.Info("mqtt disconnected")
			return
		case err := <-c.lost:
			refused := errors.Is(err, errRefused)
			if refused {
				// A clean DISCONNECT lets the last acknowledgements
				// reach the broker, which sends the refused messages
				// again on the next connection.
				c.client.Disconnect(quiesce)
			}
			c.cancel()
			if refused || time.Since(up) >= stableAfter {
				b.reset()
			}
			if l.isStandby() {
				l.log.Info("mqtt session taken over by the newer link with the same client_id")
				l.setStatus(StatusStandby, "")
				continue
			}
			wait := b.next()
			if refused {
				l.setStatus(StatusReconnecting, "")
				l.drained(wait)
			} else {
				l.setStatus(StatusReconnecting, err.Error())
				l.log.Warn("mqtt connection lost; reconnecting", zap.Error(err), zap.Duration("retry_in", wait))
			}
			if !l.sleep(ctx, wait) {
				return
			}
		}
	}
}

// waitActive blocks while the link is on standby; it reports false when
// ctx ended.
func (l *Link) waitActive(ctx context.Context) bool {
	for {
		on, changed := l.standbyState()
		if !on {
			return ctx.Err() == nil
		}
		l.setStatus(StatusStandby, "")
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// sleep waits d, less if the link is put on standby; it reports false when
// ctx ended.
func (l *Link) sleep(ctx context.Context, d time.Duration) bool {
	_, changed := l.standbyState()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-changed:
	case <-ctx.Done():
		return false
	}
	return true
}
