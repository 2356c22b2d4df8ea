package redis

// Reading history for a resume: Since filters and pages inside Redis (a
// script returns entry headers, data is fetched only for matches), Head
// answers where delivery starts without reading history.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// snapshot is the stream's state, read atomically.
type snapshot struct {
	exists        bool
	epoch         string
	lastGenerated streamID
	maxDeleted    streamID
	knowsDeleted  bool              // Redis 7.0+ reports the last trimmed entry
	first         *goredis.XMessage // nil when the stream is empty
	horizon       streamID          // of the last refile (retain.go)
}

// holds reports whether the stream's oldest entry is of epoch: the stream
// went on in a new epoch after a loss (loss.go), rather than being made
// anew, so its entries from before are still those this instance read.
func (s snapshot) holds(epoch string) bool {
	if s.first == nil {
		return false
	}
	e, _, ok := decode(*s.first)
	return ok && e.epoch == epoch
}

// snapshot reads the stream's state in one MULTI/EXEC.
func (b *Broker) snapshot(ctx context.Context) (snapshot, error) {
	var s snapshot
	pipe := b.client.TxPipeline()
	exists := pipe.Exists(ctx, b.stream)
	epoch := pipe.Get(ctx, b.epochKey)
	info := pipe.XInfoStream(ctx, b.stream)
	horizon := pipe.Get(ctx, b.keptKeys()[5])
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
	at, _, _ := strings.Cut(horizon.Val(), " ") // then the rules' digest (retain.go)
	s.horizon, _ = parseStreamID(at)
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
// now. The stream itself keeps more (the delivery floor). The messages of
// topics that a rule keeps are read from the kept stream (retain.go) and
// merged with the stream's by ID.
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
	r := b.retention.Load()
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
		cutoff = ageCutoff(r.MaxAge)
	}

	var page hub.Page
	var firstKept string // the oldest retained entry, for the gap
	// Read (After, end] when After can be resumed from; up to end
	// otherwise. Nothing when nothing after After was delivered here yet,
	// or when this instance delivered from a stream Redis lost.
	if end.epoch == s.epoch && !(resumable && !last.id.less(end.id)) {
		start := "-"
		if resumable {
			start = "(" + last.id.String()
		}
		var err error
		if page, firstKept, err = b.readHistory(ctx, q, r, s, start, end.id, cutoff, resumable, &gap); err != nil {
			return hub.Page{}, b.failed("reading", err)
		}
		if !gap && resumable && s.knowsDeleted {
			// The snapshot and the reads are not one transaction.
			if now, err := b.snapshot(ctx); err == nil && last.id.less(now.maxDeleted) {
				gap = true
			}
		}
		if !gap && resumable && !earliest && len(r.rules) > 0 {
			if gap, err = b.missedKept(ctx, q, last.id, end.id); err != nil {
				return hub.Page{}, b.failed("reading", err)
			}
		}
	}
	if !gap {
		return page, nil
	}
	page.Gap = &hub.Gap{LastID: q.After, FirstID: firstKept}
	if firstKept == "" && s.first != nil && r.Keeps() {
		if m, _, ok := decode(*s.first); ok && m.id.ms >= cutoff {
			page.Gap.FirstID = m.ID
		}
	}
	return page, nil
}

// ageCutoff is the milliseconds below which an entry is older than age.
func ageCutoff(age time.Duration) uint64 {
	return uint64(max(0, time.Now().Add(-age).UnixMilli()))
}

// readHistory reads a page of (start, end]: the stream's history, less what the
// count bound drops (a gap when a topic q asks for loses a message to it),
// merged with the kept stream's.
func (b *Broker) readHistory(ctx context.Context, q hub.Query, r *retention, s snapshot, start string, end streamID, cutoff uint64, resumable bool, gap *bool) (page hub.Page, firstKept string, err error) {
	main := scanRange{key: b.stream, start: start, end: end, history: func(topic string, kept bool, id streamID) (bool, uint64) {
		// Kept by rule here: read from the kept stream. Entries
		// without k after the horizon were written by an instance that
		// did not apply the rule: history here.
		if r.ruleOf(topic) != nil && (kept || !s.horizon.less(id)) {
			return false, 0
		}
		return true, cutoff
	}}
	cut := end.String() // history 0: the count bound drops everything
	if r.Keeps() {
		if cut, err = b.countCut(ctx, start, end, r.Count, len(r.rules) > 0); err != nil {
			return page, "", err
		}
	}
	var skipped, n int
	if cut != "" {
		if resumable && !*gap && q.After != hub.Earliest {
			dropped := main
			dropped.end, _ = parseStreamID(cut)
			var found []string
			found, _, n, _, err = b.scan(ctx, hub.Query{After: q.After, Match: q.Match, Limit: 1}, dropped, gap)
			if err != nil {
				return page, "", err
			}
			skipped += n
			*gap = *gap || len(found) > 0
		}
		main.start = "(" + cut
	}
	var parts [2]scanned
	if r.Keeps() {
		if parts[0], err = b.scanAll(ctx, q, main, gap); err != nil {
			return page, "", err
		}
	}
	if len(r.rules) > 0 {
		kept := scanRange{key: b.keptKeys()[0], start: start, end: end, history: func(topic string, _ bool, _ streamID) (bool, uint64) {
			rule := r.ruleOf(topic)
			if rule == nil {
				return false, 0
			}
			if rule.MaxAge > 0 {
				return true, ageCutoff(rule.MaxAge)
			}
			return true, 0
		}}
		if parts[1], err = b.scanAll(ctx, q, kept, gap); err != nil {
			return page, "", err
		}
	}
	located, more := merge(parts[0], parts[1], q.PageLimit())
	page.More = more
	var missing int
	if page.Messages, missing, err = b.fetch(ctx, located, &skipped); err != nil {
		return page, "", err
	}
	// What a publish trimmed meanwhile, after After, was not sent.
	if missing > 0 {
		*gap = *gap || q.After != hub.Earliest
	}
	for _, p := range parts {
		skipped += p.skipped
		if p.firstKept != "" && (firstKept == "" || before(p.firstKept, firstKept)) {
			firstKept = p.firstKept
		}
	}
	if skipped > 0 {
		b.skipped.Add(uint64(skipped))
		b.logger.Warn("skipped stream entries that are not valid messages; they are never delivered", zap.Int("entries", skipped))
	}
	return page, firstKept, nil
}

// before reports whether message ID a comes before b.
func before(a, b string) bool {
	pa, _ := parseID(a)
	pb, _ := parseID(b)
	return pa.id.less(pb.id)
}

// scanned is what scan found in one stream.
type scanned struct {
	key       string
	ids       []string
	more      bool
	skipped   int
	firstKept string
}

func (b *Broker) scanAll(ctx context.Context, q hub.Query, rg scanRange, gap *bool) (scanned, error) {
	out := scanned{key: rg.key}
	var err error
	out.ids, out.more, out.skipped, out.firstKept, err = b.scan(ctx, q, rg, gap)
	return out, err
}

// entryRef is an entry of one of the streams.
type entryRef struct{ key, id string }

// merge returns the first limit entries of a and b in ID order, and
// whether there are more.
func merge(a, b scanned, limit int) ([]entryRef, bool) {
	out := make([]entryRef, 0, min(limit, len(a.ids)+len(b.ids)))
	i, j := 0, 0
	for len(out) < limit && (i < len(a.ids) || j < len(b.ids)) {
		if j == len(b.ids) || i < len(a.ids) && idLess(a.ids[i], b.ids[j]) {
			out = append(out, entryRef{a.key, a.ids[i]})
			i++
		} else {
			out = append(out, entryRef{b.key, b.ids[j]})
			j++
		}
	}
	return out, a.more || b.more || i < len(a.ids) || j < len(b.ids)
}

func idLess(a, b string) bool {
	x, _ := parseStreamID(a)
	y, _ := parseStreamID(b)
	return x.less(y)
}

// Chunks of the scripts that read history: they bound what Redis holds in
// a script at once (scanChunk entries with their data).
const scanChunk = 128

// countScript finds where the count bound of history starts: the newest
// entry in [ARGV[2], ARGV[1]] (XREVRANGE bounds) that is not one of the
// newest ARGV[3] there, or false when the range holds no more. With
// ARGV[5] "1", entries kept by rule (field k) do not count. Only the ID
// leaves Redis.
var countScript = goredis.NewScript(`
local hi, seen, count = ARGV[1], 0, tonumber(ARGV[3])
while true do
	local batch = redis.call('XREVRANGE', KEYS[1], hi, ARGV[2], 'COUNT', ARGV[4])
	for _, e in ipairs(batch) do
		local kept = false
		if ARGV[5] == '1' then
			for i = 1, #e[2] - 1, 2 do
				if e[2][i] == 'k' then kept = true end
			end
		end
		if not kept then
			seen = seen + 1
			if seen > count then return e[1] end
		end
		hi = '(' .. e[1]
	end
	if #batch < tonumber(ARGV[4]) then return false end
end
`)

// countCut returns the newest entry ID in (start, end] that the count bound
// drops, "" for none; with byRule, entries kept by rule do not count.
func (b *Broker) countCut(ctx context.Context, start string, end streamID, count int, byRule bool) (string, error) {
	flag := "0"
	if byRule {
		flag = "1"
	}
	cut, err := countScript.Run(ctx, b.client, []string{b.stream}, end.String(), start, count, scanChunk, flag).Text()
	if errors.Is(err, goredis.Nil) {
		return "", nil
	}
	return cut, err
}

// headerScript returns, for up to ARGV[3] entries in [ARGV[1], ARGV[2]]
// (XRANGE bounds), the ID, format version, epoch, topic, event and k
// (kept by rule), without the data, as one string of length-prefixed
// fields ("LEN:BYTES", six per entry; a missing field is empty): one reply
// to read rather than six per entry. Each field is cut one byte past what
// a valid one may hold, so a hostile entry costs no more than a valid one
// and still fails validation.
var headerScript = goredis.NewScript(`
local out = {}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])) do
	local v = {v = '', epoch = '', topic = '', event = '', k = ''}
	local f = e[2]
	for i = 1, #f - 1, 2 do
		if v[f[i]] then v[f[i]] = string.sub(f[i + 1], 1, 257) end
	end
	for _, x in ipairs({e[1], v.v, v.epoch, v.topic, v.event, v.k}) do
		out[#out + 1] = #x .. ':' .. x
	end
end
return table.concat(out)
`)

// scanRange is a range of one stream to read history from: the entries
// in (start, end] of key that history says are history there (kept: the
// entry has the field k), with the milliseconds below which it is too old.
type scanRange struct {
	key     string
	start   string
	end     streamID
	history func(topic string, kept bool, id streamID) (ok bool, cutoff uint64)
}

// scan reads the headers of the entries of rg, a chunk at a time, and
// returns the IDs of the first q.PageLimit() valid ones that q asks for;
// more is true when there are more. Entries too old are a gap when q asks
// for their topic, unless it asks for everything retained. firstKept is
// the first valid entry not too old.
func (b *Broker) scan(ctx context.Context, q hub.Query, rg scanRange, gap *bool) (matched []string, more bool, skipped int, firstKept string, err error) {
	limit := q.PageLimit()
	start := rg.start
	for {
		h, err := headerScript.Run(ctx, b.client, []string{rg.key}, start, rg.end.String(), scanChunk).Text()
		if err != nil {
			return nil, false, 0, "", err
		}
		entries, last := 0, ""
		for ; h != ""; entries++ {
			var f [6]string
			for i := range f {
				var ok bool
				if f[i], h, ok = cutField(h); !ok {
					return nil, false, 0, "", errors.New("malformed reply from the header script")
				}
			}
			id, epoch, topic, event := f[0], f[2], f[3], f[4]
			last = id
			sid, ok := parseStreamID(id)
			version, known := parseVersion(f[1])
			b.newerFormat("stream entries", version)
			if !ok || !known || version > formatVersion || !validEpoch(epoch) {
				skipped++
				continue
			}
			history, cutoff := rg.history(topic, f[5] != "", sid)
			switch {
			case !history:
				continue
			case sid.ms < cutoff:
				*gap = *gap || q.After != hub.Earliest && q.Accepts(topic)
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

// fetch reads the entries refs in one round trip and decodes them; an
// entry that fails validation is skipped and counted, one trimmed
// meanwhile is left out and counted as missing.
func (b *Broker) fetch(ctx context.Context, refs []entryRef, skipped *int) (msgs []*hub.Message, missing int, err error) {
	if len(refs) == 0 {
		return nil, 0, nil
	}
	pipe := b.client.Pipeline()
	cmds := make([]*goredis.XMessageSliceCmd, len(refs))
	for i, r := range refs {
		cmds[i] = pipe.XRangeN(ctx, r.key, r.id, r.id, 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, err
	}
	out := make([]*hub.Message, 0, len(refs))
	for _, c := range cmds {
		if len(c.Val()) == 0 {
			missing++
		}
		for _, x := range c.Val() {
			m, version, ok := decode(x)
			b.newerFormat("stream entries", version)
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
