package auth_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// jwtSite is a site whose pubsub block holds block.
func jwtSite(block string) string {
	return "http://127.0.0.1:{PORT} {\n\tpubsub /events* {\n" + block + "\n\t}\n}\n"
}

// A bad jwt block fails `caddy adapt` with the file and line.
func TestJWTCaddyfileErrors(t *testing.T) {
	tests := []struct{ name, block, want string }{
		{"no key", "jwt {\n cookie c\n}", "set secret or public_key, at Caddyfile:"},
		{"both keys", "jwt {\n secret {env.X}\n public_key /k.pem\n}", "not both"},
		{"unknown option", "jwt {\n secret {env.X}\n algorithm HS256\n}", `unknown jwt option "algorithm"`},
		{"option twice", "jwt {\n secret {env.X}\n secret {env.Y}\n}", "secret given twice"},
		{"missing value", "jwt {\n secret\n}", "wrong argument count"},
		{"bad leeway", "jwt {\n secret {env.X}\n leeway soon\n}", "leeway"},
		{"leeway too long", "jwt {\n secret {env.X}\n leeway 1h\n}", "out of range"},
		{"bad cookie name", "jwt {\n secret {env.X}\n cookie a;b\n}", "cookie name"},
		{"argument", "jwt HS256 {\n secret {env.X}\n}", "wrong argument count"},
		{"twice", "jwt {\n secret {env.X}\n}\njwt {\n secret {env.X}\n}", "jwt: given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testserver.Adapt(jwtSite(tt.block))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "Caddyfile:") {
				t.Fatalf("adapt error %v, want one mentioning %q with the line", err, tt.want)
			}
		})
	}
}

// Keys are resolved when the config loads: an unset variable, a short
// secret, a missing or bad key file stop it with a clear error.
func TestJWTKeyErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	privDER := must(x509.MarshalPKCS8PrivateKey(ecKey()))
	t.Setenv("PUBSUB_TEST_SHORT_SECRET", "too-short")
	tests := []struct{ name, block, want string }{
		{"unset variable", "jwt {\n secret {env.PUBSUB_TEST_UNSET_VARIABLE}\n}", "resolves to an empty value"},
		{"short secret", "jwt {\n secret {env.PUBSUB_TEST_SHORT_SECRET}\n}", "use at least 32"},
		{"missing key file", "jwt {\n public_key " + filepath.Join(dir, "missing.pem") + "\n}", "no such file"},
		{"not PEM", "jwt {\n public_key " + write("text.pem", []byte("hello")) + "\n}", "no PEM block"},
		{"private key", "jwt {\n public_key " + write("private.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})) + "\n}", "public key only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			site := strings.ReplaceAll(jwtSite(tt.block), "{PORT}", strconv.Itoa(testserver.FreePort(t)))
			cfg, err := testserver.Adapt(site)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			err = caddy.Load(cfg, true)
			if err == nil {
				_ = caddy.Stop()
				t.Fatal("config loaded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("load error %v, want one mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "too-short") {
				t.Fatalf("load error %v shows the secret", err)
			}
		})
	}
}
