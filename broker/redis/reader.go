package redis

// The stream reader: one goroutine per broker follows the stream with
// XREAD and hands every entry, in order, to the hub; after an outage it
// finds out whether the stream outlived it and where to go on from.

import (
	"context"
	"errors"
	mathrand "math/rand/v2"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// read is the reader: it follows the stream from where this instance's
// delivery starts and delivers every entry, in order, until ctx ends. While
// Redis is unreachable it retries with capped back-off; when Redis is back
// it goes on from the last entry it delivered.
func (b *Broker) read(ctx context.Context, deliver func(*hub.Message)) {
	defer close(b.done)
	var pos position
	var lastEpoch string // of the last entry delivered, kept when pos is reset
	positioned, failing := false, false
	backoff := time.Duration(0)
	for {
		var err error
		var streams []goredis.XStream
		switch {
		case !positioned:
			pos, err = b.ensureStart(ctx)
			if positioned = err == nil; positioned {
				b.locate(ctx)
			}
		case failing:
			if pos, err = b.resync(ctx, pos); err == nil {
				b.locate(ctx)
				var epoch string
				if epoch, err = b.checkLoss(ctx); epoch != "" {
					b.tellLoss()
					lastEpoch = epoch
				}
			}
		}
		if err == nil {
			streams, err = b.client.XRead(ctx, &goredis.XReadArgs{
				Streams: []string{b.stream, pos.id.String()},
				Count:   readBatch,
				Block:   readBlock,
			}).Result()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, goredis.Nil) {
			b.status.set("unreachable", err)
			if !failing {
				b.logger.Warn("redis unreachable: publishing answers 503 until it is back; retrying", zap.Error(err))
			}
			failing = true
			backoff = min(maxBackoff, max(minBackoff, 2*backoff))
			wait := time.NewTimer(backoff/2 + mathrand.N(backoff/2))
			select {
			case <-ctx.Done():
				wait.Stop()
				return
			case <-wait.C:
			}
			continue
		}
		b.status.set("connected", nil)
		if failing {
			b.logger.Info("redis reachable again: delivering from the last message seen", zap.String("after", pos.id.String()))
			failing, backoff = false, 0
		}
		for _, st := range streams {
			for _, x := range st.Messages {
				m, version, ok := decode(x)
				if id, valid := parseStreamID(x.ID); valid {
					pos.id = id
				}
				b.newerFormat("stream entries", version)
				if !ok {
					continue // not an entry this build can read
				}
				if lastEpoch != "" && m.epoch != lastEpoch {
					// A new epoch: what clients saw of the old one may be
					// gone. Their streams end so they resume and learn it.
					b.tellLoss()
				}
				pos.epoch, lastEpoch = m.epoch, m.epoch
				if m.seq > 0 {
					b.seen.see(m.epoch, m.seq, m.id)
				}
				deliver(m.Message)
			}
		}
	}
}

// resync runs after an outage, before reading again: it finds out whether
// the stream outlived it and where to go on from.
func (b *Broker) resync(ctx context.Context, pos position) (position, error) {
	s, err := b.snapshot(ctx)
	if err != nil {
		return pos, err
	}
	switch {
	case !s.exists:
		// Redis lost the stream (or never had it): read the next one from
		// its start.
		if pos != (position{}) {
			b.status.lost()
			b.logger.Warn("redis lost the stream; messages not yet delivered here are gone, resuming clients get a gap")
		}
		return position{}, nil
	case pos.epoch != "" && s.epoch != "" && s.epoch != pos.epoch && !s.holds(pos.epoch):
		b.status.lost()
		b.logger.Warn("the stream was recreated (new epoch): what it held is gone; reading it from its start")
		return position{epoch: s.epoch}, nil
	case s.lastGenerated.less(pos.id):
		// Restored from an older copy: new entries follow its last one.
		return position{epoch: s.epoch, id: s.lastGenerated}, nil
	case pos.id.less(s.maxDeleted):
		b.logger.Warn("messages were trimmed from the stream before this instance read them; raise history to cover longer outages",
			zap.String("after", pos.id.String()), zap.String("trimmed_up_to", s.maxDeleted.String()))
	}
	return pos, nil
}
