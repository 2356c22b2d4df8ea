package mqtt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// wait bounds every wait for an event in these tests.
const wait = 10 * time.Second

// newHub returns a running in-memory hub, closed when the test ends.
func newHub(t *testing.T) *hub.Hub {
	t.Helper()
	r := hub.Retention{Count: 100}
	h := hub.New(hub.NewMemoryBroker(r), hub.Options{Queue: 100, Retention: r})
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// subscribe subscribes to filters on h from now on.
func subscribe(t *testing.T, h *hub.Hub, filters ...string) *hub.Subscriber {
	t.Helper()
	s, _, _, err := h.Subscribe(context.Background(), filters, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// next returns the next message of s.
func next(t *testing.T, s *hub.Subscriber) *hub.Message {
	t.Helper()
	timeout := time.After(wait)
	for {
		if m, ok := s.Next(); ok {
			return m
		}
		select {
		case <-s.Ready():
		case <-s.Done():
			t.Fatalf("subscription ended: %v", s.Err())
		case <-timeout:
			t.Fatal("no hub message within", wait)
		}
	}
}

// startLink creates and starts a link into h, closed when the test ends,
// with short back-off and the logs going to the returned observer.
func startLink(t *testing.T, cfg Config, h Target, maxSize int64) (*Link, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	l, err := New(cfg, h, Options{
		MaxMessageSize: maxSize,
		Logger:         zap.New(core),
		MinBackoff:     50 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	l.Start()
	return l, logs
}

// waitStatus polls the link's state until it has status s; the link
// offers no event to wait on.
func waitStatus(t *testing.T, l *Link, s Status) State {
	t.Helper()
	return waitState(t, l, fmt.Sprintf("status %q", s), func(st State) bool { return st.Status == s })
}

// waitState polls the link's state until ok holds: counters move just
// after the hub has the message.
func waitState(t *testing.T, l *Link, what string, ok func(State) bool) State {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st := l.State()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("link state %+v, want %s within %s", st, what, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits until logs hold an entry with message msg.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string) observer.LoggedEntry {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if found := logs.FilterMessage(msg).All(); len(found) > 0 {
			return found[0]
		}
		if time.Now().After(deadline) {
			all := logs.All()
			t.Fatalf("no log %q within %s; last logs: %v", msg, wait, all[max(0, len(all)-3):])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testPKI is a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, written as PEM files.
type testPKI struct {
	CAFile, ClientCert, ClientKey string
	Server                        tls.Certificate
	Pool                          *x509.CertPool
}

func newPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mqtt test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	issue := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "mqtt test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	serverDER, serverKey := issue(2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	clientDER, clientKey := issue(3, x509.ExtKeyUsageClientAuth, nil)

	p := testPKI{
		CAFile:     writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER),
		ClientCert: writePEM(t, dir, "client.pem", "CERTIFICATE", clientDER),
		ClientKey:  writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", marshalKey(t, clientKey)),
		Server:     tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey},
		Pool:       pool,
	}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func marshalKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	t.Helper()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
