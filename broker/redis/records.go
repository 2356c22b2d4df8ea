package redis

// What the stream holds: entries and their fields, stream IDs, the hub's
// IDs (epoch and position) and the checks every record read back passes.

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// entry is a decoded stream entry.
type entry struct {
	*hub.Message
	epoch string
	id    streamID
	seq   int64 // the append's number; 0 for entries written before there were numbers
}

// decode turns a stream entry into a message; ok is false for entries
// this broker did not write (a foreign writer on the key), for any that
// fail hub.ValidateMessage, and for entries of a format version newer than
// formatVersion, which are skipped. version is the entry's format version,
// 0 when it has none that parses.
func decode(x goredis.XMessage) (e entry, version uint64, ok bool) {
	version, ok = parseVersion(x.Values["v"])
	if !ok || version > formatVersion {
		return entry{}, version, false
	}
	id, ok := parseStreamID(x.ID)
	field := func(name string) string {
		s, valid := x.Values[name].(string)
		ok = ok && valid
		return s
	}
	epoch, topic, event, data := field("epoch"), field("topic"), field("event"), field("data")
	if !ok || !validEpoch(epoch) {
		return entry{}, version, false
	}
	m := &hub.Message{
		ID:     epoch + "-" + x.ID,
		Topic:  topic,
		Event:  event,
		Data:   data,
		Binary: version == formatVersion,
		Time:   time.UnixMilli(int64(min(id.ms, 1<<62))),
	}
	if hub.ValidateMessage(m) != nil {
		return entry{}, version, false
	}
	seq, _ := parseSeq(x.Values["seq"])
	return entry{Message: m, epoch: epoch, id: id, seq: seq}, version, true
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
