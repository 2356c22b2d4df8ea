package bolt

import (
	"encoding/binary"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// formatVersion is the history file's format this build writes and the
// newest it reads. The file's meta bucket says which format it was written
// with (keyFormat; files from before it had the key are format 1), and
// every record begins with its own format version: a build refuses a file
// of a newer format, and skips any record of a version it cannot read,
// rather than misread either. A change that older builds can read whole
// (a new meta key, a new bucket they need not know) keeps the version;
// any other change bumps it.
//
// Format 1: a stored message is the version byte 1, time (Unix
// nanoseconds, varint), topic and event (length-prefixed), then data up to
// the end.
//
// A record of version 2 (binaryRecord) has the same layout and binary
// data. Only binary messages are written so, and the file stays format 1:
// a build that knows only version 1 skips and counts them rather than
// deliver bytes as text, and reads every other record.
const formatVersion = 1

// binaryRecord is the version of a record whose data is binary
// (hub.Message.Binary), the newest record version this build reads.
const binaryRecord = 2

func encode(m *hub.Message) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64*3+len(m.Topic)+len(m.Event)+len(m.Data))
	version := byte(formatVersion)
	if m.Binary {
		version = binaryRecord
	}
	b = append(b, version)
	b = binary.AppendVarint(b, m.Time.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(m.Topic)))
	b = append(b, m.Topic...)
	b = binary.AppendUvarint(b, uint64(len(m.Event)))
	b = append(b, m.Event...)
	return append(b, m.Data...)
}

func decodeTime(v []byte) (int64, bool) {
	if len(v) < 2 || v[0] != formatVersion && v[0] != binaryRecord {
		return 0, false
	}
	t, n := binary.Varint(v[1:])
	return t, n > 0
}

// record is a stored message as parsed in place: its fields point into the
// file's memory, valid only in the transaction that read them.
type record struct {
	time               int64
	topic, event, data []byte
	binary             bool
}

// parseRecord splits a stored message into its fields without copying
// them; ok is false for a damaged record.
func parseRecord(v []byte) (rec record, ok bool) {
	if rec.time, ok = decodeTime(v); !ok {
		return rec, false
	}
	_, n := binary.Varint(v[1:])
	rest := v[1+n:]
	field := func() ([]byte, bool) {
		l, n := binary.Uvarint(rest)
		if n <= 0 || l > uint64(len(rest)-n) {
			return nil, false
		}
		f := rest[n : n+int(l)]
		rest = rest[n+int(l):]
		return f, true
	}
	topic, ok1 := field()
	event, ok2 := field()
	rec.topic, rec.event, rec.data, rec.binary = topic, event, rest, v[0] == binaryRecord
	return rec, ok1 && ok2
}

// message copies rec out of the file's memory.
func (rec record) message() *hub.Message {
	return &hub.Message{Topic: string(rec.topic), Event: string(rec.event), Data: string(rec.data), Binary: rec.binary, Time: time.Unix(0, rec.time)}
}
