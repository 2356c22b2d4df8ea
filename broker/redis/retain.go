package redis

// Retention rules (retain PATTERN COUNT [AGE]) on Redis, shared by every
// instance of a hub. The hub's stream stays what every instance reads and
// delivers from, and the history of the topics no rule matches; the
// messages of rule topics are also copied, with the same IDs, into a
// second stream (KEY:kept), where the publish script deletes each one
// that its topic's rule no longer keeps. Beside it:
//
//   - KEY:kept:ids, the kept IDs by topic: a sorted set of "TOPIC\0ID"
//     (every score 0, so ordered by bytes; IDs padded to a fixed width);
//   - KEY:kept:topics:HASH per rule, its topics by their last append
//     number, to let go of the least recently published beyond the cap;
//   - KEY:kept:drops, the last drop of each topic, "SEQ" "AT" "TOPIC"
//     (padded IDs: the message dropped, the publish that dropped it),
//     ordered by SEQ so a resume reads only the drops after its ID, and
//     KEY:kept:dropof, each topic's member there. Beyond the cap the
//     oldest drop is folded into KEY:kept:floor, below which every resume
//     is told of a gap whatever its topics;
//   - KEY:kept:horizon, the stream ID up to which a reload brought the
//     stored messages under the rules (refile).
//
// Stream entries of rule topics carry the field k: Since reads them from
// KEY:kept, not from the stream. A reader reads the stream's entries of a
// topic that has a rule there only when they carry no k and come after the
// horizon: an instance that did not apply the rule wrote them (a release
// before this one, or another configuration during a reload), so they
// count in history rather than go missing. A release before this one
// ignores k and KEY:kept: it reads every message from the stream, as it
// always did.
//
// Age bounds of rules apply when history is read; a message older than
// its rule's age leaves Redis when its topic gets newer ones or is let go.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// retention is a hub.Retention with its rules ordered for matching.
type retention struct {
	hub.Retention
	rules []hub.RetentionRule // Rules, most specific first (hub.OrderRules)
}

func newRetention(r hub.Retention) *retention {
	return &retention{Retention: r, rules: hub.OrderRules(r.Rules)}
}

// ruleOf returns the rule of topic, nil when the hub-wide bounds apply.
func (r *retention) ruleOf(topic string) *hub.RetentionRule {
	if i := hub.RuleOf(r.rules, topic); i >= 0 {
		return &r.rules[i]
	}
	return nil
}

// topicCap is the most topics each rule keeps.
func (r *retention) topicCap() int {
	if r.RuleTopics > 0 {
		return r.RuleTopics
	}
	return hub.DefaultRuleTopics
}

// markCap bounds the drops told apart by topic: every topic each rule may
// keep, and as many of the topics let go.
func (r *retention) markCap() int {
	return (len(r.rules) + 1) * r.topicCap()
}

// keptKeys are the keys of the kept messages, KEYS[4] to KEYS[9] of the
// scripts that take them, after b.keys().
func (b *Broker) keptKeys() []string {
	k := b.stream + ":kept"
	return []string{k, k + ":ids", k + ":drops", k + ":dropof", k + ":floor", k + ":horizon"}
}

// ruleKey is the key of the topics rule pattern keeps.
func (b *Broker) ruleKey(pattern string) string {
	sum := sha256.Sum256([]byte(pattern))
	return b.stream + ":kept:topics:" + hex.EncodeToString(sum[:8])
}

// keptLib is the part of the scripts that keeps messages by rule. KEYS[4]
// to KEYS[9] are keptKeys; markCap is set before.
const keptLib = `
local function pad(id)
	local ms, sq = string.match(id, '^(%d+)%-(%d+)$')
	return string.rep('0', 20 - #ms) .. ms .. '-' .. string.rep('0', 20 - #sq) .. sq
end
local function unpad(p)
	local ms = string.match(string.sub(p, 1, 20), '^0*(%d+)$')
	local sq = string.match(string.sub(p, 21, 41), '^%-0*(%d+)$')
	if ms and sq then return ms .. '-' .. sq end
end
local function fold(m)
	local f = redis.call('GET', KEYS[8])
	local s, a = string.sub(m, 1, 41), string.sub(m, 42, 82)
	if f then
		if string.sub(f, 1, 41) > s then s = string.sub(f, 1, 41) end
		if string.sub(f, 42, 82) > a then a = string.sub(f, 42, 82) end
	end
	redis.call('SET', KEYS[8], s .. a)
end
local function dropped(t, pd, pa)
	local old = redis.call('HGET', KEYS[7], t)
	if old then
		redis.call('ZREM', KEYS[6], old)
		if string.sub(old, 1, 41) > pd then pd = string.sub(old, 1, 41) end
	end
	local m = pd .. pa .. t
	redis.call('ZADD', KEYS[6], 0, m)
	redis.call('HSET', KEYS[7], t, m)
	if not old and redis.call('ZCARD', KEYS[6]) > markCap then
		local low = redis.call('ZPOPMIN', KEYS[6])
		redis.call('HDEL', KEYS[7], string.sub(low[1], 83))
		fold(low[1])
	end
end
local function drop(t, n, pa)
	local lo, hi = '[' .. t .. '\0', '(' .. t .. '\1'
	local last
	while n ~= 0 do
		local chunk = 512
		if n > 0 and n < chunk then chunk = n end
		local old = redis.call('ZRANGEBYLEX', KEYS[5], lo, hi, 'LIMIT', 0, chunk)
		if #old == 0 then break end
		local ids = {}
		for _, m in ipairs(old) do
			last = string.sub(m, #t + 2)
			ids[#ids + 1] = unpad(last)
		end
		if #ids > 0 then redis.call('XDEL', KEYS[4], unpack(ids)) end
		redis.call('ZREM', KEYS[5], unpack(old))
		if n > 0 then n = n - #old end
	end
	if last then dropped(t, last, pa) end
end
local function keep(id, t, count, cap, lru, score, fields)
	local pa = pad(id)
	if redis.call('ZADD', lru, score, t) == 1 and redis.call('ZCARD', lru) > cap then
		drop(redis.call('ZPOPMIN', lru)[1], -1, pa)
	end
	if count == 0 then
		dropped(t, pa, pa)
		return
	end
	local added = redis.pcall('XADD', KEYS[4], id, unpack(fields))
	if type(added) == 'table' and added.err then
		-- Not after the last kept entry: the kept stream is not this
		-- one's (written by hand, or restored apart). Start it anew,
		-- every resume from before told of a gap.
		redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7])
		fold(pa .. pa)
		redis.call('XADD', KEYS[4], id, unpack(fields))
	end
	redis.call('ZADD', KEYS[5], 0, t .. '\0' .. pa)
	local n = redis.call('ZLEXCOUNT', KEYS[5], '[' .. t .. '\0', '(' .. t .. '\1')
	if n > count then drop(t, n - count, pa) end
end
`

// ruleArgs returns the publish script's arguments for the rules of msgs:
// their count, then count, topic cap and key index of each rule that one
// of msgs takes; the keys to append after firstKey-1 keys; and the rule of
// each message (1-based in that list, 0 for none).
func (b *Broker) ruleArgs(r *retention, msgs []hub.Message, firstKey int) (args []any, keys []string, of []int) {
	of = make([]int, len(msgs))
	if len(r.rules) == 0 {
		return []any{0}, nil, of
	}
	index := map[string]int{}
	var params []any
	for i, m := range msgs {
		rule := r.ruleOf(m.Topic)
		if rule == nil {
			continue
		}
		n, ok := index[rule.Pattern]
		if !ok {
			keys = append(keys, b.ruleKey(rule.Pattern))
			params = append(params, rule.Count, r.topicCap(), firstKey+len(keys)-1)
			n = len(keys)
			index[rule.Pattern] = n
		}
		of[i] = n
	}
	return append([]any{len(keys)}, params...), keys, of
}

// padID is a stream ID as the kept keys write it: fixed width, so that
// byte order is ID order.
func padID(id streamID) string { return fmt.Sprintf("%020d-%020d", id.ms, id.seq) }

// mark is a drop as KEY:kept:drops and KEY:kept:floor hold it.
type mark struct {
	seq, at streamID
	topic   string
}

const padded = 41 // len(padID(...))

func parseMark(s string) (mark, bool) {
	if len(s) < 2*padded {
		return mark{}, false
	}
	seq, ok1 := parseStreamID(s[:padded])
	at, ok2 := parseStreamID(s[padded : 2*padded])
	return mark{seq: seq, at: at, topic: s[2*padded:]}, ok1 && ok2
}

// missed reports whether a reader of q that saw everything up to after
// missed the drop m, for a replay up to upto.
func (m mark) missed(after, upto streamID, q hub.Query) bool {
	return after.less(m.seq) && (!q.Continued || upto.less(m.at))
}

// marksChunk is the drops read at once.
const marksChunk = 256

// missedKept reports whether a reader of q that saw everything up to
// after missed a message a rule dropped: the floor, then the drops after
// after, a chunk at a time, until one of a topic q accepts.
func (b *Broker) missedKept(ctx context.Context, q hub.Query, after, upto streamID) (bool, error) {
	k := b.keptKeys()
	pipe := b.client.Pipeline()
	floor := pipe.Get(ctx, k[4])
	// After every member whose SEQ is after: topics are UTF-8, which
	// has no byte 0xff.
	min := "(" + padID(after) + "\xff"
	drops := pipe.ZRangeByLex(ctx, k[2], &goredis.ZRangeBy{Min: min, Max: "+", Count: marksChunk})
	_, _ = pipe.Exec(ctx) // each command's own error says what went wrong
	if err := floor.Err(); err != nil && !errors.Is(err, goredis.Nil) {
		return false, err
	}
	// A floor that does not parse was not written by this broker: every
	// resume is told of a gap rather than none.
	if m, ok := parseMark(floor.Val()); floor.Val() != "" && (!ok || m.missed(after, upto, q)) {
		return true, nil
	}
	for {
		list, err := drops.Result()
		if err != nil {
			return false, err
		}
		for _, s := range list {
			if m, ok := parseMark(s); !ok || m.missed(after, upto, q) && q.Accepts(m.topic) {
				return true, nil
			}
		}
		if len(list) < marksChunk {
			return false, nil
		}
		drops = b.client.ZRangeByLex(ctx, k[2], &goredis.ZRangeBy{Min: "(" + list[len(list)-1], Max: "+", Count: marksChunk})
	}
}

// refileScript brings the messages stored under other rules under the
// rules ARGV gives, as if each had been published under them, in order:
// it rebuilds the kept stream from what it kept and from the stream's
// entries (entries that carry k but are no longer kept were dropped by a
// rule, and stay dropped), lets each rule keep the latest COUNT of each
// topic and its most recently published topics up to the cap, records the
// drops (at the stream's end: after every replay begun before) and folds
// the drops of before into the floor. The stream itself is not touched:
// what it holds of topics that lost their rule is history again.
//
// The horizon records the rules' digest beside the stream ID: when it
// names these rules, another instance has brought the messages under them
// already, and what was published since by instances without them is
// history, as for any message without k after the horizon; so the first
// instance to reload does the work, the others nothing.
//
// KEYS: stream, epoch, seq, keptKeys, then the key of each rule, then
// keys of rules no longer configured. ARGV: the drops' cap, the number of
// rules, the rules' digest (hex), then pattern, count and topic cap of
// each, most specific first. Returns the entries it kept, -1 when the
// digest was there already.
var refileScript = goredis.NewScript(`
local markCap = tonumber(ARGV[1])
` + keptLib + `
if redis.call('EXISTS', KEYS[1]) == 0 then
	redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
	return 0
end
local horizon = redis.call('GET', KEYS[9])
if horizon and string.match(horizon, ' (%x+)$') == ARGV[3] then return -1 end
local function split(s)
	local out, i = {}, 1
	while true do
		local j = string.find(s, '/', i, true)
		if not j then
			out[#out + 1] = string.sub(s, i)
			return out
		end
		out[#out + 1] = string.sub(s, i, j - 1)
		i = j + 1
	end
end
local nr = tonumber(ARGV[2])
local rules = {}
for i = 1, nr do
	local b = 3 * i + 1
	rules[i] = {p = split(ARGV[b]), dollar = string.match(ARGV[b], '^[+#]') ~= nil,
		count = tonumber(ARGV[b + 1]), cap = tonumber(ARGV[b + 2]), key = KEYS[9 + i], topics = {}}
end
local ruleOfTopic = {}
local function ruleOf(t)
	local r = ruleOfTopic[t]
	if r ~= nil then return r end
	r = false
	local tl = split(t)
	for _, rule in ipairs(rules) do
		local ok = not (rule.dollar and string.sub(t, 1, 1) == '$')
		local p = rule.p
		if ok then
			ok = #p == #tl
			for i = 1, #p do
				if p[i] == '#' then ok = true break end
				if i > #tl or (p[i] ~= '+' and p[i] ~= tl[i]) then ok = false break end
			end
		end
		if ok then r = rule break end
	end
	ruleOfTopic[t] = r
	return r
end
local function read(key)
	local out, start = {}, '-'
	while true do
		local batch = redis.call('XRANGE', key, start, '+', 'COUNT', 512)
		for _, e in ipairs(batch) do
			local f = {}
			for i = 1, #e[2] - 1, 2 do f[e[2][i]] = e[2][i + 1] end
			out[#out + 1] = {id = e[1], p = pad(e[1]), fields = e[2], f = f}
		end
		if #batch < 512 then return out end
		start = '(' .. batch[#batch][1]
	end
end
local kept, main = read(KEYS[4]), read(KEYS[1])
local last = main[#main]
if not last then return 0 end
local ms, sq = string.match(last.id, '^(%d+)%-(%d+)$')
local now = pad(ms .. '-' .. (tonumber(sq) + 1))
for _, m in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do fold(m) end
redis.call('DEL', KEYS[6], KEYS[7])
local inMain, isKept = {}, {}
for _, e in ipairs(main) do inMain[e.p] = true end
for _, e in ipairs(kept) do isKept[e.p] = true end
local all, i, j = {}, 1, 1
while i <= #kept or j <= #main do
	if j > #main or (i <= #kept and kept[i].p <= main[j].p) then
		if j <= #main and kept[i].p == main[j].p then j = j + 1 end
		all[#all + 1] = kept[i]
		i = i + 1
	else
		local e = main[j]
		if not e.f.k then all[#all + 1] = e end
		j = j + 1
	end
end
local byTopic = {}
for _, e in ipairs(all) do
	local t = e.f.topic
	local rule = t and ruleOf(t)
	if rule then
		local list = byTopic[t]
		if not list then
			list = {}
			byTopic[t] = list
		end
		list[#list + 1] = e
		rule.topics[t] = tonumber(e.f.seq) or 0
	elseif t and isKept[e.p] and not inMain[e.p] then
		dropped(t, e.p, now)
	end
end
redis.call('DEL', KEYS[4], KEYS[5])
for k = 10 + nr, #KEYS do redis.call('DEL', KEYS[k]) end
local keepIt = {}
for _, rule in ipairs(rules) do
	redis.call('DEL', rule.key)
	local order = {}
	for t, score in pairs(rule.topics) do order[#order + 1] = {t, score} end
	table.sort(order, function(a, b) return a[2] > b[2] end)
	for n, ts in ipairs(order) do
		local list = byTopic[ts[1]]
		local from = #list - rule.count + 1
		if n > rule.cap then from = #list + 1 end
		if from > 1 then dropped(ts[1], list[from - 1].p, now) end
		for k = math.max(from, 1), #list do keepIt[list[k].p] = true end
		if n <= rule.cap then redis.call('ZADD', rule.key, ts[2], ts[1]) end
	end
end
local n = 0
for _, e in ipairs(all) do
	if keepIt[e.p] then
		local fields = {}
		for k = 1, #e.fields - 1, 2 do
			if e.fields[k] ~= 'k' then
				fields[#fields + 1] = e.fields[k]
				fields[#fields + 1] = e.fields[k + 1]
			end
		end
		redis.call('XADD', KEYS[4], e.id, unpack(fields))
		redis.call('ZADD', KEYS[5], 0, e.f.topic .. '\0' .. e.p)
		n = n + 1
	end
end
redis.call('SET', KEYS[9], last.id .. ' ' .. ARGV[3])
return n
`)

// refileTimeout bounds the refile of a reload.
const refileTimeout = 10 * time.Second

// refile runs refileScript for r, after rules were old.
func (b *Broker) refile(r *retention, old []hub.RetentionRule) {
	ctx, cancel := context.WithTimeout(context.Background(), refileTimeout)
	defer cancel()
	keys := append(b.keys(), b.keptKeys()...)
	args := []any{r.markCap(), len(r.rules), r.digest()}
	for _, rule := range r.rules {
		keys = append(keys, b.ruleKey(rule.Pattern))
		args = append(args, rule.Pattern, rule.Count, r.topicCap())
	}
	for _, rule := range old {
		if !slices.ContainsFunc(r.rules, func(n hub.RetentionRule) bool { return n.Pattern == rule.Pattern }) {
			keys = append(keys, b.ruleKey(rule.Pattern))
		}
	}
	begin := time.Now()
	n, err := refileScript.Run(ctx, b.client, keys, args...).Int64()
	if err != nil {
		b.logger.Warn("retain rules changed, but the messages stored before could not be brought under them: they stay as stored, each kept as the rules of its publisher said",
			zap.Error(err))
		return
	}
	if n < 0 {
		return // another instance did it
	}
	b.logger.Info("retain rules changed: stored messages brought under them", zap.Int64("kept", n), zap.Duration("took", time.Since(begin)))
}

// digest identifies what the kept messages depend on, as the horizon
// records it (refileScript).
func (r *retention) digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", r.topicCap())
	for _, rule := range r.rules {
		fmt.Fprintf(h, "%q %d\n", rule.Pattern, rule.Count)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// rulesChanged reports whether a and b differ in what the kept messages
// depend on.
func rulesChanged(a, b *retention) bool {
	return !slices.Equal(a.rules, b.rules) || a.topicCap() != b.topicCap()
}
