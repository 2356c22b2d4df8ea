package pubsub

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/broker/bolt"
	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Broker kinds.
const (
	BrokerMemory = "memory"
	BrokerRedis  = "redis"
	BrokerBolt   = "bolt"
)

// defaultKeyPrefix starts the Redis keys of every hub's stream.
const defaultKeyPrefix = "pubsub:"

// Broker chooses where a hub orders and keeps its messages. Changing it in
// a reload gives the hub a new broker: its subscribers are disconnected and
// resume on the new one.
type Broker struct {
	// Kind is "memory" (the default: history in this process, lost on
	// restart), "redis" (one Redis stream shared by every Caddy instance
	// that names it) or "bolt" (history in a local file that survives
	// restarts).
	Kind string `json:"kind,omitempty"`

	// URL of the Redis server (kind redis):
	// redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://… for TLS, or
	// unix:///PATH. May hold placeholders such as {env.REDIS_URL}.
	URL string `json:"url,omitempty"`

	// Username is the Redis ACL user, replacing the URL's. May hold
	// placeholders.
	Username string `json:"username,omitempty"`

	// Password for Redis, replacing the URL's. May hold placeholders such
	// as {env.REDIS_PASSWORD}.
	Password string `json:"password,omitempty"`

	// DB is the Redis database number, replacing the URL's. Default: the
	// URL's, else 0.
	DB *int `json:"db,omitempty"`

	// KeyPrefix starts the Redis key of the hub's stream. Default:
	// "pubsub:".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// Stream names the hub's stream after the prefix: the key is
	// KeyPrefix+Stream. Hubs that name one stream, on one or several Caddy
	// instances, share their messages. Default: the hub name.
	Stream string `json:"stream,omitempty"`

	// DialTimeout bounds connecting to Redis. Default: 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// ReadTimeout bounds waiting for each Redis reply. Default: 5s.
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`

	// WriteTimeout bounds sending each Redis command. Default: the read
	// timeout.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// TLSCA is a PEM file of the certificate authorities that sign the
	// Redis server's certificate. Setting any TLS field turns TLS on, as a
	// rediss:// URL does.
	TLSCA string `json:"tls_ca,omitempty"`

	// TLSCert and TLSKey are PEM files of a client certificate, for Redis
	// servers that require one.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`

	// TLSServerName is the name to verify in the Redis server's
	// certificate. Default: the URL's host.
	TLSServerName string `json:"tls_server_name,omitempty"`

	// Path of the history file (kind bolt). Its directory must exist; one
	// file holds one hub. May hold placeholders.
	Path string `json:"path,omitempty"`
}

// brokerSpec is a broker configuration resolved for one hub.
type brokerSpec struct {
	// key identifies the broker: handlers naming one hub with one key
	// share the hub; another key is another hub.
	key string
	// open makes the broker, without connecting or opening files.
	open func(hub.Retention) (hub.Broker, error)
}

// poolKey is the key of a hub in the hubs pool: a reload that changes the
// broker gets a new hub, and the old one closes with the old config.
func (s brokerSpec) poolKey(hubName string) string { return hubName + "\x00" + s.key }

// unmarshalBroker parses the broker sub-directive, args being its
// arguments on the line:
//
//	broker memory
//	broker bolt <path>
//	broker redis <url> {
//		username        <user>
//		password        <password>
//		db              <number>
//		key_prefix      <prefix>
//		stream          <name>
//		dial_timeout    <duration>
//		read_timeout    <duration>
//		write_timeout   <duration>
//		tls_ca          <pem file>
//		tls_cert        <pem file>
//		tls_key         <pem file>
//		tls_server_name <name>
//	}
func (c *HubConfig) unmarshalBroker(d *caddyfile.Dispenser, args []string) error {
	if c.Broker != nil {
		return d.Err("broker given twice")
	}
	if len(args) == 0 {
		return d.ArgErr()
	}
	b := &Broker{Kind: args[0]}
	switch {
	case b.Kind == BrokerMemory && len(args) == 1:
	case b.Kind == BrokerBolt && len(args) == 2:
		b.Path = args[1]
	case b.Kind == BrokerRedis && len(args) == 2:
		b.URL = args[1]
		if err := b.checkRedis(); err != nil {
			return d.Errf("broker: %v", err)
		}
	case b.Kind == BrokerMemory || b.Kind == BrokerBolt || b.Kind == BrokerRedis:
		return d.ArgErr()
	default:
		return d.Errf("broker: unknown kind %q (use memory, redis or bolt)", b.Kind)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if b.Kind != BrokerRedis {
			return d.Errf("broker %s takes no options", b.Kind)
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		if err := b.setRedisOption(opt, val); err != nil {
			return d.Errf("broker redis %s: %v", opt, err)
		}
	}
	if err := b.check(); err != nil {
		return d.Errf("broker: %v", err)
	}
	c.Broker = b
	return nil
}

func (b *Broker) setRedisOption(opt, val string) error {
	duration := func(dst *caddy.Duration) error {
		d, err := caddy.ParseDuration(val)
		*dst = caddy.Duration(d)
		return err
	}
	switch opt {
	case "username":
		b.Username = val
	case "password":
		b.Password = val
	case "db":
		n, err := strconv.Atoi(val)
		if err != nil {
			return err
		}
		b.DB = &n
	case "key_prefix":
		b.KeyPrefix = val
	case "stream":
		b.Stream = val
	case "dial_timeout":
		return duration(&b.DialTimeout)
	case "read_timeout":
		return duration(&b.ReadTimeout)
	case "write_timeout":
		return duration(&b.WriteTimeout)
	case "tls_ca":
		b.TLSCA = val
	case "tls_cert":
		b.TLSCert = val
	case "tls_key":
		b.TLSKey = val
	case "tls_server_name":
		b.TLSServerName = val
	default:
		return errors.New("unknown option")
	}
	return nil
}

// check checks the settings that need no placeholder resolved; a nil
// Broker is the memory broker.
func (b *Broker) check() error {
	if b == nil {
		return nil
	}
	redisOnly := b.URL != "" || b.Username != "" || b.Password != "" || b.DB != nil ||
		b.KeyPrefix != "" || b.Stream != "" || b.DialTimeout != 0 || b.ReadTimeout != 0 ||
		b.WriteTimeout != 0 || b.TLSCA != "" || b.TLSCert != "" || b.TLSKey != "" || b.TLSServerName != ""
	switch b.Kind {
	case "", BrokerMemory:
		if redisOnly || b.Path != "" {
			return errors.New("the memory broker takes no options")
		}
	case BrokerBolt:
		if redisOnly {
			return errors.New("the bolt broker takes only a path")
		}
		if b.Path == "" {
			return errors.New("bolt: no path")
		}
	case BrokerRedis:
		return b.checkRedis()
	default:
		return fmt.Errorf("unknown kind %q (use memory, redis or bolt)", b.Kind)
	}
	return nil
}

func (b *Broker) checkRedis() error {
	if b.Path != "" {
		return errors.New("the redis broker takes no path")
	}
	var errs []error
	switch {
	case b.URL == "":
		errs = append(errs, errors.New("redis: no URL"))
	case !strings.Contains(b.URL, "{"):
		if err := redis.CheckURL(b.URL); err != nil {
			errs = append(errs, fmt.Errorf("bad URL: %v", err))
		}
	}
	if b.DB != nil && *b.DB < 0 {
		errs = append(errs, fmt.Errorf("db %d is negative", *b.DB))
	}
	if b.Stream != "" && !hubName.MatchString(b.Stream) {
		errs = append(errs, fmt.Errorf("stream %q: use 1 to 64 letters, digits, '_', '.', '-'", b.Stream))
	}
	if len(b.KeyPrefix) > 128 || strings.ContainsAny(b.KeyPrefix, " \t\r\n") {
		errs = append(errs, fmt.Errorf("key_prefix %q: at most 128 bytes, no spaces", b.KeyPrefix))
	}
	for name, d := range map[string]caddy.Duration{"dial_timeout": b.DialTimeout, "read_timeout": b.ReadTimeout, "write_timeout": b.WriteTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", name, time.Duration(d)))
		}
	}
	if (b.TLSCert == "") != (b.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key go together"))
	}
	return errors.Join(errs...)
}

// spec resolves placeholders and returns the broker of hub hubName.
func (b *Broker) spec(hubName string, logger *zap.Logger) (brokerSpec, error) {
	if b == nil || b.Kind == "" || b.Kind == BrokerMemory {
		return brokerSpec{key: BrokerMemory, open: func(r hub.Retention) (hub.Broker, error) {
			return hub.NewMemoryBroker(r), nil
		}}, nil
	}
	field := func(name, s string) (string, error) { return resolve("broker "+b.Kind+": "+name, s) }
	if b.Kind == BrokerBolt {
		path, err := field("path", b.Path)
		if err != nil {
			return brokerSpec{}, err
		}
		if path, err = filepath.Abs(path); err != nil {
			return brokerSpec{}, fmt.Errorf("broker bolt: %w", err)
		}
		return brokerSpec{key: "bolt\x00" + path, open: func(r hub.Retention) (hub.Broker, error) {
			b := bolt.New(path, r)
			b.Logger = logger
			return b, nil
		}}, nil
	}

	cfg := redis.Config{
		DB:           b.DB,
		DialTimeout:  time.Duration(b.DialTimeout),
		ReadTimeout:  time.Duration(b.ReadTimeout),
		WriteTimeout: time.Duration(b.WriteTimeout),
		Logger:       logger,
	}
	var errs []error
	for _, f := range []struct {
		name string
		src  string
		dst  *string
	}{
		{"url", b.URL, &cfg.URL}, {"username", b.Username, &cfg.Username}, {"password", b.Password, &cfg.Password},
		{"tls_ca", b.TLSCA, &cfg.TLS.CA}, {"tls_cert", b.TLSCert, &cfg.TLS.Cert},
		{"tls_key", b.TLSKey, &cfg.TLS.Key}, {"tls_server_name", b.TLSServerName, &cfg.TLS.ServerName},
	} {
		var err error
		*f.dst, err = field(f.name, f.src)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return brokerSpec{}, err
	}
	prefix, stream := b.KeyPrefix, b.Stream
	if prefix == "" {
		prefix = defaultKeyPrefix
	}
	if stream == "" {
		stream = hubName
	}
	cfg.Stream = prefix + stream
	if err := redis.CheckURL(cfg.URL); err != nil {
		return brokerSpec{}, fmt.Errorf("broker redis: bad URL: %v", err)
	}
	// The key covers every setting, secrets included, so it is hashed
	// rather than kept in the clear.
	described := cfg
	described.Logger = nil
	desc, _ := json.Marshal(described)
	sum := sha256.Sum256(desc)
	return brokerSpec{key: "redis\x00" + hex.EncodeToString(sum[:]), open: func(r hub.Retention) (hub.Broker, error) {
		return redis.New(cfg, r)
	}}, nil
}
