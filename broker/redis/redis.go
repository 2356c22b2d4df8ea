// Package redis is a hub.Broker on Redis Streams, for running several Caddy
// instances as one: each publishes a hub's messages into one stream and
// reads the stream back to fan out to its own subscribers, so every
// instance sees the same messages, in the same order, with the same IDs and
// history.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mathrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
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
	client   *goredis.Client
	addr     string
	stream   string
	epochKey string
	logger   *zap.Logger

	retention atomic.Pointer[hub.Retention]

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
}

// New returns a broker for cfg with retention r. It opens no connection:
// that waits for Start or the first Publish.
func New(cfg Config, r hub.Retention) (*Broker, error) {
	opts, err := cfg.clientOptions()
	if err != nil {
		return nil, err
	}
	if cfg.Stream == "" {
		return nil, errors.New("redis broker: no stream key")
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
		client:    goredis.NewClient(opts),
		addr:      opts.Addr,
		stream:    cfg.Stream,
		epochKey:  cfg.Stream + ":epoch",
		logger:    logger.With(zap.String("stream", cfg.Stream), zap.String("redis", opts.Addr)),
	}
	b.SetRetention(r)
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
// It renews the epoch when the stream does not exist: new, or lost by
// Redis.
//
// KEYS: stream, epoch. ARGV: epoch to use if renewing, MAXLEN ("0": none),
// MINID ("0": none), then topic, event and data of each message.
var publishScript = goredis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
	epoch = ARGV[1]
	redis.call('SET', KEYS[2], epoch)
end
local out = {epoch}
for i = 4, #ARGV, 3 do
	out[#out + 1] = redis.call('XADD', KEYS[1], '*', 'epoch', epoch,
		'topic', ARGV[i], 'event', ARGV[i + 1], 'data', ARGV[i + 2])
end
if ARGV[2] ~= '0' then redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2]) end
if ARGV[3] ~= '0' then redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3]) end
return out
`)

// Publish implements hub.Broker. The messages are in the stream when it
// returns; every instance (this one too) delivers them from its reader.
func (b *Broker) Publish(ctx context.Context, msgs []hub.Message) ([]string, error) {
	// Fix where this instance's delivery starts before the first write,
	// so its own first messages are delivered too.
	if _, err := b.ensureStart(ctx); err != nil {
		return nil, b.failed("publishing to", err)
	}
	maxLen, minID := b.trimBounds(time.Now())
	args := make([]any, 0, 3+3*len(msgs))
	args = append(args, newEpoch(), maxLen, minID)
	for _, m := range msgs {
		args = append(args, m.Topic, m.Event, m.Data)
	}
	res, err := publishScript.Run(ctx, b.client, []string{b.stream, b.epochKey}, args...).StringSlice()
	if err != nil {
		return nil, b.failed("publishing to", err)
	}
	if len(res) != len(msgs)+1 {
		return nil, fmt.Errorf("redis broker: publishing to stream %s: %d replies for %d messages", b.stream, len(res)-1, len(msgs))
	}
	ids := make([]string, len(msgs))
	for i, id := range res[1:] {
		ids[i] = res[0] + "-" + id
	}
	return ids, nil
}

// trimBounds returns the XTRIM bounds for the current retention ("0" for
// none), never below the delivery floor. Trimming is approximate: Redis
// drops whole stream nodes, cheaply, and may keep some entries more.
func (b *Broker) trimBounds(now time.Time) (maxLen, minID string) {
	r := b.retention.Load()
	maxLen, minID = "0", "0"
	if r.Count > 0 || r.MaxAge <= 0 {
		maxLen = strconv.Itoa(max(r.Count, deliveryFloor))
	}
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
	s, err := b.snapshot(ctx, "", "", 0)
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

// snapshot is the stream's state, read atomically.
type snapshot struct {
	exists        bool
	epoch         string
	lastGenerated streamID
	maxDeleted    streamID
	knowsDeleted  bool              // Redis 7.0+ reports the last trimmed entry
	first         *goredis.XMessage // nil when the stream is empty
	entries       []goredis.XMessage
}

// snapshot reads the stream's state and, when from is set, up to limit
// entries (0: all) from to down to from (XREVRANGE syntax), in one
// MULTI/EXEC. The entries come back oldest first.
func (b *Broker) snapshot(ctx context.Context, from, to string, limit int64) (snapshot, error) {
	var s snapshot
	pipe := b.client.TxPipeline()
	exists := pipe.Exists(ctx, b.stream)
	epoch := pipe.Get(ctx, b.epochKey)
	info := pipe.XInfoStream(ctx, b.stream)
	var rng *goredis.XMessageSliceCmd
	switch {
	case from == "":
	case limit > 0:
		rng = pipe.XRevRangeN(ctx, b.stream, to, from, limit)
	default:
		rng = pipe.XRevRange(ctx, b.stream, to, from)
	}
	// A missing stream fails XINFO inside the transaction; each command's
	// own error says what went wrong.
	_, _ = pipe.Exec(ctx)
	if err := exists.Err(); err != nil {
		return s, err
	}
	s.exists = exists.Val() == 1
	if !s.exists {
		return s, nil
	}
	if err := epoch.Err(); err != nil && !errors.Is(err, goredis.Nil) {
		return s, err
	}
	s.epoch = epoch.Val()
	if err := info.Err(); err != nil {
		return s, err
	}
	in := info.Val()
	s.lastGenerated, _ = parseStreamID(in.LastGeneratedID)
	s.maxDeleted, s.knowsDeleted = parseStreamID(in.MaxDeletedEntryID)
	if in.Length > 0 {
		s.first = &in.FirstEntry
	}
	if rng != nil {
		if err := rng.Err(); err != nil {
			return s, err
		}
		s.entries = rng.Val()
		slices.Reverse(s.entries)
	}
	return s, nil
}

// Since implements hub.Broker. History bounds apply to what this instance
// has delivered: the count to the newest messages up to upto, the age to
// now. The stream itself keeps more (the delivery floor).
func (b *Broker) Since(ctx context.Context, lastID, upto string) ([]*hub.Message, *hub.Gap, error) {
	end, ok := parseID(upto)
	if upto == "" || !ok {
		var err error
		if end, err = b.ensureStart(ctx); err != nil {
			return nil, nil, b.failed("reading", err)
		}
	}
	r := *b.retention.Load()
	keep := r.Count > 0 || r.MaxAge > 0
	// One more than the count tells whether the count cut anything off.
	limit := int64(0)
	if r.Count > 0 {
		limit = int64(r.Count) + 1
	}
	last, lastOK := parseID(lastID)
	// Read (lastID, end] when lastID can be resumed from; up to end
	// otherwise.
	from := "-"
	switch {
	case !keep:
		from = ""
	case lastOK && !last.id.less(end.id):
		from = "" // nothing after lastID was delivered here yet
	case lastOK:
		from = "(" + last.id.String()
	}
	s, err := b.snapshot(ctx, from, end.id.String(), limit)
	if err != nil {
		return nil, nil, b.failed("reading", err)
	}
	if !s.exists {
		if lastID == hub.Earliest {
			return nil, nil, nil
		}
		return nil, &hub.Gap{LastID: lastID}, nil
	}
	resumable := lastOK && last.epoch == s.epoch && !s.lastGenerated.less(last.id)
	if keep && !resumable && from != "-" {
		if s, err = b.snapshot(ctx, "-", end.id.String(), limit); err != nil {
			return nil, nil, b.failed("reading", err)
		}
	}
	if end.epoch != s.epoch {
		s.entries = nil // this instance delivered from a stream Redis lost
	}

	gap := lastID != hub.Earliest && !resumable
	switch {
	case gap, lastID == hub.Earliest:
	case !keep:
		gap = last.id.less(end.id)
	case s.knowsDeleted:
		gap = last.id.less(s.maxDeleted)
	case s.first != nil:
		// Redis before 7.0 does not report the last trimmed entry: an ID
		// older than the first entry may have missed some.
		first, _ := parseStreamID(s.first.ID)
		gap = last.id.less(first)
	}
	if limit > 0 && int64(len(s.entries)) == limit {
		s.entries = s.entries[1:]
		gap = gap || lastID != hub.Earliest
	}
	var cutoff uint64 // entries with milliseconds below are too old
	if r.MaxAge > 0 {
		cutoff = uint64(max(0, time.Now().Add(-r.MaxAge).UnixMilli()))
	}
	var out []*hub.Message
	for _, x := range s.entries {
		m, ok := decode(x)
		switch {
		case !ok:
		case m.id.ms < cutoff:
			gap = gap || lastID != hub.Earliest
		default:
			out = append(out, m.Message)
		}
	}
	if !gap {
		return out, nil, nil
	}
	g := &hub.Gap{LastID: lastID}
	switch {
	case len(out) > 0:
		g.FirstID = out[0].ID
	case s.first != nil && keep:
		if m, ok := decode(*s.first); ok && m.id.ms >= cutoff {
			g.FirstID = m.ID
		}
	}
	return out, g, nil
}

// After implements hub.Sequencer: messages of one epoch are ordered by
// their stream IDs.
func (b *Broker) After(id, ref string) bool {
	a, ok1 := parseID(id)
	r, ok2 := parseID(ref)
	return !ok1 || !ok2 || a.epoch != r.epoch || r.id.less(a.id)
}

// SetRetention implements hub.Broker. Redis trims the stream on the next
// publish; Since applies the age bound at once.
func (b *Broker) SetRetention(r hub.Retention) { b.retention.Store(&r) }

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
	return fmt.Sprintf("redis broker (stream %s on %s)", b.stream, b.addr)
}

// read is the reader: it follows the stream from where this instance's
// delivery starts and delivers every entry, in order, until ctx ends. While
// Redis is unreachable it retries with capped back-off; when Redis is back
// it goes on from the last entry it delivered.
func (b *Broker) read(ctx context.Context, deliver func(*hub.Message)) {
	defer close(b.done)
	var pos position
	positioned, failing := false, false
	backoff := time.Duration(0)
	for {
		var err error
		var streams []goredis.XStream
		switch {
		case !positioned:
			pos, err = b.ensureStart(ctx)
			positioned = err == nil
		case failing:
			pos, err = b.resync(ctx, pos)
		}
		if err == nil {
			streams, err = b.client.XRead(ctx, &goredis.XReadArgs{
				Streams: []string{b.stream, pos.id.String()},
				Count:   readBatch,
				Block:   readBlock,
			}).Result()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, goredis.Nil) {
			if !failing {
				b.logger.Warn("redis unreachable: publishing answers 503 until it is back; retrying", zap.Error(err))
			}
			failing = true
			backoff = min(maxBackoff, max(minBackoff, 2*backoff))
			wait := time.NewTimer(backoff/2 + mathrand.N(backoff/2))
			select {
			case <-ctx.Done():
				wait.Stop()
				return
			case <-wait.C:
			}
			continue
		}
		if failing {
			b.logger.Info("redis reachable again: delivering from the last message seen", zap.String("after", pos.id.String()))
			failing, backoff = false, 0
		}
		for _, st := range streams {
			for _, x := range st.Messages {
				m, ok := decode(x)
				if id, valid := parseStreamID(x.ID); valid {
					pos.id = id
				}
				if !ok {
					continue // not an entry this broker wrote
				}
				pos.epoch = m.epoch
				deliver(m.Message)
			}
		}
	}
}

// resync runs after an outage, before reading again: it finds out whether
// the stream outlived it and where to go on from.
func (b *Broker) resync(ctx context.Context, pos position) (position, error) {
	s, err := b.snapshot(ctx, "", "", 0)
	if err != nil {
		return pos, err
	}
	switch {
	case !s.exists:
		// Redis lost the stream (or never had it): read the next one from
		// its start.
		if pos != (position{}) {
			b.logger.Warn("redis lost the stream; messages not yet delivered here are gone, resuming clients get a gap")
		}
		return position{}, nil
	case pos.epoch != "" && s.epoch != "" && s.epoch != pos.epoch:
		b.logger.Warn("the stream was recreated (new epoch); reading it from its start")
		return position{epoch: s.epoch}, nil
	case s.lastGenerated.less(pos.id):
		// Restored from an older copy: new entries follow its last one.
		return position{epoch: s.epoch, id: s.lastGenerated}, nil
	case pos.id.less(s.maxDeleted):
		b.logger.Warn("messages were trimmed from the stream before this instance read them; raise history to cover longer outages",
			zap.String("after", pos.id.String()), zap.String("trimmed_up_to", s.maxDeleted.String()))
	}
	return pos, nil
}

var clientLogOnce sync.Once

// clientLog passes go-redis's own log lines to zap, at debug level.
type clientLog struct{ logger *zap.Logger }

func (l clientLog) Printf(_ context.Context, format string, v ...any) {
	l.logger.Debug(fmt.Sprintf(format, v...))
}

// entry is a decoded stream entry.
type entry struct {
	*hub.Message
	epoch string
	id    streamID
}

// decode turns a stream entry into a message; ok is false for entries
// this broker did not write (a foreign writer on the key), which are
// skipped.
func decode(x goredis.XMessage) (entry, bool) {
	id, ok := parseStreamID(x.ID)
	field := func(name string) string {
		s, valid := x.Values[name].(string)
		ok = ok && valid
		return s
	}
	epoch, topic, event, data := field("epoch"), field("topic"), field("event"), field("data")
	if !ok || epoch == "" || strings.Contains(epoch, "-") || hub.ValidateTopic(topic) != nil {
		return entry{}, false
	}
	return entry{
		Message: &hub.Message{
			ID:    epoch + "-" + x.ID,
			Topic: topic,
			Event: event,
			Data:  data,
			Time:  time.UnixMilli(int64(min(id.ms, 1<<62))),
		},
		epoch: epoch,
		id:    id,
	}, true
}

func newEpoch() string {
	var e [4]byte
	_, _ = rand.Read(e[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(e[:])
}

// streamID is a Redis stream entry ID, MILLISECONDS-SEQUENCE.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return streamID{}, false
	}
	return streamID{a, b}, true
}

func (a streamID) less(b streamID) bool {
	return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq
}

func (a streamID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

// position is an entry of one epoch of the stream; the zero value is
// "before the first entry" of a stream not written yet.
type position struct {
	epoch string
	id    streamID
}

// parseID parses a message ID, EPOCH-MILLISECONDS-SEQUENCE.
func parseID(s string) (position, bool) {
	epoch, rest, ok := strings.Cut(s, "-")
	if !ok || epoch == "" {
		return position{}, false
	}
	id, ok := parseStreamID(rest)
	return position{epoch: epoch, id: id}, ok
}
