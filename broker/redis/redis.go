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
	skipped   atomic.Uint64 // stream entries Since left out as not valid messages

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
	if !validEpoch(res[0]) {
		return nil, fmt.Errorf("redis broker: publishing to stream %s: %s holds %.40q, not an epoch: delete it", b.stream, b.epochKey, res[0])
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

// snapshot is the stream's state, read atomically.
type snapshot struct {
	exists        bool
	epoch         string
	lastGenerated streamID
	maxDeleted    streamID
	knowsDeleted  bool              // Redis 7.0+ reports the last trimmed entry
	first         *goredis.XMessage // nil when the stream is empty
}

// snapshot reads the stream's state in one MULTI/EXEC.
func (b *Broker) snapshot(ctx context.Context) (snapshot, error) {
	var s snapshot
	pipe := b.client.TxPipeline()
	exists := pipe.Exists(ctx, b.stream)
	epoch := pipe.Get(ctx, b.epochKey)
	info := pipe.XInfoStream(ctx, b.stream)
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
	return s, nil
}

// Since implements hub.Broker. History bounds apply to what this instance
// has delivered: the count to the newest messages up to Upto, the age to
// now. The stream itself keeps more (the delivery floor).
//
// Only what q asks for crosses the wire: scripts in Redis find where the
// count bound starts and read the entries' headers (ID, epoch, topic,
// event), a chunk at a time; the data is fetched only for the entries that
// match, at most a page of them.
func (b *Broker) Since(ctx context.Context, q hub.Query) (hub.Page, error) {
	end, ok := parseID(q.Upto)
	if q.Upto == "" || !ok {
		var err error
		if end, err = b.ensureStart(ctx); err != nil {
			return hub.Page{}, b.failed("reading", err)
		}
	}
	r := *b.retention.Load()
	keep := r.Keeps()
	earliest := q.After == hub.Earliest
	last, lastOK := parseID(q.After)
	s, err := b.snapshot(ctx)
	if err != nil {
		return hub.Page{}, b.failed("reading", err)
	}
	if !s.exists {
		if earliest {
			return hub.Page{}, nil
		}
		return hub.Page{Gap: &hub.Gap{LastID: q.After}}, nil
	}
	resumable := lastOK && last.epoch == s.epoch && !s.lastGenerated.less(last.id)
	gap := !earliest && !resumable
	switch {
	case gap, earliest:
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
	var cutoff uint64 // entries with milliseconds below are too old
	if r.MaxAge > 0 {
		cutoff = uint64(max(0, time.Now().Add(-r.MaxAge).UnixMilli()))
	}

	var page hub.Page
	var firstKept string // the oldest retained entry, for the gap
	// Read (After, end] when After can be resumed from; up to end
	// otherwise. Nothing when history is off, when nothing after After
	// was delivered here yet, or when this instance delivered from a
	// stream Redis lost.
	read := keep && end.epoch == s.epoch && !(resumable && !last.id.less(end.id))
	if read {
		start := "-"
		if resumable {
			start = "(" + last.id.String()
		}
		cut, err := b.countCut(ctx, start, end.id, r.Count)
		if err != nil {
			return hub.Page{}, b.failed("reading", err)
		}
		if cut != "" {
			start = "(" + cut
			gap = gap || !earliest
		}
		var matched []string
		var skipped, missing int
		if matched, page.More, skipped, firstKept, err = b.scan(ctx, q, start, end.id, cutoff, &gap); err != nil {
			return hub.Page{}, b.failed("reading", err)
		}
		if page.Messages, missing, err = b.fetch(ctx, matched, &skipped); err != nil {
			return hub.Page{}, b.failed("reading", err)
		}
		// The snapshot and the reads are not one transaction: what a
		// publish trimmed meanwhile, after After, was not sent.
		if missing > 0 {
			gap = gap || !earliest
		}
		if !gap && resumable && s.knowsDeleted {
			if now, err := b.snapshot(ctx); err == nil && last.id.less(now.maxDeleted) {
				gap = true
			}
		}
		if skipped > 0 {
			b.skipped.Add(uint64(skipped))
			b.logger.Warn("skipped stream entries that are not valid messages; they are never delivered", zap.Int("entries", skipped))
		}
	}
	if !gap {
		return page, nil
	}
	page.Gap = &hub.Gap{LastID: q.After, FirstID: firstKept}
	if firstKept == "" && s.first != nil && keep {
		if m, ok := decode(*s.first); ok && m.id.ms >= cutoff {
			page.Gap.FirstID = m.ID
		}
	}
	return page, nil
}

// Chunks of the scripts that read history: they bound what Redis holds in
// a script at once (scanChunk entries with their data).
const scanChunk = 128

// countScript finds where the count bound of history starts: the newest
// entry in [ARGV[2], ARGV[1]] (XREVRANGE bounds) that is not one of the
// newest ARGV[3] there, or false when the range holds no more. Only the ID
// leaves Redis.
var countScript = goredis.NewScript(`
local hi, seen, count = ARGV[1], 0, tonumber(ARGV[3])
while true do
	local batch = redis.call('XREVRANGE', KEYS[1], hi, ARGV[2], 'COUNT', ARGV[4])
	for _, e in ipairs(batch) do
		seen = seen + 1
		if seen > count then return e[1] end
		hi = '(' .. e[1]
	end
	if #batch < tonumber(ARGV[4]) then return false end
end
`)

// countCut returns the newest entry ID in (start, end] that the count bound
// drops, "" for none.
func (b *Broker) countCut(ctx context.Context, start string, end streamID, count int) (string, error) {
	cut, err := countScript.Run(ctx, b.client, []string{b.stream}, end.String(), start, count, scanChunk).Text()
	if errors.Is(err, goredis.Nil) {
		return "", nil
	}
	return cut, err
}

// headerScript returns, for up to ARGV[3] entries in [ARGV[1], ARGV[2]]
// (XRANGE bounds), the ID, epoch, topic and event, without the data, as
// one string of length-prefixed fields ("LEN:BYTES", four per entry): one
// reply to read rather than four per entry. Each field is cut one byte
// past what a valid one may hold, so a hostile entry costs no more than a
// valid one and still fails validation.
var headerScript = goredis.NewScript(`
local out = {}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])) do
	local v = {epoch = '', topic = '', event = ''}
	local f = e[2]
	for i = 1, #f - 1, 2 do
		if v[f[i]] then v[f[i]] = string.sub(f[i + 1], 1, 257) end
	end
	for _, x in ipairs({e[1], v.epoch, v.topic, v.event}) do
		out[#out + 1] = #x .. ':' .. x
	end
end
return table.concat(out)
`)

// scan reads the headers of the entries in (start, end], a chunk at a
// time, and returns the IDs of the first q.PageLimit() valid ones that q
// asks for; more is true when there are more. Entries older than cutoff
// are a gap, unless q asks for everything retained. firstKept is the first
// valid entry not too old.
func (b *Broker) scan(ctx context.Context, q hub.Query, start string, end streamID, cutoff uint64, gap *bool) (matched []string, more bool, skipped int, firstKept string, err error) {
	limit := q.PageLimit()
	for {
		h, err := headerScript.Run(ctx, b.client, []string{b.stream}, start, end.String(), scanChunk).Text()
		if err != nil {
			return nil, false, 0, "", err
		}
		entries, last := 0, ""
		for ; h != ""; entries++ {
			var f [4]string
			for i := range f {
				var ok bool
				if f[i], h, ok = cutField(h); !ok {
					return nil, false, 0, "", errors.New("malformed reply from the header script")
				}
			}
			id, epoch, topic, event := f[0], f[1], f[2], f[3]
			last = id
			sid, ok := parseStreamID(id)
			switch {
			case !ok || !validEpoch(epoch):
				skipped++
				continue
			case sid.ms < cutoff:
				*gap = *gap || q.After != hub.Earliest
				continue
			}
			if firstKept == "" {
				firstKept = epoch + "-" + id
			}
			// The full check only for what q asks for: the rest is
			// skipped anyway.
			if !q.Accepts(topic) {
				continue
			}
			if hub.ValidateTopic(topic) != nil || hub.ValidateEvent(event) != nil {
				skipped++
				continue
			}
			if len(matched) == limit {
				return matched, true, skipped, firstKept, nil
			}
			matched = append(matched, id)
		}
		if entries < scanChunk {
			return matched, false, skipped, firstKept, nil
		}
		start = "(" + last
	}
}

// cutField cuts the first "LEN:BYTES" field off s.
func cutField(s string) (field, rest string, ok bool) {
	n, rest, ok := strings.Cut(s, ":")
	l, err := strconv.Atoi(n)
	if !ok || err != nil || l < 0 || l > len(rest) {
		return "", "", false
	}
	return rest[:l], rest[l:], true
}

// fetch reads the entries ids in one round trip and decodes them; an entry
// that fails validation is skipped and counted, one trimmed meanwhile is
// left out and counted as missing.
func (b *Broker) fetch(ctx context.Context, ids []string, skipped *int) (msgs []*hub.Message, missing int, err error) {
	if len(ids) == 0 {
		return nil, 0, nil
	}
	pipe := b.client.Pipeline()
	cmds := make([]*goredis.XMessageSliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.XRangeN(ctx, b.stream, id, id, 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, err
	}
	out := make([]*hub.Message, 0, len(ids))
	for _, c := range cmds {
		if len(c.Val()) == 0 {
			missing++
		}
		for _, x := range c.Val() {
			m, ok := decode(x)
			if !ok {
				*skipped++
				continue
			}
			out = append(out, m.Message)
		}
	}
	return out, missing, nil
}

// Head implements hub.Broker: the stream position this instance's
// delivery began after.
func (b *Broker) Head(ctx context.Context) (string, error) {
	start, err := b.ensureStart(ctx)
	if err != nil {
		return "", b.failed("reading", err)
	}
	if start.epoch == "" {
		return "", nil
	}
	return start.epoch + "-" + start.id.String(), nil
}

// Skipped returns how many stream entries that are not valid messages
// Since has skipped.
func (b *Broker) Skipped() uint64 { return b.skipped.Load() }

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
	s, err := b.snapshot(ctx)
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
// this broker did not write (a foreign writer on the key) and for any that
// fail hub.ValidateMessage, which are skipped.
func decode(x goredis.XMessage) (entry, bool) {
	id, ok := parseStreamID(x.ID)
	field := func(name string) string {
		s, valid := x.Values[name].(string)
		ok = ok && valid
		return s
	}
	epoch, topic, event, data := field("epoch"), field("topic"), field("event"), field("data")
	if !ok || !validEpoch(epoch) {
		return entry{}, false
	}
	m := &hub.Message{
		ID:    epoch + "-" + x.ID,
		Topic: topic,
		Event: event,
		Data:  data,
		Time:  time.UnixMilli(int64(min(id.ms, 1<<62))),
	}
	if hub.ValidateMessage(m) != nil {
		return entry{}, false
	}
	return entry{Message: m, epoch: epoch, id: id}, true
}

// validEpoch reports whether e has the form newEpoch gives epochs: anyone
// who can write to Redis can write an entry or the epoch key, and the
// epoch goes into every message ID.
func validEpoch(e string) bool {
	if len(e) != 2*epochBytes {
		return false
	}
	for _, c := range []byte(e) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// epochBytes is the random bytes of an epoch, which is their hex.
const epochBytes = 4

func newEpoch() string {
	var e [epochBytes]byte
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

// Interface guards
var (
	_ hub.Broker    = (*Broker)(nil)
	_ hub.Sequencer = (*Broker)(nil)
	_ hub.Signaler  = (*Broker)(nil)
)
