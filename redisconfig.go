package pubsub

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/clienttls"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

func init() {
	caddy.RegisterModule(RedisBroker{})
}

// defaultKeyPrefix starts the Redis keys of every hub's stream.
const defaultKeyPrefix = "pubsub:"

// RedisBroker keeps a hub's messages in a Redis stream that every Caddy
// instance naming it shares.
//
//	broker redis <url> {
//		cluster
//		username        <user>
//		password        <password>
//		db              <number>
//		key_prefix      <prefix>
//		stream          <name>
//		dial_timeout    <duration>
//		read_timeout    <duration>
//		write_timeout   <duration>
//		replicas        <n>
//		replica_timeout <duration>
//		tls_ca          <ca.pem>
//		tls_cert        <cert.pem> <key.pem>
//		tls_server_name <name>
//	}
type RedisBroker struct {
	// URL of the Redis server: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB],
	// rediss://… for TLS, or unix:///PATH. With Sentinel, go-redis'
	// failover URL: redis://[SENTINEL_USER:SENTINEL_PASSWORD@]SENTINEL1:26379
	// ?master_name=NAME&addr=SENTINEL2:26379…; with Cluster, seed nodes:
	// redis://[USER:PASSWORD@]NODE1:7000?addr=NODE2:7000…. May hold
	// placeholders such as {env.REDIS_URL}.
	URL string `json:"url,omitempty"`

	// Cluster says URL names the seed nodes of a Redis Cluster. A hub's
	// keys then carry a hash tag ({stream}), so each hub's keys share one
	// slot and different hubs spread over the shards. Default: off.
	Cluster bool `json:"cluster,omitempty"`

	// Username is the Redis ACL user, replacing the URL's; with Sentinel,
	// the master's (the URL's userinfo is the Sentinels'). May hold
	// placeholders.
	Username string `json:"username,omitempty"`

	// Password for Redis, replacing the URL's; with Sentinel, the
	// master's. May hold placeholders such as {env.REDIS_PASSWORD}.
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

	// Replicas makes each publish wait until this many replicas have its
	// messages (Redis WAIT), so that a publish answered 200 survives a
	// failover; one that is not replicated in time gets 503 (it was
	// stored, and may still be delivered). Default: 0 (no wait).
	Replicas int `json:"replicas,omitempty"`

	// ReplicaTimeout bounds that wait; less than read_timeout. Default:
	// 1s.
	ReplicaTimeout caddy.Duration `json:"replica_timeout,omitempty"`

	// TLS verifies the server with these files (any of them turns TLS on,
	// as a rediss:// URL does), with the same settings as an MQTT link's.
	// Paths may hold placeholders.
	TLS *clienttls.Files `json:"tls,omitempty"`

	cfg redis.Config // resolved by Provision, without the stream
}

// CaddyModule returns the Caddy module information.
func (RedisBroker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  brokersNamespace + ".redis",
		New: func() caddy.Module { return new(RedisBroker) },
	}
}

// UnmarshalCaddyfile reads `broker redis <url> { ... }`.
func (b *RedisBroker) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // kind
	if !d.NextArg() {
		return d.ArgErr()
	}
	b.URL = d.Val()
	at := d.Token()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		args := d.RemainingArgs()
		if opt == "cluster" {
			if len(args) != 0 {
				return d.ArgErr()
			}
			b.Cluster = true
			continue
		}
		if ok, err := parseClientTLS(d, "broker redis", opt, args, &b.TLS); ok {
			if err != nil {
				return err
			}
			continue
		}
		if len(args) != 1 {
			return d.ArgErr()
		}
		if err := b.setOption(opt, args[0]); err != nil {
			return d.Errf("broker redis %s: %v", opt, err)
		}
	}
	if err := b.Validate(); err != nil {
		return errAt(at, fmt.Errorf("broker redis: %w", err))
	}
	return nil
}

func (b *RedisBroker) setOption(opt, val string) error {
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
	case "replica_timeout":
		return duration(&b.ReplicaTimeout)
	case "replicas":
		n, err := strconv.Atoi(val)
		if err != nil {
			return err
		}
		b.Replicas = n
	default:
		return errors.New("unknown option")
	}
	return nil
}

// Validate checks the settings that need no placeholder resolved.
func (b *RedisBroker) Validate() error {
	var errs []error
	switch {
	case b.URL == "":
		errs = append(errs, errors.New("no URL"))
	case !strings.Contains(b.URL, "{"):
		if err := redis.CheckURL(b.URL, b.Cluster); err != nil {
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
	if b.Replicas < 0 || b.Replicas > 64 {
		errs = append(errs, fmt.Errorf("replicas %d: want 0 to 64", b.Replicas))
	}
	wait, read := cmp.Or(time.Duration(b.ReplicaTimeout), redis.DefaultReplicaTimeout), cmp.Or(time.Duration(b.ReadTimeout), redis.DefaultReadTimeout)
	if b.Replicas > 0 && wait >= read {
		errs = append(errs, fmt.Errorf("replica_timeout %s must be less than read_timeout %s: the wait for replicas is one reply", wait, read))
	}
	for name, d := range map[string]caddy.Duration{"dial_timeout": b.DialTimeout, "read_timeout": b.ReadTimeout, "write_timeout": b.WriteTimeout, "replica_timeout": b.ReplicaTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", name, time.Duration(d)))
		}
	}
	if b.TLS != nil && (b.TLS.Cert == "") != (b.TLS.Key == "") {
		errs = append(errs, errors.New("tls_cert takes a certificate and its key"))
	}
	return errors.Join(errs...)
}

// Provision resolves placeholders and checks the URL they make.
func (b *RedisBroker) Provision(ctx caddy.Context) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("broker redis: %w", err)
	}
	b.cfg = redis.Config{
		DB:             b.DB,
		DialTimeout:    time.Duration(b.DialTimeout),
		ReadTimeout:    time.Duration(b.ReadTimeout),
		WriteTimeout:   time.Duration(b.WriteTimeout),
		Replicas:       b.Replicas,
		ReplicaTimeout: time.Duration(b.ReplicaTimeout),
		Logger:         ctx.Logger(),
	}
	var tlsFiles clienttls.Files
	if b.TLS != nil {
		tlsFiles = *b.TLS
	}
	var errs []error
	for _, f := range []struct {
		name string
		src  string
		dst  *string
	}{
		{"url", b.URL, &b.cfg.URL}, {"username", b.Username, &b.cfg.Username}, {"password", b.Password, &b.cfg.Password},
		{"tls_ca", tlsFiles.CA, &b.cfg.TLS.CA}, {"tls_cert", tlsFiles.Cert, &b.cfg.TLS.Cert},
		{"tls_cert key", tlsFiles.Key, &b.cfg.TLS.Key}, {"tls_server_name", tlsFiles.ServerName, &b.cfg.TLS.ServerName},
	} {
		var err error
		*f.dst, err = resolve("broker redis: "+f.name, f.src)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	b.cfg.Cluster = b.Cluster
	if err := redis.CheckURL(b.cfg.URL, b.Cluster); err != nil {
		return fmt.Errorf("broker redis: bad URL: %v", err)
	}
	return nil
}

// config is the resolved configuration of hubName's stream.
func (b *RedisBroker) config(hubName string) redis.Config {
	prefix, stream := b.KeyPrefix, b.Stream
	if prefix == "" {
		prefix = defaultKeyPrefix
	}
	if stream == "" {
		stream = hubName
	}
	if b.Cluster {
		stream = "{" + stream + "}"
	}
	cfg := b.cfg
	cfg.Stream = prefix + stream
	return cfg
}

// OpenBroker implements BrokerModule.
func (b *RedisBroker) OpenBroker(hubName string, r hub.Retention) (hub.Broker, error) {
	cfg := b.config(hubName)
	cfg.Logger = cfg.Logger.With(zap.String("hub", hubName))
	broker, err := redis.New(cfg, r)
	if err != nil {
		return nil, err
	}
	// Hooks count occupied topics across the instances on this Redis.
	return redis.WithOccupancy(broker), nil
}

// BrokerKey implements BrokerModule. It covers every setting, secrets
// included, so it is hashed rather than kept in the clear.
func (b *RedisBroker) BrokerKey(hubName string) string {
	described := b.config(hubName)
	described.Logger = nil
	desc, _ := json.Marshal(described)
	sum := sha256.Sum256(desc)
	return hex.EncodeToString(sum[:])
}

// Interface guards.
var (
	_ BrokerModule          = (*RedisBroker)(nil)
	_ caddy.Provisioner     = (*RedisBroker)(nil)
	_ caddy.Validator       = (*RedisBroker)(nil)
	_ caddyfile.Unmarshaler = (*RedisBroker)(nil)
)
