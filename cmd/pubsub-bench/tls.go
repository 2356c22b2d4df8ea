package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// clientTLS is the TLS configuration for an https:// target: it trusts
// the certificates of caPEM (the system's roots when empty), or does not
// verify at all when insecure, and offers protos by ALPN.
func clientTLS(caPEM []byte, insecure bool, serverName string, protos ...string) (*tls.Config, error) {
	c := &tls.Config{
		ServerName: serverName,
		NextProtos: protos,
		MinVersion: tls.VersionTLS12,
		// Only by -insecure, against a loopback server (the only targets
		// the tool accepts), and the report notes it.
		InsecureSkipVerify: insecure,
	}
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("-cacert: no PEM certificate in the file")
		}
		c.RootCAs = pool
	}
	return c, nil
}

// handshake runs the TLS handshake over conn by deadline (at most
// handshakeTimeout from now).
func handshake(ctx context.Context, conn net.Conn, conf *tls.Config, deadline time.Time) (*tls.Conn, error) {
	by := time.Now().Add(handshakeTimeout)
	if !deadline.IsZero() && deadline.Before(by) {
		by = deadline
	}
	ctx, cancel := context.WithDeadline(ctx, by)
	defer cancel()
	tc := tls.Client(conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// newH2Client is an HTTP/2 client. With index < 0 it is the one a
// worker's SSE subscribers share: each subscriber is a stream, and the
// client opens another connection, from the next source address, when the
// server's stream limit is reached. Else it is subscriber index's own,
// from its source address.
func (w *worker) newH2Client(conf *tls.Config, index int) *http.Client {
	var next atomic.Int64
	return &http.Client{Transport: &http.Transport{
		DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
			i := index
			if i < 0 {
				i = int(next.Add(1) - 1)
			}
			conn, _, err := w.dialWith(i, time.Time{}, conf)
			return conn, err
		},
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
		// Loopback only, never through a proxy.
		Proxy: nil,
	}}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1, valid
// for a day, and its key, for the servers -start -tls runs; it returns the
// certificate's PEM, which the clients trust as their only root.
func writeSelfSigned(certFile, keyFile string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "pubsub-bench 127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		// A root of its own: the clients trust exactly this certificate.
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return nil, err
	}
	return certPEM, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}
