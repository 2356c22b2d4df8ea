package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Occupancy across instances (hub.Occupier), beside the stream, all keys
// under it (one cluster slot):
//
//	KEY:occ             hash: filter -> instances whose subscriptions hold it
//	KEY:occ:instances   set of instance IDs that counted something
//	KEY:occ:i:ID        set: the filters instance ID counts
//	KEY:occ:hb:ID       the instance's liveness, expiring after occupancyTTL
//	KEY:occ:p:FILTER    hash: presence lists (presence.go)
//	KEY:occ:pi:ID       set: the presence entries instance ID holds
//
// An instance counts a filter once however many of its subscriptions hold
// it, and withdraws it when its last ends; the script whose change makes
// the hash's count cross zero tells that instance, the only one, to send
// the event. Every occupancyTTL/3 each instance renews its liveness and
// reaps the instances whose liveness lapsed (stopped, crashed, cut off):
// their filters are withdrawn, and the filters that leaves with none are
// vacated, told to the one instance whose script reaped them.
const occupancyTTL = 15 * time.Second

// Occupancy is a Broker that also counts occupied filters across the
// instances sharing it (hub.Occupier).
type Occupancy struct {
	*Broker
	occ occupancy
}

// WithOccupancy returns b counting occupancy too. Nothing reaches Redis
// for it until a hub watcher asks (StartOccupancy).
func WithOccupancy(b *Broker) *Occupancy { return &Occupancy{Broker: b} }

// Close implements hub.Broker: it ends the heartbeat (withdrawing this
// instance's liveness), then closes the broker.
func (b *Occupancy) Close() error {
	b.stopOccupancy()
	return b.Broker.Close()
}

// occupancy is the state of the heartbeat, which occupancy and presence
// (presence.go) share.
type occupancy struct {
	mu     sync.Mutex
	id     string
	cancel context.CancelFunc
	done   chan struct{}
	// The hub's callbacks, set by StartOccupancy and StartPresence; nil
	// until then. Guarded by mu.
	vacated        func(filter string)
	resync         func()
	left           func(hub.PresenceChange)
	resyncPresence func()
	// registered: the instance joined KEY:occ:instances once; joining
	// again means it was reaped, and counts its filters again.
	registered atomic.Bool
}

// joined notes that a script added the instance to KEY:occ:instances: a
// second time, it had been reaped, and counts and shares all again.
func (o *occupancy) joined(added bool) {
	if added && o.registered.Swap(true) {
		o.mu.Lock()
		resync, resyncPresence := o.resync, o.resyncPresence
		o.mu.Unlock()
		for _, f := range []func(){resync, resyncPresence} {
			if f != nil {
				f()
			}
		}
	}
}

func (b *Occupancy) occKey() string { return b.stream + ":occ" }

func (b *Occupancy) occKeys() []string {
	base := b.occKey()
	return []string{base, base + ":instances", base + ":i:" + b.occ.id, base + ":hb:" + b.occ.id}
}

// occupyScript counts or withdraws this instance's filter and renews its
// liveness. KEYS: the hash, the instances, this instance's set, its
// liveness. ARGV: filter, "1" to count or "0" to withdraw, instance ID,
// TTL in milliseconds. Returns whether the filter's count crossed zero,
// then whether the instance joined the instances (1 or 0 each).
var occupyScript = goredis.NewScript(`
local added = redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
if ARGV[2] == '1' then
	if redis.call('SADD', KEYS[3], ARGV[1]) == 1 and redis.call('HINCRBY', KEYS[1], ARGV[1], 1) == 1 then
		return {1, added}
	end
	return {0, added}
end
if redis.call('SREM', KEYS[3], ARGV[1]) == 1 and redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
	redis.call('HDEL', KEYS[1], ARGV[1])
	return {1, added}
end
return {0, added}
`)

// heartbeatScript renews this instance's liveness and reaps the instances
// whose liveness lapsed. KEYS: the hash, the instances, this instance's
// set, its liveness. ARGV: instance ID, TTL in milliseconds, the prefix of
// instance sets, the prefix of liveness keys, the prefix of presence
// hashes, the prefix of instances' presence sets. Returns 1 or 0 (whether
// this instance had been reaped itself: its filters must be counted
// again), then the filters vacated and, each as {member, claims}, the
// identities that left (presence.go).
var heartbeatScript = goredis.NewScript(`
local reaped = redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[4]) == 1 then reaped = 0 end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
local out = {reaped}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
	if redis.call('EXISTS', ARGV[4] .. id) == 0 then
		local set = ARGV[3] .. id
		for _, f in ipairs(redis.call('SMEMBERS', set)) do
			if redis.call('HINCRBY', KEYS[1], f, -1) <= 0 then
				redis.call('HDEL', KEYS[1], f)
				out[#out + 1] = f
			end
		end
		local pset = ARGV[6] .. id
		for _, m in ipairs(redis.call('SMEMBERS', pset)) do
			local cut = string.find(m, '\0', 1, true)
			if cut then
				local hk, sub = ARGV[5] .. string.sub(m, 1, cut - 1), string.sub(m, cut + 1)
				if sub == '' then
					redis.call('HDEL', hk, 'a' .. id, 't' .. id)
				else
					local v = redis.call('HGET', hk, 'i' .. id .. sub)
					redis.call('HDEL', hk, 'i' .. id .. sub)
					if redis.call('HINCRBY', hk, 'n' .. sub, -1) <= 0 then
						redis.call('HDEL', hk, 'n' .. sub)
						local claims = ''
						if v then
							local at = string.find(v, ':', 1, true)
							if at then claims = string.sub(v, at + 1) end
						end
						out[#out + 1] = {m, claims}
					end
				end
			end
		end
		redis.call('DEL', pset)
		redis.call('DEL', set)
		redis.call('SREM', KEYS[2], id)
	end
end
return out
`)

// StartOccupancy implements hub.Occupier: it starts the heartbeat, which
// renews this instance's liveness and reaps lapsed instances.
func (b *Occupancy) StartOccupancy(vacated func(filter string), resync func()) error {
	b.occ.mu.Lock()
	defer b.occ.mu.Unlock()
	if b.occ.vacated != nil {
		return errors.New("redis broker: occupancy started twice")
	}
	b.occ.vacated, b.occ.resync = vacated, resync
	b.startHeartbeat()
	return nil
}

// startHeartbeat draws the instance's ID and starts the heartbeat, once,
// for occupancy or presence, whichever starts first. b.occ.mu is held.
func (b *Occupancy) startHeartbeat() {
	if b.occ.done != nil {
		return
	}
	var raw [8]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	b.occ.id = hex.EncodeToString(raw[:])
	ctx, cancel := context.WithCancel(context.Background())
	b.occ.cancel, b.occ.done = cancel, make(chan struct{})
	go b.heartbeat(ctx)
}

// Occupy implements hub.Occupier.
func (b *Occupancy) Occupy(ctx context.Context, filter string, occupied bool) (bool, error) {
	flag := "0"
	if occupied {
		flag = "1"
	}
	return b.crossing(ctx, occupyScript, "counting occupancy in", b.occKeys(), filter, flag, b.occ.id, occupancyTTL.Milliseconds())
}

// crossing runs a script that answers whether a count crossed zero, then
// whether the instance joined the instances (Occupy, SharePresence).
func (b *Occupancy) crossing(ctx context.Context, script *goredis.Script, what string, keys []string, args ...any) (bool, error) {
	res, err := script.Run(ctx, b.client, keys, args...).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected answer %v", res)
	}
	if err != nil {
		return false, b.failed(what, err)
	}
	b.occ.joined(res[1] == 1)
	return res[0] == 1, nil
}

// heartbeat renews the liveness and reaps, every occupancyTTL/3, until
// Close; then it withdraws this instance's liveness so that the others
// reap what it still counted.
func (b *Occupancy) heartbeat(ctx context.Context) {
	defer close(b.occ.done)
	tick := time.NewTicker(occupancyTTL / 3)
	defer tick.Stop()
	base := b.occKey()
	for {
		call, cancel := context.WithTimeout(ctx, occupancyTTL/3)
		res, err := heartbeatScript.Run(call, b.client, b.occKeys(), b.occ.id, occupancyTTL.Milliseconds(), base+":i:", base+":hb:", base+":p:", base+":pi:").Slice()
		cancel()
		if err != nil {
			b.logger.Debug("occupancy heartbeat", zap.Error(err))
		} else {
			b.reaped(res)
		}
		select {
		case <-ctx.Done():
			end, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = b.client.Del(end, base+":hb:"+b.occ.id).Err()
			cancel()
			return
		case <-tick.C:
		}
	}
}

// reaped hands on what a heartbeat found: whether this instance had been
// reaped, the filters vacated and the identities that left, to the
// callbacks started.
func (b *Occupancy) reaped(res []any) {
	if len(res) == 0 {
		return
	}
	added, _ := res[0].(int64)
	b.occ.joined(added == 1)
	b.occ.mu.Lock()
	vacated, left := b.occ.vacated, b.occ.left
	b.occ.mu.Unlock()
	for _, r := range res[1:] {
		switch r := r.(type) {
		case string:
			if vacated != nil {
				vacated(r)
			}
		case []any:
			if c, ok := leftMember(r); ok && left != nil {
				left(c)
			}
		}
	}
}

// stopOccupancy ends the heartbeat, if it runs, and waits for it.
func (b *Occupancy) stopOccupancy() {
	b.occ.mu.Lock()
	cancel, done := b.occ.cancel, b.occ.done
	b.occ.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Interface guard
var _ hub.Occupier = (*Occupancy)(nil)
