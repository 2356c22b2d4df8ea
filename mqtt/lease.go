package mqtt

// Holding a link among instances. When the hub's broker is shared
// (hub.Leaser), every instance running the same mqtt block competes for
// one lease per link, named after its session (broker and client ID): the
// holder connects, the others wait. The holder renews the lease every
// third of it; one that cannot renew before the lease ends disconnects at
// once, and its publishes carry the lease's fencing token, so the broker
// refuses them once another instance took the lease over. A holder that
// stops (Close) disconnects, then releases the lease, which wakes a
// waiting instance at once; one that dies leaves the lease to expire, and
// the next attempt of a waiting instance, every third of the lease, takes
// it: within about 1⅓ leases.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// leaseCallTimeout bounds one call to the leaser that has no deadline of
// its own (acquire, release).
const leaseCallTimeout = 2 * time.Second

// LeaseState is who holds a link, as this instance last saw it.
type LeaseState struct {
	// Shared is true when the hub's broker is shared between instances
	// and the link is held by lease; false: this instance is alone and
	// holds the link while it runs.
	Shared bool `json:"shared"`
	// Name is the lease's name, the same on every instance: "mqtt-" and
	// a hash of the broker's address and the client ID.
	Name string `json:"name,omitempty"`
	// Holding is true while this instance holds the link (is the one
	// that connects).
	Holding bool `json:"holding"`
	// Holder is the holding instance's ID ("" when none holds it or it
	// is not known yet), Token its lease's fencing token and Expires
	// when its lease ends unless renewed.
	Holder  string    `json:"holder,omitempty"`
	Token   uint64    `json:"token,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	// Acquired counts the times this instance took the lease; Lost the
	// times it lost it without releasing it (no renewal in time, taken
	// over, a publish refused for its token).
	Acquired uint64 `json:"acquired"`
	Lost     uint64 `json:"lost"`
}

// instanceID names this process among the instances sharing a hub:
// the host name and process ID, with a random part for containers that
// share both.
var instanceID = sync.OnceValue(func() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, host)
	if len(host) > 64 {
		host = host[:64]
	}
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
})

// links numbers the links of this process, so that two links of one
// session in one process (the old and new config during a reload) are
// distinct holders.
var links atomic.Uint64

// leasing is a link's side of its lease.
type leasing struct {
	leaser hub.Leaser // nil: not shared
	name   string     // the lease's name
	holder string     // this link's holder ID
	ttl    time.Duration
	renew  time.Duration // how often the holder renews; how often others try

	acquired, lost atomic.Uint64
	warn           warnLimiter

	mu   sync.Mutex
	seen hub.Lease          // the lease as last seen
	held bool               // seen is this link's
	end  context.CancelFunc // ends the current term
}

// init sets the lease up for the link of session.
func (ls *leasing) init(session string, ttl time.Duration, leaser hub.Leaser) {
	if ttl == 0 {
		ttl = DefaultLease
	}
	sum := sha256.Sum256([]byte(session))
	ls.leaser = leaser
	ls.name = "mqtt-" + hex.EncodeToString(sum[:8])
	ls.holder = instanceID() + "#" + strconv.FormatUint(links.Add(1), 10)
	ls.ttl, ls.renew = ttl, ttl/3
}

// state reports the lease; running says whether a link without a shared
// lease is the one connecting.
func (ls *leasing) state(running bool) LeaseState {
	if ls.leaser == nil {
		st := LeaseState{Holding: running}
		if running {
			st.Holder = instanceID()
		}
		return st
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	st := LeaseState{Shared: true, Name: ls.name, Holding: ls.held, Holder: ls.seen.Holder, Token: ls.seen.Token,
		Expires: ls.seen.Expires, Acquired: ls.acquired.Load(), Lost: ls.lost.Load()}
	if !st.Expires.IsZero() && time.Now().After(st.Expires) && !ls.held {
		st.Holder, st.Token, st.Expires = "", 0, time.Time{}
	}
	return st
}

// see records the lease as an attempt to acquire it found it.
func (ls *leasing) see(l hub.Lease) {
	ls.mu.Lock()
	ls.seen = l
	ls.mu.Unlock()
}

// fence ends the term of token: a publish under it was refused, so
// another instance holds the lease.
func (ls *leasing) fence(token uint64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.held && ls.seen.Token == token && ls.end != nil {
		ls.end()
	}
}

// fenceOf returns ctx carrying the fence of token, when the link holds
// its lease by one.
func (ls *leasing) fenceOf(ctx context.Context, token uint64) context.Context {
	if ls.leaser == nil {
		return ctx
	}
	return hub.WithFence(ctx, hub.Fence{Lease: ls.name, Token: token})
}

// lead competes for the lease until ctx ends, and serves the link while
// it holds it.
func (l *Link) lead(ctx context.Context) {
	ls := &l.lease
	log := l.log.With(zap.String("lease", ls.name), zap.String("instance", ls.holder))
	for {
		if !l.waitActive(ctx) {
			return
		}
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
		lease, err := ls.leaser.AcquireLease(actx, ls.name, ls.holder, ls.ttl)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.setStatus(StatusFollowing, "lease: "+err.Error())
			if ok, skipped := ls.warn.allow(time.Now()); ok {
				log.Warn("mqtt link lease unavailable; retrying", zap.Error(err),
					zap.Duration("retry_in", ls.renew), zap.Int("similar_not_logged", skipped))
			}
			if !l.sleep(ctx, ls.renew) {
				return
			}
			continue
		}
		ls.see(lease)
		if lease.Holder != ls.holder {
			l.setStatus(StatusFollowing, "")
			if !l.awaitRelease(ctx) {
				return
			}
			continue
		}
		l.hold(ctx, lease, start.Add(ls.ttl), log)
	}
}

// awaitRelease waits until the holder releases the lease, or a third of the
// lease; it reports false when ctx ended. The wait runs on its own, so
// that a link closing does not wait for it (a blocked Redis read ignores
// cancellation): it ends by itself within a third of the lease.
func (l *Link) awaitRelease(ctx context.Context) bool {
	ls := &l.lease
	woke := make(chan error, 1)
	go func() { woke <- ls.leaser.AwaitLease(ctx, ls.name, ls.renew) }()
	select {
	case err := <-woke:
		return err == nil || l.sleep(ctx, ls.renew)
	case <-ctx.Done():
		return false
	}
}

// hold serves the link while lease is this link's: until ctx ends or the
// link goes on standby (then it releases the lease), or the lease is
// lost. deadline is when the lease ends unless renewed, as seen from
// here: measured from before the request that took or renewed it.
func (l *Link) hold(ctx context.Context, lease hub.Lease, deadline time.Time, log *zap.Logger) {
	ls := &l.lease
	term, end := context.WithCancel(ctx)
	defer end()
	lease.Expires = deadline
	ls.mu.Lock()
	ls.seen, ls.held, ls.end = lease, true, end
	ls.mu.Unlock()
	ls.acquired.Add(1)
	log.Info("mqtt link lease acquired: this instance connects", zap.Uint64("token", lease.Token))

	served := make(chan struct{})
	go func() {
		defer close(served)
		l.serve(term, lease.Token)
	}()
	why := l.keep(ctx, term, lease, deadline)
	end()
	<-served

	ls.mu.Lock()
	ls.held, ls.end = false, nil
	ls.seen.Expires = time.Time{}
	ls.mu.Unlock()
	if why == nil {
		rctx, cancel := context.WithTimeout(context.Background(), leaseCallTimeout)
		err := ls.leaser.ReleaseLease(rctx, lease)
		cancel()
		if err != nil {
			log.Warn("mqtt link lease not released: another instance takes over when it expires", zap.Error(err))
		} else {
			log.Info("mqtt link lease released")
		}
		return
	}
	ls.lost.Add(1)
	l.setStatus(StatusFollowing, why.Error())
	log.Warn("mqtt link lease lost: disconnected", zap.Error(why), zap.Uint64("token", lease.Token))
}

// Why a holder loses its lease.
var (
	errLeaseTaken   = errors.New("lease held by another instance")
	errLeaseExpired = errors.New("lease not renewed before it ended")
	errLeaseFenced  = errors.New("publish refused: another instance took the lease over")
)

// keep renews lease until the term ends or renewing fails; it returns nil
// when the link is to release the lease (ctx ended, the link went on
// standby), else why it was lost.
func (l *Link) keep(ctx, term context.Context, lease hub.Lease, deadline time.Time) error {
	ls := &l.lease
	tick := time.NewTicker(ls.renew)
	defer tick.Stop()
	expiry := time.NewTimer(time.Until(deadline))
	defer expiry.Stop()
	for {
		standby, changed := l.standbyState()
		if standby || ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-term.Done():
			if ctx.Err() != nil {
				return nil
			}
			return errLeaseFenced
		case <-changed:
		case <-expiry.C:
			return errLeaseExpired
		case <-tick.C:
			sent := time.Now()
			rctx, cancel := context.WithDeadline(term, deadline)
			ok, err := ls.leaser.RenewLease(rctx, lease, ls.ttl)
			cancel()
			switch {
			case err == nil && ok:
				deadline = sent.Add(ls.ttl)
				expiry.Reset(time.Until(deadline))
				ls.mu.Lock()
				ls.seen.Expires = deadline
				ls.mu.Unlock()
			case err == nil:
				return errLeaseTaken
			case term.Err() == nil:
				if ok, skipped := ls.warn.allow(time.Now()); ok {
					l.log.Warn("mqtt link lease not renewed; retrying until it ends", zap.Error(err),
						zap.Time("lease_ends", deadline), zap.Int("similar_not_logged", skipped))
				}
			}
		}
	}
}
