package redis_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// streamKey returns a stream key no other test uses.
func streamKey() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test:" + hex.EncodeToString(b[:])
}

// deployments are the shapes of Redis a broker runs on: one server, a
// master that Sentinels watch (go-redis' failover URL), a Redis Cluster.
// start runs one for a test.
var deployments = []struct {
	name  string
	start func(t *testing.T) redis.Config
}{
	{"standalone", func(t *testing.T) redis.Config { return redis.Config{URL: testserver.StartRedis(t).URL} }},
	{"sentinel", func(t *testing.T) redis.Config { return redis.Config{URL: testserver.StartRedisSentinel(t).URL} }},
	{"cluster", func(t *testing.T) redis.Config {
		return redis.Config{URL: testserver.StartRedisCluster(t, 3).URL, Cluster: true}
	}},
}

// withStream is cfg with a stream key no other test uses, hash-tagged on
// a Cluster so that its keys share a slot.
func withStream(cfg redis.Config) redis.Config {
	cfg.Stream = streamKey()
	if cfg.Cluster {
		cfg.Stream = "pubsub:{" + cfg.Stream + "}"
	}
	return cfg
}

// newBroker returns an unstarted broker on url and stream, closed when the
// test ends.
func newBroker(t testing.TB, url, stream string, r hub.Retention) *redis.Broker {
	t.Helper()
	b, err := redis.New(redis.Config{URL: url, Stream: stream}, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// sink collects what a broker delivers.
type sink struct {
	mu     sync.Mutex
	got    []*hub.Message
	notify chan struct{}
}

func newSink() *sink { return &sink{notify: make(chan struct{}, 1)} }

func (s *sink) deliver(m *hub.Message) {
	s.mu.Lock()
	s.got = append(s.got, m)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// waitIDs waits until exactly want has been delivered, in order.
func (s *sink) waitIDs(t testing.TB, want []string) {
	t.Helper()
	deadline := time.After(testserver.Wait)
	for {
		s.mu.Lock()
		got := ids(s.got)
		s.mu.Unlock()
		if len(got) >= len(want) {
			if !slices.Equal(got, want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}
			return
		}
		select {
		case <-s.notify:
		case <-deadline:
			t.Fatalf("delivered %v within %s, want %v", got, testserver.Wait, want)
		}
	}
}

// started returns a started broker delivering to a new sink.
func started(t testing.TB, url, stream string, r hub.Retention) (*redis.Broker, *sink) {
	t.Helper()
	b := newBroker(t, url, stream, r)
	s := newSink()
	if err := b.Start(s.deliver); err != nil {
		t.Fatal(err)
	}
	return b, s
}

func publish(t testing.TB, b *redis.Broker, data ...string) []string {
	t.Helper()
	msgs := make([]hub.Message, len(data))
	for i, d := range data {
		msgs[i] = hub.Message{Topic: "t", Data: d}
	}
	got, err := b.Publish(context.Background(), msgs)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return got
}

// publishWhenUp publishes once Redis takes publishes again, after an
// outage: the first attempts may still fail with ErrUnavailable.
func publishWhenUp(t testing.TB, b *redis.Broker, data string) string {
	t.Helper()
	deadline := time.Now().Add(testserver.Wait)
	for {
		got, err := b.Publish(context.Background(), []hub.Message{{Topic: "t", Data: data}})
		if err == nil {
			return got[0]
		}
		if !errors.Is(err, hub.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Publish after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func since(t testing.TB, b *redis.Broker, lastID, upto string) ([]*hub.Message, *hub.Gap) {
	t.Helper()
	page, err := b.Since(context.Background(), hub.Query{After: lastID, Upto: upto, Limit: math.MaxInt})
	if err != nil {
		t.Fatalf("Since(%q, %q): %v", lastID, upto, err)
	}
	return page.Messages, page.Gap
}

func ids(msgs []*hub.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// proxy is a loopback TCP relay to Redis that a test can cut, to take one
// instance off Redis while others keep publishing.
type proxy struct {
	t        testing.TB
	addr     string
	upstream string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, upstream string) *proxy {
	p := &proxy{t: t, upstream: upstream, conns: make(map[net.Conn]struct{})}
	p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(testserver.FreePort(t)))
	p.Restore()
	t.Cleanup(p.Cut)
	return p
}

// Restore listens again and relays new connections.
func (p *proxy) Restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.relay(c)
		}
	})
}

func (p *proxy) relay(c net.Conn) {
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	p.wg.Go(func() { pipe(up, c) })
	p.wg.Go(func() { pipe(c, up) })
}

// Cut stops listening and drops every relayed connection.
func (p *proxy) Cut() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// tlsFiles writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, as PEM files in a temporary directory.
type tlsFiles struct{ CA, ServerCert, ServerKey, ClientCert, ClientKey string }

func newTLSFiles(t testing.TB) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, kind string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) (string, string) {
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{name},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", keyDER)
	}
	f := tlsFiles{CA: write("ca.pem", "CERTIFICATE", caDER)}
	f.ServerCert, f.ServerKey = leaf(2, "redis.test", x509.ExtKeyUsageServerAuth)
	f.ClientCert, f.ClientKey = leaf(3, "client.test", x509.ExtKeyUsageClientAuth)
	return f
}
