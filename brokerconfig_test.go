package pubsub

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

// The broker sub-directive becomes the Broker field; bad input is an error
// at the line that has it.
func TestUnmarshalBroker(t *testing.T) {
	db := 2
	for _, tc := range []struct {
		name, input string
		want        *Broker
		err         string
	}{
		{"default", `pubsub`, nil, ""},
		{"memory", `pubsub {
			broker memory
		}`, &Broker{Kind: "memory"}, ""},
		{"bolt", `pubsub {
			broker bolt /var/lib/caddy/pubsub.db
		}`, &Broker{Kind: "bolt", Path: "/var/lib/caddy/pubsub.db"}, ""},
		{"redis URL only", `pubsub {
			broker redis redis://127.0.0.1:6379/0
		}`, &Broker{Kind: "redis", URL: "redis://127.0.0.1:6379/0"}, ""},
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
				tls_ca /etc/ca.pem
				tls_cert /etc/client.pem
				tls_key /etc/client.key
				tls_server_name redis.internal
			}
		}`, &Broker{
			Kind: "redis", URL: "rediss://redis.internal:6380", Username: "caddy", Password: "{env.REDIS_PASSWORD}",
			DB: &db, KeyPrefix: "app:", Stream: "chat",
			DialTimeout: caddy.Duration(2 * time.Second), ReadTimeout: caddy.Duration(3 * time.Second), WriteTimeout: caddy.Duration(4 * time.Second),
			TLSCA: "/etc/ca.pem", TLSCert: "/etc/client.pem", TLSKey: "/etc/client.key", TLSServerName: "redis.internal",
		}, ""},
		{"URL placeholder checked at provision", `pubsub {
			broker redis {env.REDIS_URL}
		}`, &Broker{Kind: "redis", URL: "{env.REDIS_URL}"}, ""},

		{"no kind", `pubsub {
			broker
		}`, nil, "wrong argument count|Testfile:2"},
		{"unknown kind", `pubsub {
			broker nats nats://x
		}`, nil, `broker: unknown kind "nats"|Testfile:2`},
		{"memory with argument", `pubsub {
			broker memory /x
		}`, nil, "wrong argument count|Testfile:2"},
		{"bolt without path", `pubsub {
			broker bolt
		}`, nil, "wrong argument count"},
		{"bolt with options", `pubsub {
			broker bolt /x {
				db 1
			}
		}`, nil, "broker bolt takes no options|Testfile:3"},
		{"redis bad scheme", `pubsub {
			broker redis http://127.0.0.1
		}`, nil, "broker: bad URL: redis: invalid URL scheme: http|Testfile:2"},
		{"redis bad db in URL", `pubsub {
			broker redis redis://127.0.0.1/x
		}`, nil, "invalid database number"},
		{"redis unknown option", `pubsub {
			broker redis redis://127.0.0.1 {
				pasword x
			}
		}`, nil, "broker redis pasword: unknown option|Testfile:3"},
		{"redis option without value", `pubsub {
			broker redis redis://127.0.0.1 {
				password
			}
		}`, nil, "wrong argument count|Testfile:3"},
		{"redis bad db", `pubsub {
			broker redis redis://127.0.0.1 {
				db one
			}
		}`, nil, "broker redis db|Testfile:3"},
		{"redis negative db", `pubsub {
			broker redis redis://127.0.0.1 {
				db -1
			}
		}`, nil, "db -1 is negative"},
		{"redis bad duration", `pubsub {
			broker redis redis://127.0.0.1 {
				read_timeout soon
			}
		}`, nil, "broker redis read_timeout|Testfile:3"},
		{"redis bad stream name", `pubsub {
			broker redis redis://127.0.0.1 {
				stream a/b
			}
		}`, nil, `stream "a/b"`},
		{"redis half a client certificate", `pubsub {
			broker redis redis://127.0.0.1 {
				tls_cert /c.pem
			}
		}`, nil, "tls_cert and tls_key go together"},
		{"broker twice", `pubsub {
			broker memory
			broker bolt /x
		}`, nil, "broker given twice|Testfile:3"},
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
			if tc.err == "" && !reflect.DeepEqual(h.Broker, tc.want) {
				t.Fatalf("got %+v, want %+v", h.Broker, tc.want)
			}
		})
	}
}

// JSON configs skip the Caddyfile: Validate catches the same mistakes.
func TestBrokerCheck(t *testing.T) {
	for _, tc := range []struct {
		b   *Broker
		err string
	}{
		{nil, ""},
		{&Broker{}, ""},
		{&Broker{Kind: "memory", URL: "redis://x"}, "takes no options"},
		{&Broker{Kind: "bolt"}, "no path"},
		{&Broker{Kind: "bolt", Path: "/x", Stream: "s"}, "only a path"},
		{&Broker{Kind: "redis"}, "no URL"},
		{&Broker{Kind: "redis", URL: "redis://x", Path: "/x"}, "no path"},
		{&Broker{Kind: "redis", URL: "redis://x", DialTimeout: -1}, "dial_timeout"},
		{&Broker{Kind: "kafka"}, "unknown kind"},
	} {
		err := tc.b.check()
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("check(%+v) = %v, want %q", tc.b, err, tc.err)
		}
	}
}

// The broker key says whether two definitions are one broker: equal
// settings give equal keys, any change a new one, and secrets do not show.
func TestBrokerSpecKey(t *testing.T) {
	t.Setenv("PUBSUB_TEST_REDIS_PASSWORD", "hunter2")
	key := func(b *Broker, hubName string) string {
		t.Helper()
		s, err := b.spec(hubName, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		return s.poolKey(hubName)
	}
	base := func() *Broker {
		return &Broker{Kind: "redis", URL: "redis://127.0.0.1:6379", Password: "{env.PUBSUB_TEST_REDIS_PASSWORD}"}
	}
	k := key(base(), "chat")
	if strings.Contains(k, "hunter2") {
		t.Fatalf("pool key %q shows the password", k)
	}
	if k != key(base(), "chat") {
		t.Fatal("equal settings give different keys")
	}
	if key(nil, "chat") != key(&Broker{Kind: "memory"}, "chat") {
		t.Fatal("the default broker and broker memory differ")
	}
	changed := []*Broker{nil, {Kind: "bolt", Path: "/tmp/x.db"}}
	for _, change := range []func(*Broker){
		func(b *Broker) { b.URL = "redis://127.0.0.1:6380" },
		func(b *Broker) { b.Password = "other" },
		func(b *Broker) { b.Stream = "other" },
		func(b *Broker) { b.KeyPrefix = "other:" },
		func(b *Broker) { b.ReadTimeout = caddy.Duration(time.Second) },
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

	t.Setenv("PUBSUB_TEST_REDIS_URL", "")
	if _, err := (&Broker{Kind: "redis", URL: "{env.PUBSUB_TEST_REDIS_URL}"}).spec("chat", zap.NewNop()); err == nil || !strings.Contains(err.Error(), "resolves to an empty value") {
		t.Fatalf("URL placeholder resolving empty: %v", err)
	}
}
