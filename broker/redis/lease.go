package redis

// Leases (hub.Leaser): instances sharing a stream elect one holder of a
// named duty, an upstream MQTT link. A lease is a key beside the stream
// holding "HOLDER TOKEN" with a time to live; the token comes from a
// counter beside it that every acquisition increments, and the publish
// script refuses a publish whose token is below the counter (fencing):
// a holder that was paused past its lease, woken after another instance
// took the lease, cannot add a message. The keys share the stream's hash
// tag, so in a Redis Cluster the publish script reaches them.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// maxLeaseName and maxHolder bound what a lease key and value hold.
const (
	maxLeaseName = 64
	maxHolder    = 128
)

// acquireScript takes a lease nobody holds, with a new fencing token.
//
// KEYS: lease, fence counter. ARGV: holder, time to live in ms. Returns the
// lease's value ("HOLDER TOKEN", the caller's when it took it) and its
// time to live in ms.
var acquireScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then return {cur, redis.call('PTTL', KEYS[1])} end
local v = ARGV[1] .. ' ' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], v, 'NX', 'PX', ARGV[2])
return {v, tonumber(ARGV[2])}
`)

// renewScript extends a lease still held by the caller.
//
// KEYS: lease. ARGV: the caller's "HOLDER TOKEN", time to live in ms.
// Returns 1 when renewed, 0 when the lease is not the caller's.
var renewScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// releaseScript drops a lease still held by the caller and leaves one
// wake-up for an instance waiting to take it.
//
// KEYS: lease, wake-up list. ARGV: the caller's "HOLDER TOKEN", how long
// the wake-up is kept in ms.
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
`)

// fenceCheck is the part of the publish script that refuses a publish
// under a lease acquired again since: ARGV[8] is the publisher's token
// ("0": no fence) and KEYS[nk] the lease's fence counter.
const fenceCheck = `
if ARGV[8] ~= '0' and tonumber(redis.call('GET', KEYS[nk]) or '0') > tonumber(ARGV[8]) then
	return redis.error_reply('FENCED a newer holder took the lease')
end
`

// leaseKeys are the keys of lease name: the lease, its fence counter and
// the list a release leaves a wake-up in.
func (b *Broker) leaseKeys(name string) (lease, fence, wake string, err error) {
	if name == "" || len(name) > maxLeaseName || strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) {
		return "", "", "", fmt.Errorf("redis broker: lease name %.80q: use 1 to %d letters, digits, '-', '_', '.'", name, maxLeaseName)
	}
	lease = b.stream + ":lease:" + name
	return lease, lease + ":fence", lease + ":wake", nil
}

// AcquireLease implements hub.Leaser.
func (b *Broker) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (hub.Lease, error) {
	lease, fence, _, err := b.leaseKeys(name)
	if err != nil {
		return hub.Lease{}, err
	}
	if holder == "" || len(holder) > maxHolder || strings.ContainsAny(holder, " \x00") {
		return hub.Lease{}, fmt.Errorf("redis broker: lease holder %.80q: 1 to %d bytes without spaces", holder, maxHolder)
	}
	now := time.Now()
	res, err := acquireScript.Run(ctx, b.client, []string{lease, fence}, holder, ttl.Milliseconds()).Slice()
	if err != nil {
		return hub.Lease{}, b.failed("acquiring a lease beside", err)
	}
	if len(res) != 2 {
		return hub.Lease{}, fmt.Errorf("redis broker: acquiring lease %s: unexpected answer", name)
	}
	v, _ := res[0].(string)
	pttl, _ := res[1].(int64)
	l := parseLease(name, v)
	if pttl > 0 {
		l.Expires = now.Add(time.Duration(pttl) * time.Millisecond)
	}
	return l, nil
}

// parseLease reads a lease key's value, "HOLDER TOKEN"; anyone who can
// write to Redis can write it, so a value of another form is a lease held
// by nobody this broker knows, with token 0.
func parseLease(name, v string) hub.Lease {
	l := hub.Lease{Name: name}
	holder, token, ok := strings.Cut(v, " ")
	n, err := strconv.ParseUint(token, 10, 64)
	if !ok || err != nil || holder == "" || len(holder) > maxHolder {
		l.Holder = "(unknown)"
		return l
	}
	l.Holder, l.Token = holder, n
	return l
}

// leaseValue is what the lease key holds while l is held.
func leaseValue(l hub.Lease) string { return l.Holder + " " + strconv.FormatUint(l.Token, 10) }

// RenewLease implements hub.Leaser.
func (b *Broker) RenewLease(ctx context.Context, l hub.Lease, ttl time.Duration) (bool, error) {
	lease, _, _, err := b.leaseKeys(l.Name)
	if err != nil {
		return false, err
	}
	n, err := renewScript.Run(ctx, b.client, []string{lease}, leaseValue(l), ttl.Milliseconds()).Int64()
	if err != nil {
		return false, b.failed("renewing a lease beside", err)
	}
	return n == 1, nil
}

// ReleaseLease implements hub.Leaser. The wake-up it leaves is kept for a
// minute at most, for an instance that starts waiting just after.
func (b *Broker) ReleaseLease(ctx context.Context, l hub.Lease) error {
	lease, _, wake, err := b.leaseKeys(l.Name)
	if err != nil {
		return err
	}
	if err := releaseScript.Run(ctx, b.client, []string{lease, wake}, leaseValue(l), time.Minute.Milliseconds()).Err(); err != nil {
		return b.failed("releasing a lease beside", err)
	}
	return nil
}

// AwaitLease implements hub.Leaser: it blocks on the wake-up list a
// release fills (BLPOP), so one waiting instance learns of a release at
// once. BLPOP waits whole seconds: d is rounded down, to one at least.
func (b *Broker) AwaitLease(ctx context.Context, name string, d time.Duration) error {
	_, _, wake, err := b.leaseKeys(name)
	if err != nil {
		return err
	}
	err = b.client.BLPop(ctx, max(d.Truncate(time.Second), time.Second), wake).Err()
	if err == nil || errors.Is(err, goredis.Nil) {
		return nil
	}
	return b.failed("waiting for a lease beside", err)
}

// fenced maps the publish script's refusal to hub.ErrFenced; nil for any
// other error.
func (b *Broker) fenced(err error) error {
	if err != nil && goredis.HasErrorPrefix(err, "FENCED") {
		return fmt.Errorf("redis broker: publishing to stream %s: %w", b.stream, hub.ErrFenced)
	}
	return nil
}
