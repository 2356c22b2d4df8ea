package redis

// Finding out that Redis lost messages it had acknowledged. Replication is
// asynchronous: a replica that Sentinel promotes may lack the newest
// entries of the old master, and a Redis restarted without persistence has
// none. Stream IDs come from the clock, so by the time anyone looks the
// new master's IDs have usually moved past the lost ones: IDs alone rarely
// show it. So the publish script numbers appends with a counter kept
// beside the stream (KEY:seq, replicated with it), each instance keeps the
// highest (epoch, number) it has seen, and a store whose counter is behind
// that for the same epoch has lost messages. The instance that sees it
// renews the epoch, so no ID can repeat one a client saw, and every
// instance, reading entries of the new epoch, ends its live subscriptions
// so their clients resume and are told with a gap.

import (
	"context"
	"strconv"
	"sync"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// seenMark is the newest append this instance has seen: read back by its
// reader, or answered to its own publish.
type seenMark struct {
	mu    sync.Mutex
	epoch string
	seq   int64
	id    streamID // the entry's stream ID
}

// see records the append seq (stream ID id) of epoch if it is the newest
// of that epoch, or of a new one.
func (s *seenMark) see(epoch string, seq int64, id streamID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch || seq > s.seq {
		s.epoch, s.seq, s.id = epoch, seq, id
	}
}

// args are the script arguments that say what was seen: epoch, number and
// stream ID.
func (s *seenMark) args() []any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []any{s.epoch, s.seq, s.id.String()}
}

// lossCheck is the part of a script that finds a loss: when the counter
// (KEYS[3]) is behind what the caller has seen of the current epoch, it
// renews the epoch, moves the counter up to what was seen, and moves the
// stream's last ID up to the newest one seen (XSETID): the lost entries'
// IDs may be ahead of the clock of the Redis that goes on, and readers
// wait after them. ARGV[1] is the new epoch, ARGV[2], ARGV[3] and ARGV[4]
// the epoch, number and stream ID seen.
const lossCheck = `
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local lost = 0
if epoch == ARGV[2] and seq < tonumber(ARGV[3]) then
	lost = tonumber(ARGV[3]) - seq
	seq = tonumber(ARGV[3])
	epoch = ARGV[1]
	redis.call('SET', KEYS[2], epoch)
	redis.call('SET', KEYS[3], seq)
	pcall(redis.call, 'XSETID', KEYS[1], ARGV[4])
end
`

// checkLossScript runs lossCheck alone, for a reader back from an outage.
//
// KEYS: stream, epoch, seq. ARGV: new epoch, epoch, number and stream ID
// seen.
// Returns the epoch and how many appends were lost (0: none).
var checkLossScript = goredis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
` + lossCheck + `
return {epoch or '', lost}
`)

// checkLoss asks Redis, after an outage, whether it lost what this
// instance saw; when it did, it returns the epoch it renewed.
func (b *Broker) checkLoss(ctx context.Context) (string, error) {
	seen := b.seen.args()
	if seen[0] == "" {
		return "", nil
	}
	res, err := checkLossScript.Run(ctx, b.client, b.keys(), append([]any{newEpoch()}, seen...)...).Slice()
	if err != nil {
		return "", err
	}
	if lost, _ := res[1].(int64); lost > 0 && len(res) == 2 {
		renewed, _ := res[0].(string)
		b.reportLoss(lost, seen[1].(int64), renewed)
		return renewed, nil
	}
	return "", nil
}

// tellLoss ends the hub's live subscriptions, so that their clients resume
// and get a gap: what they saw may be gone, and what they missed is.
func (b *Broker) tellLoss() {
	if b.lost != nil {
		b.lost()
	}
}

// reportLoss logs a loss found here. Clients are told when the entries
// of the new epoch arrive (or at once, by the reader that found it).
func (b *Broker) reportLoss(lost, seen int64, epoch string) {
	b.status.lost()
	b.logger.Warn("redis lost acknowledged messages (a failover to a replica that lagged, or a restart without persistence): the stream goes on in a new epoch, and clients resume with a gap",
		zap.Int64("lost", lost), zap.Int64("seen", seen), zap.String("new_epoch", epoch))
}

// OnLoss implements hub.LossReporter.
func (b *Broker) OnLoss(lost func()) { b.lost = lost }

// keys are the keys every script of the broker takes.
func (b *Broker) keys() []string { return []string{b.stream, b.epochKey, b.seqKey} }

// parseSeq reads the seq field of an entry; ok is false when it has none
// (written before the broker numbered entries).
func parseSeq(v any) (int64, bool) {
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}
