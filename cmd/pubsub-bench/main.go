// Command pubsub-bench measures a running caddy-pubsub endpoint: it holds N
// subscribers over SSE, WebSocket or long-poll, spread over many loopback
// source addresses and, past one process's open-files limit, over several
// worker processes; publishes stamped messages at a given rate and size;
// and reports deliveries, loss, latency and the server's CPU and memory
// from /proc. It only ever connects to loopback addresses.
//
//	go run ./cmd/pubsub-bench -url http://127.0.0.1:8399/events -key KEY \
//		-pid $(pgrep -n bench-caddy) -mode sustained -n 10000 -rate 5 -duration 20s
//
// See BENCHMARKS.md for the method and cmd/pubsub-bench/run-all.sh for
// the whole suite.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Modes.
const (
	modeIdle      = "idle"      // connect N, settle, measure memory per subscriber
	modeFanout    = "fanout"    // a few messages, each to all N subscribers
	modeSustained = "sustained" // R msg/s for D to N subscribers
	modePublish   = "publish"   // as many publishes/s as possible
)

// Config is one benchmark run.
type Config struct {
	Peer        string        `json:"peer"`
	URL         string        `json:"url"`
	Transport   string        `json:"transport"`
	Mode        string        `json:"mode"`
	Subscribers int           `json:"subscribers"`
	Procs       int           `json:"procs"`
	Sources     int           `json:"sources"`
	Rate        float64       `json:"rate"`
	Size        int           `json:"size"`
	Duration    time.Duration `json:"duration_ns"`
	Count       int           `json:"count"`
	Interval    time.Duration `json:"interval_ns"`
	Publishers  int           `json:"publishers"`
	Batch       int           `json:"batch"`
	PublishVia  string        `json:"publish_via,omitempty"`
	Topic       string        `json:"topic"`
	Topics      int           `json:"topics"`
	PID         int           `json:"pid"`
	Settle      time.Duration `json:"settle_ns"`
	Idle        time.Duration `json:"idle_ns"`
	Drain       time.Duration `json:"drain_ns"`
	Connect     time.Duration `json:"connect_timeout_ns"`
	Dials       int           `json:"dial_concurrency"`
	Progress    time.Duration `json:"-"`
	Label       string        `json:"label,omitempty"`
	Key         string        `json:"-"` // never written to reports
	Token       string        `json:"-"` // never written to reports
	CAFile      string        `json:"ca_file,omitempty"`
	Insecure    bool          `json:"insecure,omitempty"`
	HTTP2       bool          `json:"http2,omitempty"`
	OwnConn     bool          `json:"http2_own_conn,omitempty"`
	// Start runs the server itself (startServers): Instances of them, from
	// ServerBin, over TLS with a self-signed certificate when TLS.
	Start     bool   `json:"start,omitempty"`
	ServerBin string `json:"server_bin,omitempty"`
	Instances int    `json:"instances"`
	Redis     bool   `json:"redis,omitempty"`
	TLS       bool   `json:"tls,omitempty"`

	// resolved by validate, or by startServers
	target target
	caPEM  []byte
	// pids are the server processes to meter, each with its descendants.
	pids []int
}

// target is the endpoint, resolved to a loopback address.
type target struct {
	addr  string // ip:port to dial
	host  string // Host header
	path  string // path and the user's query, without the tool's parameters
	query url.Values
	ipv4  bool
	// tls is an https:// target; serverName is the name its certificate
	// must hold.
	tls        bool
	serverName string
	// addrs and hosts are every instance of a scale-out run (-start
	// -instances): the subscribers are spread over them.
	addrs, hosts []string
}

func main() {
	if os.Getenv(workerEnv) != "" {
		os.Exit(workerMain(os.Stdin, os.Stdout))
	}
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

func cli(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pubsub-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	var asJSON bool
	var out string
	var report, compare, scaleOut, sizing bool
	fs.StringVar(&cfg.Peer, "peer", peerPubsub, "the server's kind: pubsub (this project; -url is its endpoint), nchan (nginx+nchan; -url is its base, /sub/ID and /pub/ID below it) or mercure (-url is the hub, /.well-known/mercure; JWTs signed with $"+mercureKeyEnv+")")
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8399/events", "pubsub endpoint (loopback only)")
	fs.StringVar(&cfg.Transport, "transport", "sse", "subscriber transport: sse, ws or poll")
	fs.StringVar(&cfg.Mode, "mode", modeSustained, "idle, fanout, sustained or publish")
	fs.IntVar(&cfg.Subscribers, "n", 100, "subscribers (publish mode: 1 unless set)")
	fs.IntVar(&cfg.Procs, "procs", 0, "worker processes holding the subscribers (0: as few as the open-files limit allows)")
	fs.IntVar(&cfg.Sources, "sources", 0, "loopback source addresses 127.0.0.2, 127.0.0.3, ... (0: one per 5000 subscribers)")
	fs.Float64Var(&cfg.Rate, "rate", 10, "messages per second, 0 for as fast as possible (sustained; publish mode: 0 unless set)")
	fs.IntVar(&cfg.Size, "size", 100, "message data size in bytes (at least the stamp, about 60)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to publish (sustained, publish)")
	fs.IntVar(&cfg.Count, "count", 1, "messages to fan out, one at a time (fanout)")
	fs.DurationVar(&cfg.Interval, "interval", time.Second, "time between fan-out messages")
	fs.IntVar(&cfg.Publishers, "publishers", 0, "concurrent publishers with keep-alive connections (0: 8 in publish mode, 2 and one more per 200 msg/s in sustained mode, 1 in fanout mode)")
	fs.StringVar(&cfg.PublishVia, "publish", publishJSON, "how publishers send to this project: json or form POSTs, or ws (publish frames on a WebSocket per publisher, each waiting for its ack)")
	fs.IntVar(&cfg.Batch, "batch", 1, "messages per publish request (>1 sends a JSON array; the server's default limit is 100)")
	fs.StringVar(&cfg.Topic, "topic", "", "topic (default: bench/RANDOM, new each run)")
	fs.IntVar(&cfg.Topics, "topics", 1, "topics: subscriber i listens to TOPIC/(i mod K), publishes go round the K topics (1: TOPIC itself)")
	fs.BoolVar(&cfg.Start, "start", false, "start the server (-peer) on a free loopback port from a template in cmd/pubsub-bench/peers/, measure it, stop it; -url and -pid are then not used")
	fs.StringVar(&cfg.ServerBin, "server-bin", "", "with -start: the server's program (default: /tmp/bench-caddy for pubsub, nginx for nchan, /tmp/mercure-caddy for mercure)")
	fs.IntVar(&cfg.Instances, "instances", 1, "with -start -peer pubsub: instances sharing one hub through a redis-server the tool starts too; subscriber i connects to instance i mod K, the publisher to the first")
	fs.BoolVar(&cfg.Redis, "redis", false, "with -start -peer pubsub: the hub kept in a redis-server the tool starts too (implied by -instances above 1)")
	fs.BoolVar(&cfg.TLS, "tls", false, "with -start: serve HTTPS with a self-signed certificate for 127.0.0.1, which the clients trust")
	fs.StringVar(&cfg.Key, "key", "", "publish key, sent as Authorization: Bearer (default $PUBSUB_BENCH_KEY)")
	fs.StringVar(&cfg.Token, "token", "", "token (a JWT) every subscriber sends as Authorization: Bearer; publishers send it too when there is no -key (default $PUBSUB_BENCH_TOKEN)")
	fs.StringVar(&cfg.CAFile, "cacert", "", "PEM file of the certificates to trust for an https:// -url (default: the system's roots)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the certificate of an https:// -url (a loopback server with a self-signed certificate)")
	fs.BoolVar(&cfg.HTTP2, "http2", false, "SSE subscribers and publishers over HTTP/2 (https:// only): each worker process's subscribers are streams of a few shared connections")
	fs.BoolVar(&cfg.OwnConn, "own-conn", false, "with -http2: each subscriber on an HTTP/2 connection of its own, as browsers are, instead of streams of a few shared ones")
	fs.IntVar(&cfg.PID, "pid", 0, "server process ID, for its CPU and memory (with its child processes': nginx's workers) from /proc (0: not measured)")
	fs.DurationVar(&cfg.Settle, "settle", 5*time.Second, "wait after all subscribers connect, before measuring")
	fs.DurationVar(&cfg.Idle, "idle", 0, "window measuring the server's idle CPU with all subscribers connected (0: 16s in idle mode, one heartbeat period and more; else 3s)")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "longest wait for deliveries after the last publish")
	fs.DurationVar(&cfg.Connect, "connect-timeout", 2*time.Minute, "longest wait for all subscribers to connect")
	fs.IntVar(&cfg.Dials, "dials", 200, "concurrent connection attempts per process")
	fs.DurationVar(&cfg.Progress, "progress", 5*time.Second, "print a progress line on stderr this often: connected, published, delivered and p99 so far (0: none)")
	fs.StringVar(&cfg.Label, "label", "", "free text copied into the report")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON instead of a table")
	fs.StringVar(&out, "out", "", "also write the JSON report to this file")
	fs.BoolVar(&report, "report", false, "print a Markdown table of the JSON reports named as arguments, and exit")
	fs.BoolVar(&scaleOut, "scale-out", false, "print the JSON reports of -instances runs named as arguments as one Markdown table (servers' and redis-server's cost against instances), and exit")
	fs.BoolVar(&sizing, "sizing", false, "print the sizing tables (memory per idle subscriber, CPU per delivery) of this project's JSON reports named as arguments, and exit")
	fs.BoolVar(&compare, "side-by-side", false, "print the JSON reports named as arguments as one Markdown table, a row per -label and a column per -peer, and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: pubsub-bench [flags]\n       pubsub-bench -report FILE.json...\n       pubsub-bench -side-by-side FILE.json...\n       pubsub-bench -scale-out FILE.json...\n       pubsub-bench -sizing FILE.json...\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.Mode == modePublish {
		if !set["n"] {
			cfg.Subscribers = 1
		}
		if !set["rate"] {
			cfg.Rate = 0
		}
	}
	if report || compare || scaleOut || sizing {
		print := printMarkdown
		switch {
		case sizing:
			print = printTable(sizingTable)
		case compare:
			print = printTable(sideBySide)
		case scaleOut:
			print = printTable(scaleOutTable)
		}
		if err := print(stdout, fs.Args()); err != nil {
			fmt.Fprintln(stderr, "pubsub-bench:", err)
			return 1
		}
		return 0
	}
	// Read here, not as the flags' defaults, so -h never prints them.
	if cfg.Key == "" {
		cfg.Key = os.Getenv("PUBSUB_BENCH_KEY")
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv("PUBSUB_BENCH_TOKEN")
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pubsub-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "pubsub-bench:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "pubsub-bench:", err)
		return 1
	}
	if out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(stderr, "pubsub-bench:", err)
			return 1
		}
	}
	if asJSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		rep.WriteTable(stdout)
	}
	return 0
}

// validate fills defaults and checks cfg; it refuses any target that is
// not a loopback address.
func (c *Config) validate() error {
	switch c.Mode {
	case modeIdle, modeFanout, modeSustained, modePublish:
	default:
		return fmt.Errorf("-mode %q: want idle, fanout, sustained or publish", c.Mode)
	}
	transports, ok := peerTransports[c.Peer]
	if !ok {
		return fmt.Errorf("-peer %q: want pubsub, nchan or mercure", c.Peer)
	}
	if !slices.Contains(transports, c.Transport) {
		return fmt.Errorf("-transport %q: -peer %s offers %s", c.Transport, c.Peer, strings.Join(transports, ", "))
	}
	switch {
	case c.Peer != peerPubsub && (c.Mode == modePublish || c.Batch > 1 || c.PublishVia != publishJSON):
		return errors.New("-mode publish, -batch and -publish measure this project's publish paths: -peer pubsub only")
	case c.PublishVia != publishJSON && c.PublishVia != publishForm && c.PublishVia != publishWS:
		return fmt.Errorf("-publish %q: want json, form or ws", c.PublishVia)
	case c.PublishVia == publishForm && c.Batch > 1:
		return errors.New("-publish form sends one message a request: -batch needs json or ws")
	case c.Topics < 1 || c.Topics > 1_000_000:
		return errors.New("-topics: 1 to 1,000,000")
	case c.Instances < 1 || c.Instances > 64:
		return errors.New("-instances: 1 to 64")
	case c.Instances > 1 && (!c.Start || c.Peer != peerPubsub || c.HTTP2):
		return errors.New("-instances: with -start and -peer pubsub, over HTTP/1.1")
	case c.Redis && (!c.Start || c.Peer != peerPubsub):
		return errors.New("-redis: with -start and -peer pubsub")
	case !c.Start && (c.TLS || c.ServerBin != ""):
		return errors.New("-tls and -server-bin: with -start")
	}
	if c.Batch < 1 || c.Batch > 10_000 {
		return errors.New("-batch: 1 to 10000 (the server takes 100 unless its limits block says more)")
	}
	if c.Publishers <= 0 {
		c.Publishers = 1
		switch {
		case c.Mode == modePublish:
			c.Publishers = 8
		case c.Mode == modeSustained:
			// A publish to many subscribers may take longer than the
			// interval between two: a second publisher keeps the rate.
			c.Publishers = min(maxPublishers, int(c.Rate/float64(c.Batch)/200)+2)
		}
	}
	if c.Idle <= 0 {
		c.Idle = 3 * time.Second
		if c.Mode == modeIdle {
			c.Idle = 16 * time.Second
		}
	}
	switch {
	case c.Subscribers < 1:
		return errors.New("-n must be at least 1")
	case c.Rate < 0 || c.Rate > 1e6:
		return errors.New("-rate: 0 to 1,000,000 msg/s")
	case c.Settle < 0 || c.Drain < 0 || c.Connect <= 0:
		return errors.New("-settle and -drain must not be negative, -connect-timeout must be positive")
	case c.Subscribers > 10_000_000:
		return errors.New("-n: at most 10,000,000")
	case c.Size < 0 || c.Size > 1<<20:
		return errors.New("-size: 0 to 1MiB")
	case c.Publishers > maxPublishers:
		return fmt.Errorf("-publishers: at most %d", maxPublishers)
	case c.Batch*(c.Size+100) > 16<<20:
		return errors.New("-batch × -size: a publish request would pass 16MiB, the largest max_message_size")
	case c.Mode == modeFanout && c.Batch > 1:
		return errors.New("-batch applies to sustained and publish modes")
	case c.Count < 1 || c.Count > 10_000:
		return errors.New("-count: 1 to 10000")
	case c.Duration <= 0 || c.Duration > time.Hour:
		return errors.New("-duration: more than 0, at most 1h")
	case c.Procs < 0 || c.Procs > 256:
		return errors.New("-procs: 0 to 256")
	case c.Sources < 0 || c.Sources > 60000:
		return errors.New("-sources: 0 to 60000")
	case c.Progress < 0:
		return errors.New("-progress must not be negative")
	case c.Dials < 1:
		return errors.New("-dials: at least 1")
	}
	if c.Instances > 1 {
		c.Redis = true
	}
	if c.Sources == 0 {
		c.Sources = max(1, (c.Subscribers+4999)/5000)
	}
	if c.Start {
		// startServers points the run at what it starts.
		c.URL = "http://127.0.0.1:1/"
		if c.TLS {
			c.URL = "https://127.0.0.1:1/"
		}
	}
	t, err := resolveTarget(c.URL)
	if err != nil {
		return err
	}
	switch {
	case !t.tls && (c.CAFile != "" || c.Insecure || c.HTTP2):
		return errors.New("-cacert, -insecure and -http2 need an https:// -url")
	case c.CAFile != "" && c.Insecure:
		return errors.New("-cacert and -insecure: use one (-insecure verifies nothing)")
	case c.OwnConn && !c.HTTP2:
		return errors.New("-own-conn: with -http2")
	case c.HTTP2 && c.Transport != "sse":
		return errors.New("-http2: for -transport sse (WebSocket and long-poll subscribers use HTTP/1.1)")
	case !headerSafe(c.Token) || !headerSafe(c.Key):
		return errors.New("-token and -key: printable ASCII without spaces")
	}
	if c.CAFile != "" {
		if c.caPEM, err = os.ReadFile(c.CAFile); err != nil {
			return fmt.Errorf("-cacert: %w", err)
		}
		if _, err := clientTLS(c.caPEM, false, t.serverName); err != nil {
			return err
		}
	}
	if !t.ipv4 && c.Sources > 1 {
		// IPv6 loopback is one address: ::1.
		c.Sources = 1
	}
	c.target = t
	c.pids = nil
	if c.PID > 0 {
		c.pids = []int{c.PID}
	}
	return nil
}

// headerSafe reports whether v can go into an HTTP header as it is.
func headerSafe(v string) bool {
	for _, r := range v {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

// resolveTarget checks that raw is an http or https URL whose host is a
// loopback address (or localhost) and returns what to dial.
func resolveTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return target{}, fmt.Errorf("-url %q: use an http:// or https:// URL (the tool picks ws:// or wss:// itself for -transport ws)", raw)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	var ip net.IP
	if strings.EqualFold(host, "localhost") {
		ip = net.IPv4(127, 0, 0, 1)
	} else {
		ip = net.ParseIP(host)
	}
	if ip == nil || !ip.IsLoopback() {
		return target{}, fmt.Errorf("-url %q: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed", raw)
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return target{
		addr:       net.JoinHostPort(ip.String(), port),
		host:       u.Host,
		path:       path,
		query:      u.Query(),
		ipv4:       ip.To4() != nil,
		tls:        u.Scheme == "https",
		serverName: host,
	}, nil
}
