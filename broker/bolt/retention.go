package bolt

import (
	"encoding/binary"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// keyDropped, in the meta bucket, is the highest sequence ever deleted
// from the file, in decimal: after a restart, a resume from before it is
// told of a gap whatever its topics, what was dropped being no longer
// known by topic. Files from before it have their messages as one run of
// sequences, so everything before the first was dropped.
var keyDropped = []byte("dropped")

// index reads the topic and time of every record into a new hub.Retainer,
// which then keeps the retention (history and retain rules) as the
// memory broker does: the records it drops are deleted by apply, in the
// transaction that dropped them. A damaged record counts in history as
// the oldest, so it goes first.
func (b *Broker) index(tx *bbolt.Tx) {
	b.pending = b.pending[:0]
	b.idx = hub.NewRetainer(b.retention, func() time.Time { return b.now() }, func(seq uint64) { b.pending = append(b.pending, seq) })
	bk := tx.Bucket(bucketMessages)
	c := bk.Cursor()
	var first uint64
	for k, v := c.First(); k != nil; k, v = c.Next() {
		seq := binary.BigEndian.Uint64(k)
		if first == 0 {
			first = seq
		}
		if rec, ok := parseRecord(v); ok {
			b.idx.Add(seq, string(rec.topic), time.Unix(0, rec.time))
		} else {
			b.idx.Add(seq, "", time.Time{})
		}
	}
	last := bk.Sequence()
	floor, err := strconv.ParseUint(string(tx.Bucket(bucketMeta).Get(keyDropped)), 10, 64)
	switch {
	case err == nil:
	case first > 0:
		floor = first - 1
	default:
		floor = last
	}
	b.idx.Forgotten(min(floor, last), last)
	b.last = last
}

// apply deletes the records the retainer dropped since the last apply.
func (b *Broker) apply(tx *bbolt.Tx) error {
	if len(b.pending) == 0 {
		return nil
	}
	bk, meta := tx.Bucket(bucketMessages), tx.Bucket(bucketMeta)
	high, _ := strconv.ParseUint(string(meta.Get(keyDropped)), 10, 64)
	for _, seq := range b.pending {
		if err := bk.Delete(seqKey(seq)); err != nil {
			return err
		}
		high = max(high, seq)
	}
	b.pending = b.pending[:0]
	return meta.Put(keyDropped, strconv.AppendUint(nil, high, 10))
}

// update runs fn and apply in one transaction, with the retainer read
// from the file first if it is not up to date. On failure the retainer
// is read again next time: it may have dropped what the file still has.
func (b *Broker) update(fn func(tx *bbolt.Tx) error) error {
	err := b.db.Update(func(tx *bbolt.Tx) error {
		if b.idx == nil {
			b.index(tx)
		}
		if err := fn(tx); err != nil {
			return err
		}
		b.idx.Trim(b.now())
		return b.apply(tx)
	})
	if err != nil {
		b.idx = nil
	}
	return err
}
