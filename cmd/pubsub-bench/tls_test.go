package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// jwtSecretEnv holds the HMAC secret of the test server's jwt block.
const jwtSecretEnv = "PUBSUB_BENCH_TEST_JWT_SECRET"

// startTLSServer runs a real Caddy serving HTTPS (HTTP/1.1 and HTTP/2) on
// loopback with a certificate for 127.0.0.1 that a CA made here signed:
// /events needs testKey to publish, /jwt needs a token with the pubsub
// claim for either, or testKey to publish. It returns the base URL, the
// CA's PEM file and the JWT secret.
func startTLSServer(t *testing.T) (base, caFile, secret string) {
	t.Helper()
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCertificates(t, dir)
	secret = strings.Repeat("bench-test-secret-", 3)
	t.Setenv(jwtSecretEnv, secret)
	srv := testserver.StartWith(t, `	servers {
		protocols h1 h2
	}
`, `https://127.0.0.1:{PORT} {
	tls `+certFile+` `+keyFile+`
	pubsub /events* {
		publish_key `+testKey+`
	}
	pubsub /jwt* {
		hub guarded
		publish_key `+testKey+`
		jwt {
			secret {env.`+jwtSecretEnv+`}
		}
	}
}`)
	return strings.Replace(srv.Base, "http://", "https://", 1), caFile, secret
}

// writeCertificates writes a CA certificate and a server certificate for
// 127.0.0.1 that it signed, with the server's key, into dir.
func writeCertificates(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pubsub-bench test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, kind string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// token is an HS256 JWT of secret granting publish and subscribe
// patterns.
func token(t *testing.T, secret string, publish, subscribe []string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":    "pubsub-bench",
		"exp":    time.Now().Add(time.Hour).Unix(),
		"pubsub": map[string][]string{"publish": publish, "subscribe": subscribe},
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// benchFails runs the tool with args, which must fail, and returns its
// stderr.
func benchFails(t *testing.T, args ...string) string {
	t.Helper()
	args = append([]string{"-settle", "0s", "-idle", "100ms", "-connect-timeout", "5s", "-progress", "0"}, args...)
	var stdout, stderr bytes.Buffer
	if code := cli(args, &stdout, &stderr); code == 0 {
		t.Fatalf("pubsub-bench %v: exit 0; want a failure\n%s", args, stdout.String())
	}
	return stderr.String()
}

// Every transport over TLS, SSE also over HTTP/2 (whose subscribers
// refuse an HTTP/1.1 answer), against a real Caddy serving HTTPS, with
// the certificate verified against the test's CA, or not at all.
func TestHTTPS(t *testing.T) {
	base, caFile, _ := startTLSServer(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"sse over HTTP/1.1", []string{"-transport", "sse", "-cacert", caFile}},
		{"sse over HTTP/2 in two worker processes", []string{"-transport", "sse", "-http2", "-cacert", caFile, "-procs", "2"}},
		{"wss", []string{"-transport", "ws", "-cacert", caFile}},
		{"poll, not verified", []string{"-transport", "poll", "-insecure", "-connect-timeout", "1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-mode", "sustained", "-n", "10", "-rate", "50", "-duration", "1s"}, tc.args...)
			r := bench(t, base+"/events", args...)
			checkDelivery(t, r, 10)
			if r.HTTP2 != slices.Contains(args, "-http2") {
				t.Errorf("report says HTTP/2 %v for %v", r.HTTP2, args)
			}
		})
	}
	// Without the CA, the certificate is not trusted: the run stops at
	// its first publish.
	if log := benchFails(t, "-url", base+"/events", "-key", testKey, "-n", "1"); !strings.Contains(log, "certificate signed by unknown authority") {
		t.Errorf("an untrusted certificate: %s; want a verification failure", log)
	}
}

// -token lets subscribers and publishers in where a jwt block guards the
// endpoint: the token alone, or with -key for the publishers.
func TestToken(t *testing.T) {
	base, caFile, secret := startTLSServer(t)
	endpoint := base + "/jwt"
	both := token(t, secret, []string{"bench/#"}, []string{"bench/#"})
	reader := token(t, secret, nil, []string{"bench/#"})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"one token over sse", []string{"-transport", "sse", "-key", "", "-token", both}},
		{"one token over HTTP/2", []string{"-transport", "sse", "-http2", "-key", "", "-token", both}},
		{"a reader's token and the publish key over ws", []string{"-transport", "ws", "-token", reader}},
		{"a reader's token and the publish key over poll", []string{"-transport", "poll", "-token", reader, "-connect-timeout", "1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-cacert", caFile, "-mode", "sustained", "-n", "5", "-rate", "50", "-duration", "1s"}, tc.args...)
			r := bench(t, endpoint, args...)
			checkDelivery(t, r, 5)
		})
	}
	// The tests above would pass if the endpoint let anyone in.
	t.Run("refused", func(t *testing.T) {
		if log := benchFails(t, "-url", endpoint, "-cacert", caFile, "-key", testKey, "-n", "2"); !strings.Contains(log, "no subscriber connected") || !strings.Contains(log, "HTTP 401") {
			t.Errorf("subscribers without a token: %s; want them refused with 401", log)
		}
		if log := benchFails(t, "-url", endpoint, "-cacert", caFile, "-token", reader, "-n", "2"); !strings.Contains(log, "HTTP 403") || !strings.Contains(log, "-token") {
			t.Errorf("publishing with a reader's token: %s; want 403 and the hint about -token", log)
		}
	})
}

// The TLS and token flags refuse what they cannot honour, before any
// connection.
func TestTLSAndTokenFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-url", "http://127.0.0.1:1/events", "-http2"}, "need an https:// -url"},
		{[]string{"-url", "http://127.0.0.1:1/events", "-insecure"}, "need an https:// -url"},
		{[]string{"-url", "https://127.0.0.1:1/events", "-http2", "-transport", "ws"}, "-http2: for -transport sse"},
		{[]string{"-url", "https://127.0.0.1:1/events", "-insecure", "-cacert", "ca.pem"}, "use one"},
		{[]string{"-url", "https://127.0.0.1:1/events", "-cacert", filepath.Join(t.TempDir(), "none.pem")}, "-cacert: open"},
		{[]string{"-url", "https://127.0.0.1:1/events", "-cacert", "tls_test.go"}, "no PEM certificate"},
		{[]string{"-url", "http://127.0.0.1:1/events", "-token", "a\r\nX-Injected: 1"}, "printable ASCII"},
		{[]string{"-url", "http://127.0.0.1:1/events", "-progress", "-1s"}, "-progress must not be negative"},
	} {
		var stdout, stderr bytes.Buffer
		if code := cli(tc.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("pubsub-bench %q: exit %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
