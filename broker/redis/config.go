package redis

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/clienttls"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Default timeouts.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultReadTimeout = 5 * time.Second
)

// Config says how to reach Redis and which stream holds a hub.
type Config struct {
	// URL is redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://… for
	// TLS, or unix:///PATH.
	URL string
	// Username and Password, when set, replace the URL's (Redis ACL user;
	// a password alone authenticates as the default user).
	Username, Password string
	// DB, when set, replaces the URL's database number.
	DB *int
	// Stream is the key of the hub's stream; its epoch is kept at
	// Stream+":epoch".
	Stream string
	// Timeouts for connecting, and for each reply and write. Zero: 5s, 5s
	// and the read timeout.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// TLS settings; setting any of them turns TLS on, as rediss:// does.
	TLS TLS
	// Logger receives connection state changes.
	Logger *zap.Logger
}

// TLS configures the connection to a Redis server that speaks TLS.
type TLS = clienttls.Files

// CheckURL reports whether url is a Redis URL the broker can use.
func CheckURL(url string) error {
	_, err := goredis.ParseURL(url)
	return err
}

// clientOptions builds go-redis options from c. Publishes are not retried
// by the client: a reply lost after Redis applied the write would
// otherwise add the messages twice; the publisher gets 503 and decides.
func (c Config) clientOptions() (*goredis.Options, error) {
	opts, err := goredis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("redis broker: %w", err)
	}
	if c.Username != "" {
		opts.Username = c.Username
	}
	if c.Password != "" {
		opts.Password = c.Password
	}
	if c.DB != nil {
		if *c.DB < 0 {
			return nil, fmt.Errorf("redis broker: db %d is negative", *c.DB)
		}
		opts.DB = *c.DB
	}
	opts.DialTimeout = orDefault(c.DialTimeout, DefaultDialTimeout)
	opts.ReadTimeout = orDefault(c.ReadTimeout, DefaultReadTimeout)
	opts.WriteTimeout = orDefault(c.WriteTimeout, opts.ReadTimeout)
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.ContextTimeoutEnabled = true
	if c.TLS != (TLS{}) {
		if opts.TLSConfig, err = tlsConfig(c.TLS, opts); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// tlsConfig is the TLS of a connection to opts.Addr: the URL's (rediss://)
// or a new one naming the host, with t applied.
func tlsConfig(t TLS, opts *goredis.Options) (*tls.Config, error) {
	cfg := opts.TLSConfig
	if cfg == nil {
		host, _, err := net.SplitHostPort(opts.Addr)
		if err != nil {
			host = opts.Addr
		}
		cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if err := t.Apply(cfg); err != nil {
		return nil, fmt.Errorf("redis broker: %w", err)
	}
	return cfg, nil
}
