package clienttls

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every setting is checked when the connection is set up, with an error
// that names it; without settings the server is verified against the
// system roots under its own name.
func TestConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Files{}.Config("redis.internal")
	if err != nil || cfg.ServerName != "redis.internal" || cfg.MinVersion != tls.VersionTLS12 || cfg.RootCAs != nil || cfg.InsecureSkipVerify {
		t.Fatalf("no settings: %+v, %v", cfg, err)
	}
	if cfg, err := (Files{ServerName: "other"}).Config("10.0.0.1"); err != nil || cfg.ServerName != "other" {
		t.Fatalf("server_name: %+v, %v", cfg, err)
	}
	for _, tc := range []struct {
		files Files
		want  string
	}{
		{Files{CA: filepath.Join(dir, "missing.pem")}, "tls_ca: open"},
		{Files{CA: notPEM}, "no PEM certificate in it"},
		{Files{Cert: notPEM}, "tls_cert takes a certificate and its key"},
		{Files{Key: notPEM}, "tls_cert takes a certificate and its key"},
		{Files{Cert: notPEM, Key: notPEM}, "tls_cert:"},
	} {
		if _, err := tc.files.Config("host"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.files, err, tc.want)
		}
	}
}
