package bolt

import (
	"encoding/binary"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	bbolt "go.etcd.io/bbolt"
)

// trim deletes what retention no longer keeps. Messages are stored as a
// contiguous run of sequences, oldest first, so it only cuts from the front.
func (b *Broker) trim(tx *bbolt.Tx) error {
	bk := tx.Bucket(bucketMessages)
	if !b.retention.Keeps() {
		if k, _ := bk.Cursor().First(); k == nil {
			return nil
		}
		// Recreating the bucket drops everything at once; its sequence
		// must carry on.
		seq := bk.Sequence()
		if err := tx.DeleteBucket(bucketMessages); err != nil {
			return err
		}
		nb, err := tx.CreateBucket(bucketMessages)
		if err != nil {
			return err
		}
		return nb.SetSequence(seq)
	}
	drop := dropped(bk, b.retention, b.now())
	c := bk.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= drop; k, _ = c.First() {
		if err := bk.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// dropped returns the highest sequence that retention r drops at now (0
// for none): beyond the count bound, or older than the age bound.
func dropped(bk *bbolt.Bucket, r hub.Retention, now time.Time) uint64 {
	c := bk.Cursor()
	k, v := c.First()
	if k == nil {
		return 0
	}
	last := bk.Sequence()
	var drop uint64
	if n := last - binary.BigEndian.Uint64(k) + 1; n > uint64(r.Count) {
		drop = last - uint64(r.Count)
	}
	if r.MaxAge > 0 {
		cutoff := now.Add(-r.MaxAge).UnixNano()
		for ; k != nil; k, v = c.Next() {
			t, ok := decodeTime(v)
			if ok && t >= cutoff {
				break
			}
			drop = max(drop, binary.BigEndian.Uint64(k))
		}
	}
	return drop
}
