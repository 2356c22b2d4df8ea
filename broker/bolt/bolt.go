// Package bolt is a hub.Broker that keeps a hub's history in a bbolt file
// on local disk: a restart of Caddy keeps the history and the IDs, so
// clients resume across it. It serves one Caddy instance; one file holds
// one hub.
package bolt

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// OpenTimeout is how long Start waits for the file's lock before it fails:
// a file held by another process (or another hub) fails fast instead of
// hanging Caddy's start.
const OpenTimeout = 2 * time.Second

var (
	bucketMeta     = []byte("meta")
	bucketMessages = []byte("messages")
	keyEpoch       = []byte("epoch")
	keyFormat      = []byte("format") // the file's format version, in decimal
)

// Broker keeps messages in a bbolt file, keyed by sequence. IDs are
// "EPOCH-SEQ" as with the memory broker, but EPOCH is stored in the file:
// it changes only when the file is new, so IDs from before a restart still
// resume, and IDs from a deleted or replaced file are recognised as a gap.
type Broker struct {
	path string
	now  func() time.Time

	mu        sync.Mutex
	db        *bbolt.DB
	epoch     string
	startSeq  uint64 // last sequence in the file at Start: Since's end before any delivery
	deliver   func(*hub.Message)
	retention hub.Retention
	idx       *hub.Retainer // nil until read from the file (retention.go)
	pending   []uint64      // sequences idx dropped, to delete
	last      uint64        // the last sequence issued

	skipped atomic.Uint64 // records Since left out as damaged or invalid

	// Logger, when set (before Start), receives a warning when Since
	// skips records.
	Logger *zap.Logger

	// MakeDir, when set (before Start), has Start create the file's
	// directory (mode 0700) if it is missing.
	MakeDir bool
}

// New returns a broker on the file at path (created if missing; its
// directory must exist). The file is opened by Start, not here, so a
// configuration that is only validated leaves it alone.
func New(path string, r hub.Retention) *Broker {
	return &Broker{path: path, now: time.Now, retention: r}
}

// Start opens and locks the file, and applies retention to what it holds.
func (b *Broker) Start(deliver func(*hub.Message)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.MakeDir {
		if err := os.MkdirAll(filepath.Dir(b.path), 0o700); err != nil {
			return fmt.Errorf("bolt broker: %w", err)
		}
	}
	db, err := open(b.path)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if err := checkFormat(meta); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketMessages); err != nil {
			return err
		}
		epoch := string(meta.Get(keyEpoch))
		if epoch == "" {
			epoch = newEpoch()
			if err := meta.Put(keyEpoch, []byte(epoch)); err != nil {
				return err
			}
		}
		b.epoch = epoch
		b.startSeq = tx.Bucket(bucketMessages).Sequence()
		b.index(tx)
		b.idx.Trim(b.now())
		return b.apply(tx)
	})
	if err != nil {
		_ = db.Close()
		b.idx = nil
		return fmt.Errorf("bolt broker: initialising %s: %w", b.path, err)
	}
	b.db, b.deliver = db, deliver
	return nil
}

// checkFormat refuses a file of a format newer than this build reads, or
// one whose format it cannot make out, before anything in it is read or
// changed; a file without a format (new, or written before files had one)
// is marked with this build's.
func checkFormat(meta *bbolt.Bucket) error {
	v := meta.Get(keyFormat)
	if v == nil {
		return meta.Put(keyFormat, []byte(strconv.Itoa(formatVersion)))
	}
	format, err := strconv.ParseUint(string(v), 10, 32)
	switch {
	case err != nil || format == 0:
		return fmt.Errorf("the file's format version %q is damaged", v)
	case format > formatVersion:
		return fmt.Errorf("the file was written in history format %d, newer than this build reads (format %d): run the release that wrote it, or move the file aside to start an empty history", format, formatVersion)
	}
	return nil
}

// open opens the file, failing fast on a lock and clearly on a file that is
// not a bbolt database. bbolt may panic on some damaged files; that becomes
// an error too.
func open(path string) (db *bbolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("bolt broker: %s is damaged: %v", path, r)
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: OpenTimeout})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("bolt broker: %s is locked by another process (another Caddy, or another hub using the same file); gave up after %s", path, OpenTimeout)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, fmt.Errorf("bolt broker: %s is not a valid history file (damaged, or not a bbolt database): %w", path, err)
	default:
		return nil, fmt.Errorf("bolt broker: opening %s: %w", path, err)
	}
}

func newEpoch() string {
	var e [4]byte
	_, _ = rand.Read(e[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(e[:])
}

// Publish implements hub.Broker: the messages are on disk (fsynced) before
// they are delivered and before it returns.
func (b *Broker) Publish(_ context.Context, msgs []hub.Message) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil, fmt.Errorf("bolt broker: %w: %s is not open", hub.ErrUnavailable, b.path)
	}
	now := b.now()
	stored := make([]*hub.Message, len(msgs))
	err := b.update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketMessages)
		for i := range msgs {
			seq, err := bk.NextSequence()
			if err != nil {
				return err
			}
			m := msgs[i]
			m.ID, m.Time = b.id(seq), now
			if err := bk.Put(seqKey(seq), encode(&m)); err != nil {
				return err
			}
			b.idx.Add(seq, m.Topic, now)
			stored[i] = &m
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt broker: %w: storing in %s: %v", hub.ErrUnavailable, b.path, err)
	}
	if n := len(stored); n > 0 {
		b.last = max(b.last, b.parsed(stored[n-1].ID))
	}
	ids := make([]string, len(stored))
	for i, m := range stored {
		ids[i] = m.ID
		if b.deliver != nil {
			b.deliver(m)
		}
	}
	return ids, nil
}

// Since implements hub.Broker. What retention drops by age is deleted
// first. With Upto "" (the hub delivered nothing yet) it reads up to the
// last message the file held at Start. It reads each record's topic first
// and copies the rest only of the records q asks for; a record that is
// damaged, of a format version this build cannot read, or fails
// hub.ValidateMessage is skipped.
func (b *Broker) Since(_ context.Context, q hub.Query) (hub.Page, error) {
	var page hub.Page
	from, end, err := b.resume(q, &page)
	if err != nil {
		return hub.Page{}, err
	}
	b.mu.Lock()
	db := b.db
	b.mu.Unlock()
	if db == nil { // closed meanwhile
		return hub.Page{}, fmt.Errorf("bolt broker: %w: %s is not open", hub.ErrUnavailable, b.path)
	}
	var skipped []uint64
	var newer byte // the newest record format met that this build cannot read
	err = db.View(func(tx *bbolt.Tx) error {
		limit := q.PageLimit()
		c := tx.Bucket(bucketMessages).Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil && binary.BigEndian.Uint64(k) <= end; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			rec, ok := parseRecord(v)
			if !ok {
				if len(v) > 0 && v[0] > binaryRecord {
					newer = max(newer, v[0])
				}
				skipped = append(skipped, seq)
				continue
			}
			if !q.Accepts(string(rec.topic)) {
				continue
			}
			if len(page.Messages) == limit {
				page.More = true
				break
			}
			m := rec.message()
			if hub.ValidateMessage(m) != nil {
				skipped = append(skipped, seq)
				continue
			}
			m.ID = b.id(seq)
			page.Messages = append(page.Messages, m)
		}
		return nil
	})
	if err != nil {
		return hub.Page{}, fmt.Errorf("bolt broker: reading %s: %w", b.path, err)
	}
	if len(skipped) > 0 {
		b.skipped.Add(uint64(len(skipped)))
		if b.Logger != nil {
			fields := []zap.Field{zap.String("file", b.path), zap.Int("records", len(skipped)), zap.Uint64("first_sequence", skipped[0])}
			if newer > 0 {
				fields = append(fields, zap.Uint8("newest_format_met", newer), zap.Int("reads_up_to", binaryRecord))
			}
			b.Logger.Warn("skipped damaged or invalid history records, or records of a newer format; they are never delivered", fields...)
		}
	}
	return page, nil
}

// resume applies retention by age, then works out where q's page starts,
// where it ends, and its gap, if any.
func (b *Broker) resume(q hub.Query, page *hub.Page) (from, end uint64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return 0, 0, fmt.Errorf("bolt broker: %w: %s is not open", hub.ErrUnavailable, b.path)
	}
	if b.idx != nil {
		b.idx.Trim(b.now())
	}
	// A write only when there is something to delete (or the retainer to
	// read again): a resume costs no fsync.
	if b.idx == nil || len(b.pending) > 0 {
		if err := b.update(func(*bbolt.Tx) error { return nil }); err != nil {
			return 0, 0, fmt.Errorf("bolt broker: %w: trimming %s: %v", hub.ErrUnavailable, b.path, err)
		}
	}
	end, _ = b.parse(q.Upto)
	if q.Upto == "" {
		end = b.startSeq // what the file held before this run
	}
	from = 1
	switch seq, ok := b.parse(q.After); {
	case q.After == hub.Earliest:
	case !ok || seq > b.last:
		page.Gap = &hub.Gap{LastID: q.After}
	case b.idx.Missed(seq, end, q):
		page.Gap = &hub.Gap{LastID: q.After}
		from = seq + 1
	default:
		from = seq + 1
	}
	if first := b.idx.First(); page.Gap != nil && first != 0 {
		page.Gap.FirstID = b.id(first)
	}
	return from, end, nil
}

// Head implements hub.Broker: the last message the file held at Start.
func (b *Broker) Head(context.Context) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.startSeq == 0 {
		return "", nil
	}
	return b.id(b.startSeq), nil
}

// Skipped returns how many damaged or invalid records, or records of a
// newer format, Since has skipped.
func (b *Broker) Skipped() uint64 { return b.skipped.Load() }

func (b *Broker) id(seq uint64) string { return b.epoch + "-" + strconv.FormatUint(seq, 10) }

// parsed returns the sequence of one of this file's IDs, 0 for any other.
func (b *Broker) parsed(id string) uint64 {
	seq, _ := b.parse(id)
	return seq
}

// parse returns the sequence of one of this file's IDs; ok is false for
// any other string.
func (b *Broker) parse(id string) (uint64, bool) {
	epoch, num, ok := strings.Cut(id, "-")
	if !ok || epoch != b.epoch {
		return 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}

// SetRetention implements hub.Broker; the new bounds and rules apply to
// the file at once (before Start, when it opens), as the memory broker
// applies them.
func (b *Broker) SetRetention(r hub.Retention) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.retention = r
	if b.db == nil {
		return
	}
	// On a disk error the file is read again at the next publish or
	// resume, and retention applied then.
	_ = b.update(func(*bbolt.Tx) error {
		b.idx.SetRetention(r)
		return nil
	})
}

// RetainsByRule implements hub.RuleRetainer.
func (b *Broker) RetainsByRule() {}

// Close implements hub.Broker: it closes the file, releasing its lock.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil
	}
	err := b.db.Close()
	b.db = nil
	if err != nil {
		return fmt.Errorf("bolt broker: closing %s: %w", b.path, err)
	}
	return nil
}

// String describes the broker for logs.
func (b *Broker) String() string { return fmt.Sprintf("bolt broker (%s)", b.path) }

// Interface guards
var (
	_ hub.Broker       = (*Broker)(nil)
	_ hub.RuleRetainer = (*Broker)(nil)
)
