// Package redis is a hub.Broker on Redis Streams, for running several Caddy
// instances as one: each publishes a hub's messages into one stream and
// reads the stream back to fan out to its own subscribers, so every
// instance sees the same messages, in the same order, with the same IDs and
// history.
package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Reader and retention tuning.
const (
	// readBlock is how long one XREAD waits for new entries.
	readBlock = 5 * time.Second
	// readBatch caps the entries one XREAD returns, so memory per read is
	// bounded whatever the backlog.
	readBatch = 256
	// minBackoff and maxBackoff bound the wait between attempts while
	// Redis is unreachable.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
	// The stream keeps at least deliveryFloor entries and deliveryAge of
	// them, whatever the history: every instance has to read each message
	// once, also after a short outage. Since applies history exactly.
	deliveryFloor = 1000
	deliveryAge   = time.Minute
	// startSlack is how far before its start an instance begins
	// delivering, for Redis and Caddy clocks that differ a little.
	startSlack = time.Second
)

// Broker is a hub.Broker on one Redis stream. Its IDs are
// "EPOCH-MILLISECONDS-SEQUENCE": the stream entry's ID, prefixed with an
// epoch kept in Redis beside the stream (KEY:epoch) and in every entry. A
// stream that Redis lost (restarted empty, key deleted) gets a new epoch
// when it is next written, so IDs from before are recognised as a gap.
type Broker struct {
	client   *client
	stream   string
	epochKey string
	seqKey   string // the append counter (loss.go)
	replicas int    // WAIT for this many replicas after each publish; 0: none
	waitFor  time.Duration
	logger   *zap.Logger

	retention atomic.Pointer[retention]
	skipped   atomic.Uint64 // stream entries Since left out as not valid messages or of a newer format

	newestUnread atomic.Uint64 // the newest format version met and skipped (format.go)

	startMu    sync.Mutex
	startedAt  time.Time
	positioned bool
	start      position // stream position this instance's delivery began after

	runMu     sync.Mutex
	cancel    context.CancelFunc
	done      chan struct{} // closed when the reader has returned
	closeOnce sync.Once
	closeErr  error

	sig signals // presence events and other signals (signals.go)

	seen   seenMark // the newest append seen here (loss.go)
	status status   // the link's state, for metrics and stats (status.go)
	lost   func()   // tells the hub that messages were lost (OnLoss)
}

// New returns a broker for cfg with retention r. It opens no connection:
// that waits for Start or the first Publish.
func New(cfg Config, r hub.Retention) (*Broker, error) {
	if cfg.Stream == "" {
		return nil, errors.New("redis broker: no stream key")
	}
	c, err := cfg.newClient(true)
	if err != nil {
		return nil, fmt.Errorf("redis broker: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	// go-redis prints every failed dial to stderr, which repeats on each
	// retry while Redis is down; the broker logs state changes itself.
	clientLogOnce.Do(func() { goredis.SetLogger(clientLog{logger.Named("go-redis")}) })
	b := &Broker{
		startedAt: time.Now(),
		client:    c,
		stream:    cfg.Stream,
		epochKey:  cfg.Stream + ":epoch",
		seqKey:    cfg.Stream + ":seq",
		replicas:  cfg.Replicas,
		waitFor:   orDefault(cfg.ReplicaTimeout, DefaultReplicaTimeout),
		logger:    logger.With(zap.String("stream", cfg.Stream), zap.String("redis", c.addr)),
	}
	b.retention.Store(newRetention(r))
	return b, nil
}

// Start implements hub.Broker: it starts the reader, which connects (and
// reconnects) on its own, so Start succeeds while Redis is down.
func (b *Broker) Start(deliver func(*hub.Message)) error {
	b.runMu.Lock()
	defer b.runMu.Unlock()
	if b.done != nil {
		return errors.New("redis broker: started twice")
	}
	b.startMu.Lock()
	b.startedAt = time.Now()
	b.startMu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel, b.done = cancel, make(chan struct{})
	go b.read(ctx, deliver)
	return nil
}

// publishScript appends messages to the stream and trims it, atomically.
// It renews the epoch when the stream does not exist (new, or lost by
// Redis) and when the append counter is behind what the publisher saw
// (loss.go). Each entry carries its format version (format.go) and its
// number. With an idempotency key it remembers the IDs for the window,
// and a key it remembers appends nothing and answers the IDs again. With
// a fencing token it first refuses (FENCED) a publisher whose lease was
// acquired again since (lease.go).
//
// A message of a topic that a rule keeps is also kept by rule (retain.go).
//
// KEYS: stream, epoch, seq, keptKeys[, key][, fence counter], then the
// keys of the rules (retain.go). ARGV: epoch to use if renewing, epoch,
// number and stream ID the publisher saw, MAXLEN ("0": none), MINID ("0":
// none), the key's window in milliseconds ("0": no key), the fencing token
// ("0": none), the cap on drops told apart by topic, the rules (ruleArgs),
// then topic, event, data, format version (format.go) and rule (0: none)
// of each message. Returns the epoch, the number of appends lost (0: none;
// -1: nothing stored, the key's IDs again), the last entry's number, then
// the entries' IDs.
var publishScript = goredis.NewScript(`
local once
local nk = 10
if ARGV[7] ~= '0' then
	once = KEYS[10]
	nk = 11
end
local markCap = tonumber(ARGV[9])
` + keptLib + fenceCheck + `
if once then
	local prev = redis.call('GET', once)
	if prev then
		local out = {'', -1, 0}
		for word in string.gmatch(prev, '%S+') do
			if out[1] == '' then out[1] = word else out[#out + 1] = word end
		end
		return out
	end
end
local epoch = redis.call('GET', KEYS[2])
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
	epoch = ARGV[1]
	redis.call('SET', KEYS[2], epoch)
	redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
end
` + lossCheck + `
local out = {epoch, lost, 0}
for i = 11 + 3 * tonumber(ARGV[10]), #ARGV, 5 do
	seq = seq + 1
	local fields = {'v', ARGV[i + 3], 'epoch', epoch, 'topic', ARGV[i], 'event', ARGV[i + 1], 'data', ARGV[i + 2], 'seq', seq}
	local r = tonumber(ARGV[i + 4])
	if r == 0 then
		out[#out + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
	else
		local id = redis.call('XADD', KEYS[1], '*', 'k', '1', unpack(fields))
		out[#out + 1] = id
		local a = 8 + 3 * r
		keep(id, ARGV[i], tonumber(ARGV[a]), tonumber(ARGV[a + 1]), KEYS[tonumber(ARGV[a + 2])], seq, fields)
	end
end
redis.call('SET', KEYS[3], seq)
out[3] = seq
if ARGV[5] ~= '0' then redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[5]) end
if ARGV[6] ~= '0' then redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[6]) end
if once then
	redis.call('SET', once, epoch .. ' ' .. table.concat(out, ' ', 4), 'PX', ARGV[7])
end
return out
`)

// Publish implements hub.Broker. The messages are in the stream when it
// returns; every instance (this one too) delivers them from its reader.
func (b *Broker) Publish(ctx context.Context, msgs []hub.Message) ([]string, error) {
	ids, _, err := b.publish(ctx, "", 0, msgs)
	return ids, err
}

// PublishOnce implements hub.OncePublisher: Redis keeps the key, hashed,
// beside the stream for window, so a retry reaching any instance sharing
// the stream is recognised.
func (b *Broker) PublishOnce(ctx context.Context, key string, window time.Duration, msgs []hub.Message) ([]string, bool, error) {
	return b.publish(ctx, key, window, msgs)
}

func (b *Broker) publish(ctx context.Context, key string, window time.Duration, msgs []hub.Message) ([]string, bool, error) {
	// Fix where this instance's delivery starts before the first write,
	// so its own first messages are delivered too.
	if _, err := b.ensureStart(ctx); err != nil {
		return nil, false, b.failed("publishing to", err)
	}
	r := b.retention.Load()
	maxLen, minID := b.trimBounds(r, time.Now())
	seen := b.seen.args()
	keys, windowMS := append(b.keys(), b.keptKeys()...), int64(0)
	if key != "" {
		sum := sha256.Sum256([]byte(key))
		keys, windowMS = append(keys, b.stream+":once:"+hex.EncodeToString(sum[:16])), max(window.Milliseconds(), 1)
	}
	var token uint64
	if f, ok := hub.FenceFrom(ctx); ok {
		_, fence, _, err := b.leaseKeys(f.Lease)
		if err != nil {
			return nil, false, err
		}
		keys, token = append(keys, fence), max(f.Token, 1)
	}
	rules, ruleKeys, ruleOf := b.ruleArgs(r, msgs, len(keys)+1)
	keys = append(keys, ruleKeys...)
	args := make([]any, 0, 9+len(rules)+5*len(msgs))
	args = append(args, newEpoch())
	args = append(append(args, seen...), maxLen, minID, windowMS, token, r.markCap())
	args = append(args, rules...)
	for i, m := range msgs {
		args = append(args, m.Topic, m.Event, m.Data, entryVersion(m), ruleOf[i])
	}
	res, err := b.append(ctx, keys, args)
	if err != nil {
		return nil, false, err
	}
	if len(res) != len(msgs)+3 {
		return nil, false, fmt.Errorf("redis broker: publishing to stream %s: %d IDs for %d messages", b.stream, len(res)-3, len(msgs))
	}
	epoch, _ := res[0].(string)
	lost, _ := res[1].(int64)
	last, _ := res[2].(int64)
	if !validEpoch(epoch) {
		return nil, false, fmt.Errorf("redis broker: publishing to stream %s: %s holds %.40q, not an epoch: delete it", b.stream, b.epochKey, epoch)
	}
	stored := lost >= 0
	if lost > 0 {
		b.reportLoss(lost, seen[1].(int64), epoch)
	}
	ids := make([]string, len(msgs))
	var lastID streamID
	for i, id := range res[3:] {
		s, _ := id.(string)
		ids[i] = epoch + "-" + s
		lastID, _ = parseStreamID(s)
	}
	if stored {
		b.seen.see(epoch, last, lastID)
	}
	return ids, stored, nil
}

// append runs the publish script, then with replicas set WAITs for them on
// the same connection (WAIT counts that connection's writes), in one round
// trip.
func (b *Broker) append(ctx context.Context, keys []string, args []any) ([]any, error) {
	if b.replicas == 0 {
		res, err := publishScript.Run(ctx, b.client, keys, args...).Slice()
		if fe := b.fenced(err); fe != nil {
			return nil, fe
		}
		if err != nil {
			return nil, b.failed("publishing to", err)
		}
		return res, nil
	}
	var conn goredis.Cmdable = b.client
	if cc, ok := b.client.UniversalClient.(*goredis.ClusterClient); ok {
		// WAIT names no key: it must go to the stream's own master.
		node, err := cc.MasterForKey(ctx, b.stream)
		if err != nil {
			return nil, b.failed("publishing to", err)
		}
		conn = node
	}
	run := func(script func(context.Context, goredis.Scripter, []string, ...any) *goredis.Cmd) (*goredis.Cmd, *goredis.Cmd, error) {
		pipe := conn.Pipeline()
		res := script(ctx, pipe, keys, args...)
		wait := pipe.Do(ctx, "WAIT", b.replicas, b.waitFor.Milliseconds())
		_, err := pipe.Exec(ctx)
		return res, wait, err
	}
	res, wait, err := run(publishScript.EvalSha)
	if err != nil && goredis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
		res, wait, err = run(publishScript.Eval)
	}
	if fe := b.fenced(res.Err()); fe != nil {
		return nil, fe
	}
	if err != nil {
		return nil, b.failed("publishing to", err)
	}
	if n, _ := wait.Int64(); n < int64(b.replicas) {
		return nil, fmt.Errorf("redis broker: publishing to stream %s: %w: stored, but %d of %d replicas had it after %s (it may still be delivered)",
			b.stream, hub.ErrUnavailable, n, b.replicas, b.waitFor)
	}
	return res.Slice()
}

// trimBounds returns the XTRIM bounds for the current retention ("0" for
// none), never below the delivery floor. Trimming is approximate: Redis
// drops whole stream nodes, cheaply, and may keep some entries more.
func (b *Broker) trimBounds(r *retention, now time.Time) (maxLen, minID string) {
	maxLen, minID = strconv.Itoa(max(r.Count, deliveryFloor)), "0"
	if r.MaxAge > 0 {
		minID = strconv.FormatInt(now.Add(-max(r.MaxAge, deliveryAge)).UnixMilli(), 10)
	}
	return maxLen, minID
}

// failed wraps a Redis error for the caller: anything but the caller's own
// cancellation means Redis cannot serve now, which the HTTP edge answers
// with 503.
func (b *Broker) failed(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("redis broker: %s stream %s: %w", op, b.stream, err)
	}
	return fmt.Errorf("redis broker: %s stream %s: %w: %v", op, b.stream, hub.ErrUnavailable, err)
}

// ensureStart fixes, once, the stream position after which this instance
// delivers, at the first contact with Redis: the stream's last entry, but
// no later than the entries written since the broker started (less
// startSlack for clocks that differ). So nothing written while Redis was
// out of reach at start is skipped once it is back. Since(lastID, "")
// (nothing delivered yet) answers up to this position.
func (b *Broker) ensureStart(ctx context.Context) (position, error) {
	b.startMu.Lock()
	defer b.startMu.Unlock()
	if b.positioned {
		return b.start, nil
	}
	s, err := b.snapshot(ctx)
	if err != nil {
		return position{}, err
	}
	if s.exists {
		b.start = position{epoch: s.epoch, id: s.lastGenerated}
		// Just before the first millisecond to deliver.
		since := uint64(max(1, b.startedAt.Add(-startSlack).UnixMilli()))
		if before := (streamID{since - 1, math.MaxUint64}); before.less(b.start.id) {
			b.start.id = before
		}
	}
	b.positioned = true
	return b.start, nil
}

// Skipped returns how many stream entries that are not valid messages, or
// are of a newer format, Since has skipped.
func (b *Broker) Skipped() uint64 { return b.skipped.Load() }

// After implements hub.Sequencer: messages of one epoch are ordered by
// their stream IDs.
func (b *Broker) After(id, ref string) bool {
	a, ok1 := parseID(id)
	r, ok2 := parseID(ref)
	return !ok1 || !ok2 || a.epoch != r.epoch || r.id.less(a.id)
}

// SetRetention implements hub.Broker. Redis trims the stream on the next
// publish; Since applies the age bounds at once. Changed rules apply to
// the messages stored before at once, as if each had been published under
// them (refile, retain.go), on every instance sharing the stream.
func (b *Broker) SetRetention(r hub.Retention) {
	next := newRetention(r)
	if old := b.retention.Swap(next); rulesChanged(old, next) {
		b.refile(next, old.rules)
	}
}

// RetainsByRule implements hub.RuleRetainer.
func (b *Broker) RetainsByRule() {}

// Close implements hub.Broker: it stops the reader and closes the
// connections.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.runMu.Lock()
		cancel, done := b.cancel, b.done
		b.runMu.Unlock()
		if cancel != nil {
			cancel()
		}
		b.stopSignals()
		// Closing the client also ends a blocked XREAD at once.
		b.closeErr = b.client.Close()
		if done != nil {
			<-done
		}
	})
	return b.closeErr
}

// String describes the broker for logs.
func (b *Broker) String() string {
	return fmt.Sprintf("redis broker (stream %s on %s)", b.stream, b.client.addr)
}

var clientLogOnce sync.Once

// clientLog passes go-redis's own log lines to zap, at debug level.
type clientLog struct{ logger *zap.Logger }

func (l clientLog) Printf(_ context.Context, format string, v ...any) {
	l.logger.Debug(fmt.Sprintf(format, v...))
}

// Interface guards
var (
	_ hub.Broker        = (*Broker)(nil)
	_ hub.Sequencer     = (*Broker)(nil)
	_ hub.Signaler      = (*Broker)(nil)
	_ hub.LossReporter  = (*Broker)(nil)
	_ hub.OncePublisher = (*Broker)(nil)
	_ hub.LinkReporter  = (*Broker)(nil)
	_ hub.Leaser        = (*Broker)(nil)
	_ hub.RuleRetainer  = (*Broker)(nil)
)
