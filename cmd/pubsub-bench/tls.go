package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
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

// newH2Client is the HTTP/2 client a worker's SSE subscribers share: each
// subscriber is a stream, and the client opens another connection, from
// the next source address, when the server's stream limit is reached.
func (w *worker) newH2Client(conf *tls.Config) *http.Client {
	var next atomic.Int64
	return &http.Client{Transport: &http.Transport{
		DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
			conn, _, err := w.dialWith(int(next.Add(1)-1), time.Time{}, conf)
			return conn, err
		},
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
		// Loopback only, never through a proxy.
		Proxy: nil,
	}}
}
