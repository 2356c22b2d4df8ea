package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// The servers -start runs: one template each, rendered into a temporary
// directory.
//
//go:embed peers/*.tmpl
var peerTemplates embed.FS

// nchanModule is where Debian's libnginx-mod-nchan puts the module.
const nchanModule = "/usr/lib/nginx/modules/ngx_nchan_module.so"

// defaultServerBin is the program -start runs for each peer when
// -server-bin is not given: the binaries run-all.sh and peers.sh build.
var defaultServerBin = map[string]string{
	peerPubsub:  "/tmp/bench-caddy",
	peerNchan:   "nginx",
	peerMercure: "/tmp/mercure-caddy",
}

// serverConfig is what a template needs.
type serverConfig struct {
	Dir       string // the server's own temporary directory
	Port      int
	TLS       bool
	Cert, Key string // PEM files, with TLS
	Redis     string // host:port of the shared redis-server (pubsub)
	Module    string // nchan's module (nginx)
	User      string // the worker's user, when nginx runs as root
	Files     int    // open files (nginx)
	// Connections is nginx's worker_connections: nchan takes more than
	// one per subscriber (at 10,000 subscribers and 10,100 it closed 534
	// of them, "worker_connections are not enough, reusing connections").
	Connections int
}

// renderTemplate renders peers/NAME.tmpl with c.
func renderTemplate(name string, c serverConfig) ([]byte, error) {
	t, err := template.ParseFS(peerTemplates, "peers/"+name+".tmpl")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// startedServers are the processes -start runs for one run: the servers,
// and redis-server for a scale-out.
type startedServers struct {
	dir     string
	servers []*process
	redis   *process
	// redisAddr is redis-server's host:port.
	redisAddr string
	// urls are the servers' endpoints; addrs and hosts what to dial and
	// send as Host.
	urls         []string
	addrs, hosts []string
}

// startServers starts cfg.Instances servers of cfg.Peer from cfg.ServerBin
// on free loopback ports (and a redis-server they share with cfg.Redis),
// waits until they listen, and points cfg at them. Their logs
// go to files in their directory, which log names when one fails.
func startServers(ctx context.Context, cfg *Config, log io.Writer) (_ *startedServers, err error) {
	dir, err := os.MkdirTemp("", "pubsub-bench-servers-")
	if err != nil {
		return nil, err
	}
	s := &startedServers{dir: dir}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	bin := cfg.ServerBin
	if bin == "" {
		bin = defaultServerBin[cfg.Peer]
	}
	if bin, err = findProgram(bin); err != nil {
		return nil, fmt.Errorf("-start: %w", err)
	}
	var cert, key string
	if cfg.TLS {
		cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		if cfg.caPEM, err = writeSelfSigned(cert, key); err != nil {
			return nil, err
		}
	}
	env, err := cfg.startSecrets()
	if err != nil {
		return nil, err
	}
	if cfg.Redis {
		if err := s.startRedis(ctx); err != nil {
			return nil, err
		}
	}
	for k := range cfg.Instances {
		c := serverConfig{Dir: filepath.Join(dir, fmt.Sprintf("%s-%d", cfg.Peer, k)), TLS: cfg.TLS, Cert: cert, Key: key, Redis: s.redisAddr}
		p, err := startOnFreePort(func(port int) (*exec.Cmd, error) {
			c.Port = port
			return serverCommand(ctx, cfg, bin, c, env)
		}, c.Dir)
		if err != nil {
			return nil, err
		}
		s.servers = append(s.servers, p)
		scheme, path := "http", "/events"
		if cfg.TLS {
			scheme = "https"
		}
		switch cfg.Peer {
		case peerNchan:
			path = "/"
		case peerMercure:
			path = "/.well-known/mercure"
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
		s.urls = append(s.urls, scheme+"://"+addr+path)
		s.addrs, s.hosts = append(s.addrs, addr), append(s.hosts, addr)
	}
	fmt.Fprintf(log, "started %d × %s from %s in %s: %v\n", cfg.Instances, cfg.Peer, bin, dir, s.urls)
	// The publisher and the metering go to the first server.
	cfg.URL = s.urls[0]
	if cfg.target, err = resolveTarget(cfg.URL); err != nil {
		return nil, err
	}
	if cfg.Instances > 1 {
		cfg.target.addrs, cfg.target.hosts = s.addrs, s.hosts
	}
	cfg.pids = nil
	for _, p := range s.servers {
		cfg.pids = append(cfg.pids, p.cmd.Process.Pid)
	}
	return s, nil
}

// startSecrets makes up the publish key, or the Mercure key and the JWTs
// signed with it, unless the environment gives them, and returns what the
// server's environment needs of them. This process's environment stays as
// it was.
func (c *Config) startSecrets() ([]string, error) {
	random := func() string {
		var b [24]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	switch c.Peer {
	case peerPubsub:
		if c.Key == "" {
			c.Key = random()
		}
		return []string{"PUBSUB_BENCH_KEY=" + c.Key}, nil
	case peerMercure:
		key := os.Getenv(mercureKeyEnv)
		if key == "" {
			key = random()
		}
		pub, sub, err := mercureTokens(key, 24*time.Hour)
		if err != nil {
			return nil, err
		}
		c.Key, c.Token = pub, sub
		return []string{mercureKeyEnv + "=" + key}, nil
	}
	return nil, nil
}

// serverCommand renders the peer's configuration into c.Dir and returns
// the command that runs it in the foreground, with env added to its
// environment.
func serverCommand(ctx context.Context, cfg *Config, bin string, c serverConfig, env []string) (*exec.Cmd, error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	var name, file string
	switch cfg.Peer {
	case peerNchan:
		name, file = "nginx.conf", "nginx.conf"
		c.Module, c.Files = nchanModule, max(1024, cfg.Subscribers+fdReserve)
		c.Connections = 2 * c.Files
		if _, err := os.Stat(c.Module); err != nil {
			return nil, fmt.Errorf("nchan: %w (apt-get install nginx libnginx-mod-nchan)", err)
		}
		if os.Geteuid() == 0 {
			// As root nginx would run its worker as nobody, who cannot
			// write the temporary directory.
			c.User = "root"
		}
	case peerMercure:
		name, file = "mercure.Caddyfile", "Caddyfile"
	default:
		name, file = "pubsub.Caddyfile", "Caddyfile"
	}
	b, err := renderTemplate(name, c)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(c.Dir, file)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	if cfg.Peer == peerNchan {
		cmd = exec.CommandContext(ctx, bin, "-p", c.Dir+"/", "-c", path, "-e", filepath.Join(c.Dir, "error.log"), "-g", "daemon off;")
	} else {
		cmd = exec.CommandContext(ctx, bin, "run", "--config", path, "--adapter", "caddyfile")
		cmd.Env = append(append(os.Environ(), env...), "XDG_CONFIG_HOME="+c.Dir, "XDG_DATA_HOME="+c.Dir)
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd, nil
}

// startRedis runs a redis-server without persistence for the instances
// to share.
func (s *startedServers) startRedis(ctx context.Context) error {
	bin, err := findProgram("redis-server")
	if err != nil {
		return fmt.Errorf("-instances: %w (apt-get install redis-server)", err)
	}
	dir := filepath.Join(s.dir, "redis")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p, err := startOnFreePort(func(port int) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		return cmd, nil
	}, dir)
	if err != nil {
		return err
	}
	s.redis, s.redisAddr = p, net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	return nil
}

// startOnFreePort runs the command made for a free loopback port and
// waits until it listens there. A port free a moment ago may be taken by
// then (other programs' sockets on 127.0.0.2 and up hold the same port
// numbers), so it tries up to three ports.
func startOnFreePort(command func(port int) (*exec.Cmd, error), dir string) (*process, error) {
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return nil, err
		}
		var cmd *exec.Cmd
		if cmd, err = command(port); err != nil {
			return nil, err
		}
		var p *process
		if p, err = run(cmd, dir, port); err == nil {
			return p, nil
		}
		if !strings.Contains(err.Error(), "in use") {
			return nil, err
		}
	}
	return nil, err
}

// process is a server the tool started.
type process struct {
	cmd    *exec.Cmd
	port   int
	exited chan struct{}
}

// run starts cmd with its output in dir/output.log and waits until port
// takes connections.
func run(cmd *exec.Cmd, dir string, port int) (*process, error) {
	logFile := filepath.Join(dir, "output.log")
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, port: port, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("%s exited: %s (%s)", cmd.Path, bytes.TrimSpace(b[max(0, len(b)-2000):]), logFile)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not listen on %s within 30s; see %s", cmd.Path, addr, logFile)
		}
	}
}

// stop ends the process: SIGTERM, then SIGKILL after 10s.
func (p *process) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// stop ends the servers and redis-server and removes their directory.
func (s *startedServers) stop() {
	for _, p := range s.servers {
		p.stop()
	}
	s.redis.stop()
	_ = os.RemoveAll(s.dir)
}

// findProgram returns the path of a program: as given when it holds a
// slash, else from $PATH or /usr/sbin (where Debian puts nginx and
// redis-server, not always in a user's $PATH).
func findProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if filepath.Base(name) == name {
		if p, err := exec.LookPath(filepath.Join("/usr/sbin", name)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found", name)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
