package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/hub/brokertest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// BenchmarkDeliveryToOtherInstance measures publish on one instance →
// delivery to a subscriber on another: two hubs, each with its own broker
// and connections, on one stream of a local redis-server.
func BenchmarkDeliveryToOtherInstance(b *testing.B) {
	srv := testserver.StartRedis(b)
	for _, inFlight := range []int{1, 8} {
		b.Run(fmt.Sprintf("in-flight=%d", inFlight), func(b *testing.B) {
			r := hub.Retention{Count: 1000}
			opts := hub.Options{Queue: max(b.N, 1024), Retention: r}
			key := streamKey()
			pub := hub.New(newBroker(b, srv.URL, key, r), opts)
			sub := hub.New(newBroker(b, srv.URL, key, r), opts)
			defer pub.Close()
			defer sub.Close()
			brokertest.BenchDelivery(b, pub, sub, inFlight)
		})
	}
}

// BenchmarkPublishReplicated measures one publish answered at once and one
// answered after a replica has it (replicas 1: WAIT in the same round
// trip), on a local master with one replica.
func BenchmarkPublishReplicated(b *testing.B) {
	master, _ := startReplicated(b)
	for _, replicas := range []int{0, 1} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			br, err := redis.New(redis.Config{URL: master.URL, Stream: streamKey(), Replicas: replicas}, hub.Retention{Count: 1000})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			if err := br.Start(func(*hub.Message) {}); err != nil {
				b.Fatal(err)
			}
			msgs := []hub.Message{{Topic: "t", Data: "x"}}
			for b.Loop() {
				if _, err := br.Publish(context.Background(), msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPublishRetain measures one publish of one message to one of
// 1000 topics, without a rule and with `retain metrics/+ 1` over them
// (copied into the kept stream, the topic's previous value deleted), on a
// local redis-server. cmds/op is the Redis commands per publish, those
// the publish script runs included (INFO commandstats).
func BenchmarkPublishRetain(b *testing.B) {
	srv := testserver.StartRedis(b)
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	for name, rules := range map[string][]hub.RetentionRule{"no-rule": nil, "rule": {{Pattern: "metrics/+", Count: 1}}} {
		b.Run(name, func(b *testing.B) {
			br, err := redis.New(redis.Config{URL: srv.URL, Stream: streamKey()}, hub.Retention{Count: 1000, Rules: rules})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			if err := br.Start(func(*hub.Message) {}); err != nil {
				b.Fatal(err)
			}
			topics := make([]string, 1000)
			for i := range topics {
				topics[i] = "metrics/" + strconv.Itoa(i)
			}
			publishOne := func(i int) {
				if _, err := br.Publish(context.Background(), []hub.Message{{Topic: topics[i%len(topics)], Data: "42.5"}}); err != nil {
					b.Fatal(err)
				}
			}
			for i := range 2 * len(topics) { // every topic has a value to supersede
				publishOne(i)
			}
			before := commands(b, raw)
			b.ResetTimer()
			n := 0
			for b.Loop() {
				publishOne(n)
				n++
			}
			b.StopTimer()
			b.ReportMetric(float64(commands(b, raw)-before-1)/float64(n), "cmds/op")
		})
	}
}

// commands returns how many commands the server has run, from INFO
// commandstats.
func commands(b *testing.B, c *goredis.Client) int64 {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		if _, stats, ok := strings.Cut(line, ":calls="); ok {
			calls, _, _ := strings.Cut(stats, ",")
			n, _ := strconv.ParseInt(calls, 10, 64)
			total += n
		}
	}
	return total
}
