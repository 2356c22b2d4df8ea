package redis_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/hub/brokertest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// The Redis broker keeps the contract every broker keeps, on one server,
// on a master that Sentinels watch (go-redis' failover URL), and on a
// Redis Cluster (the stream and its epoch in one slot by their hash tag).
func TestContract(t *testing.T) {
	for _, deployment := range deployments {
		t.Run(deployment.name, func(t *testing.T) {
			cfg := deployment.start(t)
			brokertest.Run(t, func(t *testing.T, r hub.Retention) hub.Broker {
				cfg := withStream(cfg)
				b, err := redis.New(cfg, r)
				if err != nil {
					t.Fatal(err)
				}
				return b
			})
		})
	}
}

// Two instances on one stream deliver the same messages with the same IDs
// in the same order, and an ID from one resumes on the other, also on an
// instance that started after the messages were published.
func TestTwoInstancesShareOneStream(t *testing.T) {
	srv := testserver.StartRedis(t)
	key := streamKey()
	a, sa := started(t, srv.URL, key, hub.Retention{Count: 100})
	b, sb := started(t, srv.URL, key, hub.Retention{Count: 100})

	var want []string
	want = append(want, publish(t, a, "1", "2")...)
	want = append(want, publish(t, b, "3")...)
	want = append(want, publish(t, a, "4")...)
	sa.waitIDs(t, want)
	sb.waitIDs(t, want)

	msgs, gap := since(t, b, want[0], want[3])
	if gap != nil || !slices.Equal(ids(msgs), want[1:]) {
		t.Fatalf("on B, Since(ID from A) = %v gap %+v; want %v", ids(msgs), gap, want[1:])
	}

	// C starts after all that: a subscriber on C resuming from an ID seen
	// on A gets every later message once, from history or live.
	h := hub.New(newBroker(t, srv.URL, key, hub.Retention{Count: 100}), hub.Options{Queue: 100, Retention: hub.Retention{Count: 100}})
	sub, backlog, gap, err := h.Subscribe(context.Background(), []string{"#"}, want[1])
	if err != nil || gap != nil {
		t.Fatalf("Subscribe on C from %s: %v, gap %+v", want[1], err, gap)
	}
	defer sub.Close()
	more := publish(t, a, "5")
	got := ids(backlog)
	for len(got) < 3 {
		if m, ok := sub.Next(); ok {
			got = append(got, m.ID)
			continue
		}
		select {
		case <-sub.Ready():
		case <-time.After(testserver.Wait):
			t.Fatalf("on C: got %v, want %v then %v", got, want[2:], more)
		}
	}
	if w := append(want[2:], more...); !slices.Equal(got, w) {
		t.Fatalf("on C, resumed from %s: got %v, want %v", want[1], got, w)
	}
}

// Redis down when the broker starts: Start succeeds, publishes fail with
// ErrUnavailable at once, and once Redis is up the reader picks up
// without anyone restarting anything.
func TestRedisDownAtStart(t *testing.T) {
	srv := testserver.NewRedis(t)
	b, s := started(t, srv.URL, streamKey(), hub.Retention{Count: 100})

	begin := time.Now()
	_, err := b.Publish(context.Background(), []hub.Message{{Topic: "t", Data: "lost"}})
	if !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("Publish with Redis down: %v, want ErrUnavailable", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("Publish with Redis down took %s to fail", took)
	}
	if _, err := b.Since(context.Background(), hub.Query{After: "x-1-0"}); !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("Since with Redis down: %v, want ErrUnavailable", err)
	}

	srv.Start()
	first := publishWhenUp(t, b, "first")
	s.waitIDs(t, []string{first})
}

// Redis killed mid-stream and restarted empty: publishes fail meanwhile,
// the reader reconnects, new messages come through under a new epoch, and
// a resume from an ID Redis no longer has is a gap.
func TestRedisRestartedEmpty(t *testing.T) {
	srv := testserver.StartRedis(t)
	key := streamKey()
	a, sa := started(t, srv.URL, key, hub.Retention{Count: 100})
	_, sb := started(t, srv.URL, key, hub.Retention{Count: 100})
	before := publish(t, a, "1", "2")
	sa.waitIDs(t, before)
	sb.waitIDs(t, before)

	srv.Kill()
	if _, err := a.Publish(context.Background(), []hub.Message{{Topic: "t"}}); !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("Publish with Redis killed: %v, want ErrUnavailable", err)
	}
	srv.Start()
	after := publishWhenUp(t, a, "3")
	sa.waitIDs(t, append(slices.Clone(before), after))
	sb.waitIDs(t, append(slices.Clone(before), after))
	if epoch(before[0]) == epoch(after) {
		t.Fatalf("IDs %s and %s share an epoch across a Redis that lost its data", before[0], after)
	}

	msgs, gap := since(t, a, before[1], after)
	if gap == nil || gap.FirstID != after || !slices.Equal(ids(msgs), []string{after}) {
		t.Fatalf("Since(ID from before the loss) = %v gap %+v; want a gap and %s", ids(msgs), gap, after)
	}
}

// Redis restarted with its data (append-only file): the reader goes on
// from the last entry it delivered, skipping nothing and repeating nothing.
func TestRedisRestartedWithData(t *testing.T) {
	srv := testserver.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	key := streamKey()
	a, sa := started(t, srv.URL, key, hub.Retention{Count: 100})
	want := publish(t, a, "1", "2")
	sa.waitIDs(t, want)

	srv.Kill()
	srv.Start()
	want = append(want, publishWhenUp(t, a, "3"))
	want = append(want, publish(t, a, "4")...)
	sa.waitIDs(t, want)
	if epoch(want[0]) != epoch(want[3]) {
		t.Fatalf("epoch changed across a restart that kept the data: %s, %s", want[0], want[3])
	}
	msgs, gap := since(t, a, want[0], want[3])
	if gap != nil || !slices.Equal(ids(msgs), want[1:]) {
		t.Fatalf("Since after restart = %v gap %+v; want %v", ids(msgs), gap, want[1:])
	}
}

// One instance cut off from Redis while another keeps publishing: when
// the link is back, it delivers every message it missed, in order, once.
func TestInstanceCutOffCatchesUp(t *testing.T) {
	srv := testserver.StartRedis(t)
	link := newProxy(t, srv.Addr)
	key := streamKey()
	a, sa := started(t, srv.URL, key, hub.Retention{Count: 1000})
	b, sb := started(t, "redis://"+link.addr, key, hub.Retention{Count: 1000})
	want := publish(t, a, "before")
	sb.waitIDs(t, want)

	link.Cut()
	if _, err := b.Publish(context.Background(), []hub.Message{{Topic: "t"}}); !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("Publish on the cut-off instance: %v, want ErrUnavailable", err)
	}
	for i := range 50 {
		want = append(want, publish(t, a, strconv.Itoa(i))...)
	}
	link.Restore()
	sb.waitIDs(t, want)
	sa.waitIDs(t, want)
}

// A Redis that needs a password refuses a broker without it (503, never a
// hang), and serves one with it; an ACL user works the same way.
func TestAuthentication(t *testing.T) {
	srv := testserver.StartRedis(t, "--requirepass", "s3cret",
		"--user", "alice", "on", ">alicepw", "~*", "&*", "+@all",
		// The least a broker needs, as the README tells.
		"--user", "bob", "on", ">bobpw", "~test:*", "resetchannels", "-@all",
		"+@read", "+@write", "+@stream", "+@scripting", "+@transaction", "+@connection",
		"--user", "carol", "on", ">carolpw", "~other:*", "+@all")
	for _, tc := range []struct {
		name string
		cfg  redis.Config
		ok   bool
	}{
		{"no password", redis.Config{URL: srv.URL}, false},
		{"wrong password", redis.Config{URL: srv.URL, Password: "nope"}, false},
		{"password option", redis.Config{URL: srv.URL, Password: "s3cret"}, true},
		{"password in URL", redis.Config{URL: "redis://:s3cret@" + srv.Addr}, true},
		{"ACL user", redis.Config{URL: srv.URL, Username: "alice", Password: "alicepw"}, true},
		{"ACL user with the least rights", redis.Config{URL: srv.URL, Username: "bob", Password: "bobpw"}, true},
		{"ACL user without the keys", redis.Config{URL: srv.URL, Username: "carol", Password: "carolpw"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Stream = streamKey()
			b, err := redis.New(tc.cfg, hub.Retention{Count: 10})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			s := newSink()
			if err := b.Start(s.deliver); err != nil {
				t.Fatal(err)
			}
			ids, err := b.Publish(context.Background(), []hub.Message{{Topic: "t"}})
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Publish: %v", err)
			case tc.ok:
				s.waitIDs(t, ids)
				if _, err := b.Since(context.Background(), hub.Query{After: ids[0], Upto: ids[0]}); err != nil {
					t.Fatalf("Since: %v", err)
				}
			case !tc.ok && !errors.Is(err, hub.ErrUnavailable):
				t.Fatalf("Publish: %v, want ErrUnavailable", err)
			case !tc.ok && strings.Contains(err.Error(), "s3cret"):
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
}

// A Redis that speaks only TLS and wants client certificates: the broker
// reaches it with rediss:// (or TLS options) and the right files, and gets
// 503, not a hang, with the wrong ones.
func TestTLS(t *testing.T) {
	files := newTLSFiles(t)
	srv := testserver.StartRedis(t, "--port", "0", "--tls-port", "{PORT}",
		"--tls-cert-file", files.ServerCert, "--tls-key-file", files.ServerKey, "--tls-ca-cert-file", files.CA)
	client := redis.TLS{CA: files.CA, Cert: files.ClientCert, Key: files.ClientKey}
	wrongName := client
	wrongName.ServerName = "elsewhere.test"
	for _, tc := range []struct {
		name string
		url  string
		tls  redis.TLS
		ok   bool
	}{
		{"rediss with CA and client certificate", "rediss://" + srv.Addr, client, true},
		{"redis URL with TLS options", srv.URL, client, true},
		{"server name from the certificate", "rediss://" + srv.Addr, redis.TLS{CA: files.CA, Cert: files.ClientCert, Key: files.ClientKey, ServerName: "redis.test"}, true},
		{"system roots do not trust the test CA", "rediss://" + srv.Addr, redis.TLS{Cert: files.ClientCert, Key: files.ClientKey}, false},
		{"no client certificate", "rediss://" + srv.Addr, redis.TLS{CA: files.CA}, false},
		{"wrong server name", "rediss://" + srv.Addr, wrongName, false},
		{"plain text to a TLS port", srv.URL, redis.TLS{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := redis.New(redis.Config{URL: tc.url, TLS: tc.tls, Stream: streamKey(), ReadTimeout: time.Second}, hub.Retention{Count: 10})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			s := newSink()
			if err := b.Start(s.deliver); err != nil {
				t.Fatal(err)
			}
			ids, err := b.Publish(context.Background(), []hub.Message{{Topic: "t", Data: "secret"}})
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Publish: %v", err)
			case tc.ok:
				s.waitIDs(t, ids)
			case !errors.Is(err, hub.ErrUnavailable):
				t.Fatalf("Publish: %v, want ErrUnavailable", err)
			}
		})
	}
}

// The db and key options put the stream where they say.
func TestDatabaseAndStreamKey(t *testing.T) {
	srv := testserver.StartRedis(t)
	db := 3
	c, err := redis.New(redis.Config{URL: srv.URL, DB: &db, Stream: "custom:key"}, hub.Retention{Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(context.Background(), []hub.Message{{Topic: "t"}}); err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr, DB: 3})
	defer raw.Close()
	if n, err := raw.XLen(context.Background(), "custom:key").Result(); err != nil || n != 1 {
		t.Fatalf("XLEN custom:key in db 3 = %d, %v; want 1", n, err)
	}
}

// Entries the broker did not write (another program on the same key) are
// skipped by the reader and by Since, never a panic; hostile IDs are a
// gap, never an error.
func TestForeignEntriesAndHostileIDs(t *testing.T) {
	srv := testserver.StartRedis(t)
	key := streamKey()
	b, s := started(t, srv.URL, key, hub.Retention{Count: 100})
	first := publish(t, b, "1")
	s.waitIDs(t, first)

	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	for _, values := range []map[string]any{
		{"junk": "x"},
		{"epoch": "e", "topic": "bad/#", "event": "", "data": "x"},
		{"epoch": "a-b", "topic": "t", "event": "", "data": "x"},
		{"epoch": epoch(first[0]), "topic": "t", "data": "no event field"},
	} {
		if err := raw.XAdd(context.Background(), &goredis.XAddArgs{Stream: key, Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	want := append(first, publish(t, b, "2")...)
	s.waitIDs(t, want)

	msgs, gap := since(t, b, hub.Earliest, want[1])
	if gap != nil || !slices.Equal(ids(msgs), want) {
		t.Fatalf("Since(earliest) over foreign entries = %v gap %+v; want %v", ids(msgs), gap, want)
	}
	e := epoch(first[0])
	for _, id := range []string{
		e + "-18446744073709551615-18446744073709551615", e + "-99999999999999999999-1", e + "--1", e + "-1-",
	} {
		if _, gap := since(t, b, id, want[1]); gap == nil {
			t.Fatalf("Since(%q): no gap", id)
		}
	}
}

// A reader waiting on a Redis that is down stops with Close: no goroutine
// outlives the broker.
func TestCloseWhileRedisDown(t *testing.T) {
	srv := testserver.NewRedis(t)
	baseline := runtime.NumGoroutine()
	b, err := redis.New(redis.Config{URL: srv.URL, Stream: streamKey()}, hub.Retention{Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(func(*hub.Message) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(context.Background(), []hub.Message{{Topic: "t"}}); !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("Publish: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// Bad configurations fail New with a clear error.
func TestBadConfig(t *testing.T) {
	neg := -1
	for _, tc := range []struct {
		cfg  redis.Config
		want string
	}{
		{redis.Config{URL: "http://x", Stream: "s"}, "scheme"},
		{redis.Config{URL: "redis://x/notanumber", Stream: "s"}, "database"},
		{redis.Config{URL: "redis://x", Stream: "s", DB: &neg}, "negative"},
		{redis.Config{URL: "redis://x"}, "stream"},
		{redis.Config{URL: "redis://x", Stream: "s", TLS: redis.TLS{CA: "/nonexistent/ca.pem"}}, "tls_ca"},
		{redis.Config{URL: "redis://x", Stream: "s", TLS: redis.TLS{Cert: "/c.pem"}}, "takes a certificate and its key"},
		{redis.Config{URL: "rediss://x?skip_verify=true", Stream: "s"}, "skip_verify is not offered"},
		{redis.Config{URL: "redis://x:26379?master_name=m&skip_verify=true", Stream: "s"}, "skip_verify is not offered"},
		{redis.Config{URL: "redis://x:7000?skip_verify=true", Stream: "s", Cluster: true}, "skip_verify is not offered"},
		{redis.Config{URL: "redis://x:26379?master_name=m&password=p", Stream: "s"}, "the master's username and password"},
		{redis.Config{URL: "redis://x:26379?master_name=m", Stream: "s", Cluster: true}, "names Sentinels"},
		{redis.Config{URL: "redis://x:7000/2", Stream: "s", Cluster: true}, "only database 0"},
		{redis.Config{URL: "redis://x:7000", Stream: "s", Cluster: true, DB: new(int(1))}, "only database 0"},
		{redis.Config{URL: "redis://x:26379?master_name=m&colour=blue", Stream: "s"}, "colour"},
	} {
		_, err := redis.New(tc.cfg, hub.Retention{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error about %q", tc.cfg, err, tc.want)
		}
	}
}

func epoch(id string) string {
	e, _, _ := strings.Cut(id, "-")
	return e
}
