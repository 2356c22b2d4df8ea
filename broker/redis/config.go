package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/clienttls"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Default timeouts.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultReadTimeout = 5 * time.Second
	// DefaultReplicaTimeout bounds the wait for replicas (Config.Replicas).
	DefaultReplicaTimeout = time.Second
)

// Config says how to reach Redis and which stream holds a hub.
type Config struct {
	// URL is redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://… for
	// TLS, or unix:///PATH.
	URL string
	// Username and Password, when set, replace the URL's (Redis ACL user;
	// a password alone authenticates as the default user). With Sentinel
	// they are the master's and replicas', the URL's userinfo the
	// Sentinels'.
	Username, Password string
	// DB, when set, replaces the URL's database number.
	DB *int
	// Stream is the key of the hub's stream; its epoch is kept at
	// Stream+":epoch" and its append counter at Stream+":seq".
	Stream string
	// Timeouts for connecting, and for each reply and write. Zero: 5s, 5s
	// and the read timeout.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// Replicas, when above 0, makes Publish wait until that many replicas
	// have the messages (WAIT), at most ReplicaTimeout (zero:
	// DefaultReplicaTimeout; less than the read timeout), so that
	// acknowledged means replicated. Publishes cost a replication round
	// trip more.
	Replicas       int
	ReplicaTimeout time.Duration
	// Cluster says the URL names seed nodes of a Redis Cluster
	// (redis://NODE1:7000?addr=NODE2:7000), not one server. Without it, a
	// URL with master_name is go-redis' failover URL: Sentinels (with the
	// Sentinels' userinfo) and the name of the master they watch.
	Cluster bool
	// TLS settings; setting any of them turns TLS on, as rediss:// does.
	TLS TLS
	// Logger receives connection state changes.
	Logger *zap.Logger
}

// TLS configures the connection to a Redis server that speaks TLS.
type TLS = clienttls.Files

// CheckURL reports whether url is a Redis URL the broker can use: a
// standalone server's, go-redis' failover URL (Sentinel, recognised by its
// master_name), or with cluster the seed nodes of a Redis Cluster.
func CheckURL(url string, cluster bool) error {
	_, err := Config{URL: url, Cluster: cluster}.newClient(false)
	return err
}

// client is a go-redis client of any of the three shapes, and what the
// broker reports about it.
type client struct {
	goredis.UniversalClient
	addr string // the address, or the first seed, for logs
	db   int
	// cluster: signals use sharded pub/sub (SPUBLISH, SSUBSCRIBE, Redis
	// 7), which keeps one channel on its slot's node; a plain PUBLISH goes
	// to any node and crosses the cluster bus, so two signals could arrive
	// out of order.
	cluster bool
}

// newClient builds the go-redis client of c (without connecting: go-redis
// dials on first use); with open false it only checks c. Publishes are not
// retried by the client: a reply lost after Redis applied the write would
// otherwise add the messages twice; the publisher gets 503 and decides.
func (c Config) newClient(open bool) (*client, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	if q.Has("skip_verify") {
		return nil, errors.New("skip_verify is not offered: it would hand the password to anyone on the path; name the server's CA with tls_ca instead")
	}
	if c.DB != nil && *c.DB < 0 {
		return nil, fmt.Errorf("db %d is negative", *c.DB)
	}
	if c.Replicas < 0 || c.ReplicaTimeout < 0 {
		return nil, errors.New("replicas and replica_timeout cannot be negative")
	}
	if read := orDefault(c.ReadTimeout, DefaultReadTimeout); c.Replicas > 0 && orDefault(c.ReplicaTimeout, DefaultReplicaTimeout) >= read {
		return nil, fmt.Errorf("replica_timeout must be less than read_timeout (%s): the wait for replicas is one reply", read)
	}
	k := knobs{
		Username: c.Username, Password: c.Password,
		Dial:  orDefault(c.DialTimeout, DefaultDialTimeout),
		Read:  orDefault(c.ReadTimeout, DefaultReadTimeout),
		Write: orDefault(c.WriteTimeout, orDefault(c.ReadTimeout, DefaultReadTimeout)),
		TLS:   c.TLS,
	}
	var build func() *client
	switch {
	case c.Cluster && q.Has("master_name"):
		return nil, errors.New("a URL with master_name names Sentinels, not cluster nodes: drop cluster, or master_name")
	case c.Cluster:
		if strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "0" || c.DB != nil && *c.DB != 0 {
			return nil, errors.New("a Redis Cluster has only database 0")
		}
		opts, err := goredis.ParseClusterURL(c.URL)
		if err != nil {
			return nil, err
		}
		if err := k.apply(opts.Addrs[0], &opts.Username, &opts.Password, &opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.TLSConfig); err != nil {
			return nil, err
		}
		opts.MaxRetries, opts.DialerRetries, opts.ContextTimeoutEnabled = noRetries, 1, true
		build = func() *client { return &client{goredis.NewClusterClient(opts), opts.Addrs[0], 0, true} }
	case q.Has("master_name"):
		if q.Has("password") || q.Has("username") {
			return nil, errors.New("give the master's username and password with the username and password options, not in the URL (its userinfo is the Sentinels')")
		}
		opts, err := goredis.ParseFailoverURL(c.URL)
		if err != nil {
			return nil, err
		}
		if c.DB != nil {
			opts.DB = *c.DB
		}
		if err := k.apply(opts.SentinelAddrs[0], &opts.Username, &opts.Password, &opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.TLSConfig); err != nil {
			return nil, err
		}
		opts.MaxRetries, opts.DialerRetries, opts.ContextTimeoutEnabled = noRetries, 1, true
		build = func() *client {
			return &client{goredis.NewFailoverClient(opts), opts.MasterName + "@" + opts.SentinelAddrs[0], opts.DB, false}
		}
	default:
		opts, err := goredis.ParseURL(c.URL)
		if err != nil {
			return nil, err
		}
		if c.DB != nil {
			opts.DB = *c.DB
		}
		if err := k.apply(opts.Addr, &opts.Username, &opts.Password, &opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.TLSConfig); err != nil {
			return nil, err
		}
		opts.MaxRetries, opts.DialerRetries, opts.ContextTimeoutEnabled = noRetries, 1, true
		build = func() *client { return &client{goredis.NewClient(opts), opts.Addr, opts.DB, false} }
	}
	if !open {
		return nil, nil
	}
	return build(), nil
}

// noRetries is go-redis' MaxRetries for none.
const noRetries = -1

// knobs are the settings every shape of client takes from Config.
type knobs struct {
	Username, Password string
	Dial, Read, Write  time.Duration
	TLS                TLS
}

// apply sets the knobs in one shape's options; addr is the first server
// the client contacts, whose host a TLS connection verifies by default.
func (k knobs) apply(addr string, username, password *string, dial, read, write *time.Duration, t **tls.Config) error {
	if k.Username != "" {
		*username = k.Username
	}
	if k.Password != "" {
		*password = k.Password
	}
	*dial, *read, *write = k.Dial, k.Read, k.Write
	if k.TLS == (TLS{}) {
		return nil
	}
	cfg := *t
	if cfg == nil {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if err := k.TLS.Apply(cfg); err != nil {
		return err
	}
	*t = cfg
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
