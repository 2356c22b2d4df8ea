package pubsub

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-pubsub/caddy-pubsub/clienttls"
)

// The broker sub-directive becomes the broker module's JSON, "kind" naming
// the module; bad input is an error at the line that has it.
func TestUnmarshalBroker(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        string // JSON
		err         string
	}{
		{"default", `pubsub`, ``, ""},
		{"memory", `pubsub {
			broker memory
		}`, `{"kind":"memory"}`, ""},
		{"bolt", `pubsub {
			broker bolt /var/lib/caddy/pubsub.db
		}`, `{"kind":"bolt","path":"/var/lib/caddy/pubsub.db"}`, ""},
		{"bolt in the data directory", `pubsub {
			broker bolt
		}`, `{"kind":"bolt"}`, ""},
		{"redis URL only", `pubsub {
			broker redis redis://127.0.0.1:6379/0
		}`, `{"kind":"redis","url":"redis://127.0.0.1:6379/0"}`, ""},
		{"redis every option", `pubsub {
			broker redis rediss://redis.internal:6380 {
				username caddy
				password {env.REDIS_PASSWORD}
				db 2
				key_prefix app:
				stream chat
				dial_timeout 2s
				read_timeout 3s
				write_timeout 4s
				replicas 1
				replica_timeout 500ms
				tls_ca /etc/ca.pem
				tls_cert /etc/client.pem /etc/client.key
				tls_server_name redis.internal
			}
		}`, `{"kind":"redis","url":"rediss://redis.internal:6380","username":"caddy","password":"{env.REDIS_PASSWORD}",
			"db":2,"key_prefix":"app:","stream":"chat","dial_timeout":2000000000,"read_timeout":3000000000,"write_timeout":4000000000,
			"replicas":1,"replica_timeout":500000000,
			"tls":{"ca":"/etc/ca.pem","cert":"/etc/client.pem","key":"/etc/client.key","server_name":"redis.internal"}}`, ""},
		{"URL placeholder checked at provision", `pubsub {
			broker redis {env.REDIS_URL}
		}`, `{"kind":"redis","url":"{env.REDIS_URL}"}`, ""},

		{"no kind", `pubsub {
			broker
		}`, ``, "wrong argument count|Testfile:2"},
		{"unknown kind", `pubsub {
			broker nats nats://x
		}`, ``, `broker: unknown kind "nats" (use bolt, memory, redis, or build in a broker module with xcaddy)|Testfile:2`},
		{"memory with argument", `pubsub {
			broker memory /x
		}`, ``, "wrong argument count|Testfile:2"},
		{"memory with options", `pubsub {
			broker memory {
				db 1
			}
		}`, ``, "broker memory takes no options|Testfile:3"},
		{"bolt with two paths", `pubsub {
			broker bolt /x /y
		}`, ``, "wrong argument count"},
		{"bolt with options", `pubsub {
			broker bolt /x {
				db 1
			}
		}`, ``, "broker bolt takes no options|Testfile:3"},
		{"redis without URL", `pubsub {
			broker redis
		}`, ``, "wrong argument count|Testfile:2"},
		{"redis bad scheme", `pubsub {
			broker redis http://127.0.0.1
		}`, ``, "broker redis: bad URL: redis: invalid URL scheme: http|Testfile:2"},
		{"redis bad db in URL", `pubsub {
			broker redis redis://127.0.0.1/x
		}`, ``, "invalid database number"},
		{"redis unknown option", `pubsub {
			broker redis redis://127.0.0.1 {
				pasword x
			}
		}`, ``, "broker redis pasword: unknown option|Testfile:3"},
		{"redis option without value", `pubsub {
			broker redis redis://127.0.0.1 {
				password
			}
		}`, ``, "wrong argument count|Testfile:3"},
		{"redis bad db", `pubsub {
			broker redis redis://127.0.0.1 {
				db one
			}
		}`, ``, "broker redis db|Testfile:3"},
		{"redis negative db", `pubsub {
			broker redis redis://127.0.0.1 {
				db -1
			}
		}`, ``, "db -1 is negative"},
		{"redis bad duration", `pubsub {
			broker redis redis://127.0.0.1 {
				read_timeout soon
			}
		}`, ``, "broker redis read_timeout|Testfile:3"},
		{"redis waits for replicas longer than a reply", `pubsub {
			broker redis redis://127.0.0.1 {
				replicas 1
				replica_timeout 5s
			}
		}`, ``, "replica_timeout 5s must be less than read_timeout 5s|Testfile:2"},
		{"redis negative replicas", `pubsub {
			broker redis redis://127.0.0.1 {
				replicas -1
			}
		}`, ``, "replicas -1: want 0 to 64"},
		{"redis bad stream name", `pubsub {
			broker redis redis://127.0.0.1 {
				stream a/b
			}
		}`, ``, `stream "a/b"`},
		{"redis half a client certificate", `pubsub {
			broker redis redis://127.0.0.1 {
				tls_cert /c.pem
			}
		}`, ``, "wrong argument count|Testfile:3"},
		{"redis never skips verification", `pubsub {
			broker redis rediss://127.0.0.1 {
				tls_insecure_skip_verify
			}
		}`, ``, "tls_insecure_skip_verify is not offered|Testfile:3"},
		{"broker twice", `pubsub {
			broker memory
			broker bolt /x
		}`, ``, "broker given twice|Testfile:3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && err == nil:
				t.Fatalf("no error, want %q", tc.err)
			}
			// tc.err is "REASON" or "REASON|FILE:LINE".
			for part := range strings.SplitSeq(tc.err, "|") {
				if err != nil && !strings.Contains(err.Error(), part) {
					t.Fatalf("error %q, want it to contain %q", err, part)
				}
			}
			if tc.err == "" && !sameJSON(t, string(h.BrokerRaw), tc.want) {
				t.Fatalf("got %s, want %s", h.BrokerRaw, tc.want)
			}
		})
	}
}

// sameJSON reports whether a and b hold the same JSON value ("" for none).
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	if a == "" || b == "" {
		return a == b
	}
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return string(ca) == string(cb)
}

// JSON configs skip the Caddyfile: Validate catches the same mistakes.
func TestRedisBrokerValidate(t *testing.T) {
	for _, tc := range []struct {
		b   RedisBroker
		err string
	}{
		{RedisBroker{URL: "redis://x"}, ""},
		{RedisBroker{URL: "{env.REDIS_URL}"}, ""},
		{RedisBroker{}, "no URL"},
		{RedisBroker{URL: "http://x"}, "bad URL"},
		{RedisBroker{URL: "redis://x", DialTimeout: -1}, "dial_timeout"},
		{RedisBroker{URL: "redis://x", KeyPrefix: "a b"}, "key_prefix"},
		{RedisBroker{URL: "redis://x", TLS: &clienttls.Files{Cert: "/c.pem"}}, "tls_cert takes a certificate and its key"},
	} {
		err := tc.b.Validate()
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.b, err, tc.err)
		}
	}
}

// The broker key says whether two definitions are one broker: equal
// settings give equal keys, any change a new one, and secrets do not show.
func TestRedisBrokerKey(t *testing.T) {
	t.Setenv("PUBSUB_TEST_REDIS_PASSWORD", "hunter2")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	key := func(b *RedisBroker, hubName string) string {
		t.Helper()
		if err := b.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		return brokerOf{b, "redis"}.poolKey(hubName)
	}
	base := func() *RedisBroker {
		return &RedisBroker{URL: "redis://127.0.0.1:6379", Password: "{env.PUBSUB_TEST_REDIS_PASSWORD}"}
	}
	k := key(base(), "chat")
	if strings.Contains(k, "hunter2") {
		t.Fatalf("pool key %q shows the password", k)
	}
	if k != key(base(), "chat") {
		t.Fatal("equal settings give different keys")
	}
	var changed []*RedisBroker
	for _, change := range []func(*RedisBroker){
		func(b *RedisBroker) { b.URL = "redis://127.0.0.1:6380" },
		func(b *RedisBroker) { b.Password = "other" },
		func(b *RedisBroker) { b.Stream = "other" },
		func(b *RedisBroker) { b.KeyPrefix = "other:" },
		func(b *RedisBroker) { b.ReadTimeout = caddy.Duration(1) },
		func(b *RedisBroker) { b.TLS = &clienttls.Files{ServerName: "other"} },
	} {
		b := base()
		change(b)
		changed = append(changed, b)
	}
	for i, b := range changed {
		if key(b, "chat") == k {
			t.Errorf("change %d keeps the key", i)
		}
	}
	if key(base(), "news") == k {
		t.Error("another hub name keeps the key")
	}
	if bolt := (brokerOf{&BoltBroker{}, "bolt"}).poolKey("chat"); bolt == k || bolt == (brokerOf{MemoryBroker{}, "memory"}).poolKey("chat") {
		t.Error("kinds of broker share a key")
	}

	t.Setenv("PUBSUB_TEST_REDIS_URL", "")
	err := (&RedisBroker{URL: "{env.PUBSUB_TEST_REDIS_URL}"}).Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "resolves to an empty value") {
		t.Fatalf("URL placeholder resolving empty: %v", err)
	}
}
