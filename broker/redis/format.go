package redis

// The versioned format of what the broker stores in Redis, so that
// instances of two releases can share a stream during a rolling upgrade.
//
// Stream entries carry their format version in the field v, and signal
// payloads in their JSON member v. The rule:
//
//   - A change that readers of the current version can still read keeps
//     the version: new fields or members, which readers ignore. Such an
//     entry must keep every field of the version with its meaning.
//   - Any other change (a field removed, renamed or meaning something
//     else) bumps the version. Readers skip and count entries of a
//     version newer than they read, and log the version once, so they
//     never misread one. An upgrade across such a change goes through a
//     release that reads both versions and still writes the old one;
//     once every instance runs it, the next release writes the new one.
//   - An entry without v was written before the field existed: version 1.
//   - The keys beside the stream (KEY:epoch, KEY:seq, KEY:once:*) keep
//     their values' layout within a version; a layout older instances
//     cannot read goes to a key of a new name, never into the old one.
//
// Version 1: fields epoch (the hub's epoch, hex), topic, event, data and
// seq (the append's number; missing on entries written before numbers);
// signals {"topic","event","data","time"} (Unix milliseconds).
//
// Version 2: the fields of version 1, with binary data (hub.Message.Binary).
// Only binary messages are written so; text stays version 1, which every
// release reads. An instance that reads only version 1 skips and counts a
// binary entry as one of a newer format, never delivering bytes as text;
// its subscribers miss binary messages until it is upgraded.
//
// Retain rules (retain.go) keep both versions: an entry of a topic kept by
// rule has the field k, which readers before it ignore (they replay it
// from the stream, as any other), and its copy in KEY:kept, a key of a new
// name, has the fields of its version. A reader with the rule reads the
// copy; an entry of a rule topic without k (written by an instance that
// did not apply the rule) stays history in the stream, so neither release
// loses the other's messages.

import (
	"strconv"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// formatVersion is the newest format this build reads, and the one it
// writes binary entries in; signals and text entries keep version 1.
const formatVersion = 2

// textVersion is the format of an entry whose data is text.
const textVersion = 1

// entryVersion is the v field of m's entry.
func entryVersion(m hub.Message) string {
	if m.Binary {
		return strconv.Itoa(formatVersion)
	}
	return strconv.Itoa(textVersion)
}

// maxVersion bounds the versions taken for one: a writer that is not a
// release of this broker cannot have each of its entries logged as yet
// another newer version for long.
const maxVersion = 999

// parseVersion reads an entry's v field: missing or empty is version 1
// (written before entries had it). ok is false for a value that is not a
// version number; such an entry is invalid, not newer.
func parseVersion(v any) (version uint64, ok bool) {
	if v == nil {
		return 1, true
	}
	s, isString := v.(string)
	if !isString {
		return 0, false
	}
	if s == "" {
		return 1, true
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > maxVersion {
		return 0, false
	}
	return n, true
}

// newerFormat notes the format version of an entry or signal that was
// read; one newer than this build reads is skipped by the caller. Each
// version higher than any met before is logged, so the log says once which
// version an upgrade brought, and a stream full of them does not repeat it.
func (b *Broker) newerFormat(what string, version uint64) {
	for {
		met := b.newestUnread.Load()
		if version <= max(met, formatVersion) {
			return
		}
		if b.newestUnread.CompareAndSwap(met, version) {
			b.logger.Warn("skipping "+what+" of a storage format newer than this build reads: an instance of a later release wrote them; upgrade this one (docs/operations.md, Upgrades)",
				zap.Uint64("version", version), zap.Uint64("reads_up_to", formatVersion))
			return
		}
	}
}
