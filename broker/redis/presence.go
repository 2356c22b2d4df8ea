package redis

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Presence across instances (hub.PresenceSharer), on the occupancy keys
// (occupancy.go) and its heartbeat: each filter's lists in one hash,
//
//	KEY:occ:p:FILTER    iID+SUB -> "CONNECTIONS:CLAIMS", this instance's
//	                    connections of identity SUB and its chosen claims
//	                    nSUB    -> how many instances hold SUB
//	                    aID, tID -> instance ID's anonymous and total counts
//
// and in the instance's set KEY:occ:pi:ID a member "FILTER\0SUB" per
// identity it holds ("FILTER\0" for its counts; no filter holds a zero
// byte), so that reaping a lapsed instance withdraws its entries; an
// identity whose count of instances that leaves at zero has left, told to
// the reaping instance. Instance IDs are 16 hex digits, so the fields
// cannot be confused. The instance's filter set KEY:occ:i:ID keeps
// filters only, as releases before presence read it.

// maxPresenceListed caps the identities one answer gathers from the
// hash, whatever it holds: the per-instance caps bound it in practice,
// this bounds a hash written by something else.
const maxPresenceListed = 16 * hub.MaxPresenceIdentities

// shareScript records this instance's state of a filter and of one
// identity in it, and renews its liveness. KEYS: the instances, this
// instance's presence set, its liveness, the filter's hash. ARGV: instance ID, TTL
// in milliseconds, filter, sub ("" for the counts only), connections,
// claims, anonymous, total. Returns whether the identity's count of
// instances crossed zero, then whether the instance joined the instances.
var shareScript = goredis.NewScript(`
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
local id, f, sub = ARGV[1], ARGV[3], ARGV[4]
if tonumber(ARGV[8]) > 0 then
	redis.call('HSET', KEYS[4], 'a' .. id, ARGV[7], 't' .. id, ARGV[8])
	redis.call('SADD', KEYS[2], f .. '\0')
else
	redis.call('HDEL', KEYS[4], 'a' .. id, 't' .. id)
	redis.call('SREM', KEYS[2], f .. '\0')
end
local crossed = 0
if sub ~= '' then
	local field = 'i' .. id .. sub
	if tonumber(ARGV[5]) > 0 then
		if redis.call('HSET', KEYS[4], field, ARGV[5] .. ':' .. ARGV[6]) == 1 then
			redis.call('SADD', KEYS[2], f .. '\0' .. sub)
			if redis.call('HINCRBY', KEYS[4], 'n' .. sub, 1) == 1 then crossed = 1 end
		end
	elseif redis.call('HDEL', KEYS[4], field) == 1 then
		redis.call('SREM', KEYS[2], f .. '\0' .. sub)
		if redis.call('HINCRBY', KEYS[4], 'n' .. sub, -1) <= 0 then
			redis.call('HDEL', KEYS[4], 'n' .. sub)
			crossed = 1
		end
	end
end
return {crossed, added}
`)

func (b *Occupancy) presenceKey(filter string) string { return b.occKey() + ":p:" + filter }

// StartPresence implements hub.PresenceSharer: it starts the heartbeat
// (shared with occupancy), which reaps lapsed instances.
func (b *Occupancy) StartPresence(left func(hub.PresenceChange), resync func()) error {
	b.occ.mu.Lock()
	defer b.occ.mu.Unlock()
	if b.occ.left != nil {
		return errors.New("redis broker: presence started twice")
	}
	b.occ.left, b.occ.resyncPresence = left, resync
	b.startHeartbeat()
	return nil
}

// SharePresence implements hub.PresenceSharer.
func (b *Occupancy) SharePresence(ctx context.Context, s hub.PresenceShare) (bool, error) {
	keys := b.occKeys()
	return b.crossing(ctx, shareScript, "sharing presence in", []string{keys[1], b.occKey() + ":pi:" + b.occ.id, keys[3], b.presenceKey(s.Filter)},
		b.occ.id, occupancyTTL.Milliseconds(), s.Filter, s.Sub, s.Connections, string(s.Claims), s.Anonymous, s.Total)
}

// PresentAll implements hub.PresenceSharer: every instance's entries of
// filter, an identity's connections summed. What does not parse is
// skipped.
func (b *Occupancy) PresentAll(ctx context.Context, filter string) (hub.PresenceList, error) {
	fields, err := b.client.HGetAll(ctx, b.presenceKey(filter)).Result()
	if err != nil {
		return hub.PresenceList{}, b.failed("reading presence from", err)
	}
	l := hub.PresenceList{Topic: filter}
	ids := make(map[string]*hub.PresenceIdentity)
	const idLen = 16
	for k, v := range fields {
		if len(k) < 1+idLen || k[0] == 'n' {
			continue
		}
		n, err := strconv.Atoi(v)
		switch k[0] {
		case 'a':
			if err == nil && n > 0 {
				l.Anonymous += n
			}
		case 't':
			if err == nil && n > 0 {
				l.Total += n
			}
		case 'i':
			sub := k[1+idLen:]
			conns, claims, ok := parseEntry(v)
			if !ok || sub == "" {
				continue
			}
			if e := ids[sub]; e != nil {
				e.Connections += conns
			} else if len(ids) < maxPresenceListed {
				ids[sub] = &hub.PresenceIdentity{Sub: sub, Claims: claims, Connections: conns}
			}
		}
	}
	for _, e := range ids {
		l.Subscribers = append(l.Subscribers, *e)
	}
	return l, nil
}

// parseEntry parses "CONNECTIONS:CLAIMS": a positive count and, when
// present, a JSON object of at most hub.MaxPresenceClaims bytes (else
// left out).
func parseEntry(v string) (int, json.RawMessage, bool) {
	count, claims, _ := strings.Cut(v, ":")
	n, err := strconv.Atoi(count)
	if err != nil || n <= 0 {
		return 0, nil, false
	}
	if claims == "" || len(claims) > hub.MaxPresenceClaims || claims[0] != '{' || !json.Valid([]byte(claims)) {
		return n, nil, true
	}
	return n, json.RawMessage(claims), true
}

// leftMember parses a reaped identity, {"FILTER\0SUB", claims}.
func leftMember(r []any) (hub.PresenceChange, bool) {
	if len(r) != 2 {
		return hub.PresenceChange{}, false
	}
	m, _ := r[0].(string)
	claims, _ := r[1].(string)
	filter, sub, ok := strings.Cut(m, "\x00")
	if !ok || sub == "" || hub.ValidateFilter(filter) != nil {
		return hub.PresenceChange{}, false
	}
	c := hub.PresenceChange{Topic: filter, Sub: sub}
	if claims != "" && len(claims) <= hub.MaxPresenceClaims && json.Valid([]byte(claims)) {
		c.Claims = json.RawMessage(claims)
	}
	return c, true
}

// Interface guard
var _ hub.PresenceSharer = (*Occupancy)(nil)
