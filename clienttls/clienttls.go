// Package clienttls sets up the TLS of a connection caddy-pubsub opens to
// an outside service (a Redis server, an MQTT broker) from PEM files: one
// set of settings, checked the same way, for every link.
package clienttls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files are the TLS settings of a client connection. Verification of the
// server's certificate cannot be switched off: for a server with a
// self-signed or private certificate, name its CA.
type Files struct {
	// CA is a PEM file of the certificate authorities that verify the
	// server, instead of the system's roots.
	CA string `json:"ca,omitempty"`
	// Cert and Key are PEM files of a client certificate and its key, for
	// servers that authenticate clients by certificate.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// ServerName is the name verified in the server's certificate.
	// Default: the host the connection goes to.
	ServerName string `json:"server_name,omitempty"`
}

// Apply adds the settings to cfg, a client configuration that already
// names the server: the ServerName override, the CA pool, the client
// certificate. Errors name the setting as the configuration spells it
// (tls_ca, tls_cert).
func (f Files) Apply(cfg *tls.Config) error {
	if f.ServerName != "" {
		cfg.ServerName = f.ServerName
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return fmt.Errorf("tls_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tls_ca %s: no PEM certificate in it", f.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.Cert != "" && f.Key != "":
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return fmt.Errorf("tls_cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case f.Cert != "" || f.Key != "":
		return errors.New("tls_cert takes a certificate and its key")
	}
	return nil
}

// Config returns a client configuration (TLS 1.2 or newer) for a server
// reached as serverName, with the settings applied.
func (f Files) Config(serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if err := f.Apply(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}
