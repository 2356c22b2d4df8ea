// Package mqtttest runs real MQTT brokers for tests, on free loopback
// ports: an embedded broker (mochi-mqtt) in the test process, so the tests
// need nothing installed, or Debian's mosquitto as a child process. Each
// broker has two listeners, one for the link under test and one for the
// test's publisher, so a test can cut the link off (Down) while it goes on
// publishing, then let it back (Up).
package mqtttest

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Wait bounds every wait on a broker.
const Wait = 10 * time.Second

// Options configure a test broker.
type Options struct {
	// Users, when set, are the only username/password pairs the broker
	// accepts; the publisher logs in as Publisher.
	Users map[string]string
	// Down starts the broker with the link's listener down.
	Down bool
	// TLS, when set, makes the link's listener TLS (ssl://, or wss://
	// with WebSocket). Embedded broker only.
	TLS *tls.Config
	// WebSocket makes the link's listener MQTT over WebSocket (ws://).
	// Embedded broker only.
	WebSocket bool
}

// Publisher is the login of the test publisher when Options.Users is set.
const Publisher = "publisher"

// Broker is a running MQTT broker. Sessions (subscriptions and queued QoS 1
// messages of clients with clean session off) survive Down and Up.
type Broker struct {
	t        testing.TB
	Kind     string // "embedded" or "mosquitto"
	LinkPort int
	PubPort  int
	users    map[string]string
	tls      *tls.Config
	ws       bool

	mu  sync.Mutex
	pub paho.Client
	n   int // publisher connections, for unique client IDs

	// embedded
	srv *mochi.Server

	// mosquitto
	bin    string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// URL is the broker URL the link under test connects to.
func (b *Broker) URL() string {
	switch {
	case b.ws && b.tls != nil:
		return fmt.Sprintf("wss://127.0.0.1:%d/mqtt", b.LinkPort)
	case b.ws:
		return fmt.Sprintf("ws://127.0.0.1:%d/mqtt", b.LinkPort)
	case b.tls != nil:
		return fmt.Sprintf("ssl://127.0.0.1:%d", b.LinkPort)
	}
	return fmt.Sprintf("tcp://127.0.0.1:%d", b.LinkPort)
}

func newBroker(t testing.TB, kind string, opts Options) *Broker {
	users := opts.Users
	if users != nil {
		users = map[string]string{Publisher: "publisher-secret"}
		for u, p := range opts.Users {
			users[u] = p
		}
	}
	return &Broker{t: t, Kind: kind, LinkPort: freePort(t), PubPort: freePort(t), users: users, tls: opts.TLS, ws: opts.WebSocket}
}

// Embedded starts a broker in the test process and stops it when the test
// ends.
func Embedded(t testing.TB, opts Options) *Broker {
	t.Helper()
	b := newBroker(t, "embedded", opts)
	b.srv = mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var err error
	if b.users == nil {
		err = b.srv.AddHook(new(auth.AllowHook), nil)
	} else {
		ledger := &auth.Ledger{Users: auth.Users{}}
		for u, p := range b.users {
			ledger.Users[u] = auth.UserRule{Username: auth.RString(u), Password: auth.RString(p)}
		}
		err = b.srv.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger})
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.AddListener(listeners.NewTCP(listeners.Config{ID: "pub", Address: b.addr(b.PubPort)})); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.closePublisher()
		// mochi-mqtt's Close was seen to deadlock once under load, with no
		// code of ours on the stack: bound it so a test run cannot hang.
		closed := make(chan struct{})
		go func() {
			_ = b.srv.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Log("embedded MQTT broker did not close within 10s; leaving it behind")
		}
	})
	if !opts.Down {
		b.Up()
	}
	return b
}

// Mosquitto starts Debian's mosquitto (at bin) with persistence in a
// temporary directory, and stops it when the test ends.
func Mosquitto(t testing.TB, bin string, opts Options) *Broker {
	t.Helper()
	if opts.TLS != nil || opts.WebSocket {
		t.Fatal("mqtttest: TLS and WebSocket listeners are for the embedded broker")
	}
	b := newBroker(t, "mosquitto", opts)
	b.bin, b.dir = bin, t.TempDir()
	if b.users != nil {
		passwd, err := exec.LookPath("mosquitto_passwd")
		if err != nil {
			t.Fatal("mosquitto_passwd (package mosquitto) is needed for a broker with users")
		}
		file := filepath.Join(b.dir, "passwd")
		args := []string{"-c"}
		for u, p := range b.users {
			if out, err := exec.Command(passwd, append(args, "-b", file, u, p)...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_passwd: %v: %s", err, out)
			}
			args = nil
		}
	}
	t.Cleanup(func() {
		b.closePublisher()
		b.stopMosquitto()
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(b.dir, "mosquitto.log")); err == nil {
				t.Logf("mosquitto log:\n%s", log)
			}
		}
	})
	b.startMosquitto(!opts.Down)
	return b
}

// Down closes the link's listener and drops the clients on it. The
// embedded broker keeps running; mosquitto is stopped (SIGTERM, which
// saves its sessions to disk) and restarted without that listener.
func (b *Broker) Down() {
	b.t.Helper()
	switch b.Kind {
	case "embedded":
		b.srv.Listeners.Close("link", func(id string) {
			for _, cl := range b.srv.Clients.GetByListener(id) {
				_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		})
		b.srv.Listeners.Delete("link")
	default:
		b.closePublisher()
		b.stopMosquitto()
		b.startMosquitto(false)
	}
}

// Up opens the link's listener again; mosquitto is restarted with it.
func (b *Broker) Up() {
	b.t.Helper()
	switch b.Kind {
	case "embedded":
		cfg := listeners.Config{ID: "link", Address: b.addr(b.LinkPort), TLSConfig: b.tls}
		var l listeners.Listener = listeners.NewTCP(cfg)
		if b.ws {
			l = listeners.NewWebsocket(cfg)
		}
		if err := b.srv.AddListener(l); err != nil {
			b.t.Fatal(err)
		}
		b.srv.Listeners.Serve("link", b.srv.EstablishConnection)
	default:
		b.closePublisher()
		b.stopMosquitto()
		b.startMosquitto(true)
	}
}

// Restart stops the broker and starts it again with the link's listener:
// mosquitto is stopped with SIGTERM and restarted from its persistence
// file. The embedded broker keeps its state in memory, so for it a restart
// is Down then Up.
func (b *Broker) Restart() {
	b.t.Helper()
	if b.Kind == "embedded" {
		b.Down()
	}
	b.Up()
}

// Publish publishes payload to topic from a separate MQTT client on the
// publisher listener. It returns once the broker has handed the message
// to its current subscribers: a broker may acknowledge a message before it
// fans it out (the embedded one does), so Publish follows it with a QoS 1
// message to a $ topic, which no # filter matches, and waits for that
// one's PUBACK: it comes after the broker is done with what came before.
func (b *Broker) Publish(topic string, payload []byte, qos byte, retain bool) {
	b.t.Helper()
	c := b.publisher()
	for _, tok := range []paho.Token{c.Publish(topic, qos, retain, payload), c.Publish("$mqtttest/barrier", 1, false, []byte{})} {
		if !tok.WaitTimeout(Wait) {
			b.t.Fatalf("publish to %s: no answer within %s", topic, Wait)
		}
		if err := tok.Error(); err != nil {
			b.t.Fatalf("publish to %s: %v", topic, err)
		}
	}
}

// publisher returns a connected publishing client, connecting a new one
// after the broker restarted.
func (b *Broker) publisher() paho.Client {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pub != nil && b.pub.IsConnectionOpen() {
		return b.pub
	}
	if b.pub != nil {
		b.pub.Disconnect(0)
	}
	b.n++
	o := paho.NewClientOptions().
		AddBroker(fmt.Sprintf("tcp://%s", b.addr(b.PubPort))).
		SetClientID(fmt.Sprintf("mqtttest-publisher-%d", b.n)).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectTimeout(Wait)
	if b.users != nil {
		o.SetUsername(Publisher).SetPassword(b.users[Publisher])
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(Wait) || tok.Error() != nil {
		b.t.Fatalf("publisher connect to %s broker: %v", b.Kind, tok.Error())
	}
	b.pub = c
	return c
}

func (b *Broker) closePublisher() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pub != nil {
		b.pub.Disconnect(100)
		b.pub = nil
	}
}

// startMosquitto writes the config and starts mosquitto, with or without
// the link's listener, and waits until it accepts connections.
func (b *Broker) startMosquitto(link bool) {
	b.t.Helper()
	var conf strings.Builder
	if link {
		fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", b.LinkPort)
	}
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", b.PubPort)
	fmt.Fprintf(&conf, "persistence true\npersistence_location %s/\n", b.dir)
	fmt.Fprintf(&conf, "log_dest file %s\nlog_type all\n", filepath.Join(b.dir, "mosquitto.log"))
	if b.users == nil {
		conf.WriteString("allow_anonymous true\n")
	} else {
		fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\n", filepath.Join(b.dir, "passwd"))
	}
	// Run as whoever runs the tests: as root mosquitto would switch to
	// the user "mosquitto", who cannot write the temporary directory.
	if u, err := user.Current(); err == nil {
		fmt.Fprintf(&conf, "user %s\n", u.Username)
	}
	file := filepath.Join(b.dir, "mosquitto.conf")
	if err := os.WriteFile(file, []byte(conf.String()), 0o600); err != nil {
		b.t.Fatal(err)
	}
	cmd := exec.Command(b.bin, "-c", file)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("starting mosquitto: %v", err)
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(b.exited)
	deadline := time.Now().Add(Wait)
	for {
		conn, err := net.DialTimeout("tcp", b.addr(b.PubPort), time.Second)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-b.exited:
			b.t.Fatalf("mosquitto exited at start (see its log in %s)", b.dir)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto not accepting connections within %s", Wait)
		}
	}
}

// stopMosquitto stops mosquitto with SIGTERM, on which it saves its
// sessions, and waits for it to exit.
func (b *Broker) stopMosquitto() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(Wait):
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
	b.cmd = nil
}

func (b *Broker) addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
