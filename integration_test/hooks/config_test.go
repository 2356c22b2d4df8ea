package hooks_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Every mistake in a hooks block is refused at adapt time with the file
// and line of the setting.
func TestHooksCaddyfileErrors(t *testing.T) {
	cases := []struct{ body, want string }{
		{"hooks", "wrong argument count"},
		{"hooks ftp://backend/x {\n\t\t\tsecret s\n\t\t}", "want http:// or https://"},
		{"hooks http://backend/x", "secret is required"},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\ton connect shout\n\t\t}", `unknown hook "shout"`},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\ttimeout 1m\n\t\t}", "out of range"},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\ttimeout soon\n\t\t}", "timeout"},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\tconcurrency 0\n\t\t}", "not a positive number"},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\tfailure maybe\n\t\t}", "use closed or open"},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\tretries 11\n\t\t}", "out of range"},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\tbreaker 5\n\t\t}", "wrong argument count"},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\tsecret t\n\t\t}", "given twice"},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\tcolour red\n\t\t}", `unknown hooks option "colour"`},
		{"hooks http://backend/x {\n\t\t\tsecret s\n\t\t\ttransport fastcgi\n\t\t}", "only http"},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			_, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\t" + c.body + "\n\t}\n}\n")
			if err == nil {
				t.Fatal("adapted without error")
			}
			// The hooks line is the third after the global options; an
			// option in its block is on a later line.
			first := strings.Count(testserver.GlobalOptions, "\n") + 3
			found := false
			for line := first; line <= first+strings.Count(c.body, "\n"); line++ {
				found = found || strings.Contains(err.Error(), fmt.Sprintf("Caddyfile:%d", line))
			}
			if !strings.Contains(err.Error(), c.want) || !found {
				t.Errorf("got %q, want %q at Caddyfile:%d or below", err, c.want, first)
			}
		})
	}
}

// A secret that resolves empty or short stops Caddy from starting; a
// transport block is the reverse proxy's.
func TestHooksSecretAndTransport(t *testing.T) {
	for _, c := range []struct{ secret, want string }{
		{"{env.PUBSUB_TEST_UNSET_SECRET}", "resolves to an empty value"},
		{"short", "shorter than 32 bytes"},
	} {
		raw, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\thooks http://127.0.0.1:1/h {\n\t\t\tsecret " + c.secret + "\n\t\t}\n\t}\n}\n")
		if err != nil {
			t.Fatal(err)
		}
		if err := testserver.Validate(t, raw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("secret %s: %v, want %q", c.secret, err, c.want)
		}
	}
	raw, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\thooks https://127.0.0.1:1/h {\n\t\t\tsecret " + hookSecret +
		"\n\t\t\ttransport http {\n\t\t\t\ttls_insecure_skip_verify\n\t\t\t\tdial_timeout 1s\n\t\t\t}\n\t\t}\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"transport":{"dial_timeout":1000000000,"protocol":"http","tls":{"insecure_skip_verify":true}}`) {
		t.Errorf("transport not in the JSON config: %s", raw)
	}
	if err := testserver.Validate(t, raw); err != nil {
		t.Errorf("a hooks transport: %v", err)
	}
}

// A request signed with another secret fails the backend's check, which
// refuses it: the decision fails by the policy.
func TestWrongSecretIsRefusedByTheBackend(t *testing.T) {
	b := startBackend(t, allowAll)
	b.secret, b.forged = "another-secret-0123456789abcdef-0123456789", true
	ep := start(t, site(b.URL, "on subscribe", ""))
	if code, body := status(t, "GET", ep+"?topic=a", nil); code != 503 || !strings.Contains(body, "answered 401") {
		t.Fatalf("%d %q, want 503: the backend refused the signature", code, body)
	}
}

// The backend is reached through reverse_proxy's http transport: here
// over HTTPS with a certificate only the transport's trust pool knows.
func TestHooksOverTheReverseProxyTransport(t *testing.T) {
	b, ca := startTLSBackend(t, allowAll)
	ep := start(t, site(b.URL, "on subscribe\n\t\t\ttransport http {\n\t\t\t\ttls_trust_pool file "+ca+"\n\t\t\t}", ""))
	if code, body := status(t, "GET", ep+"?topic=a&last_id=earliest", nil); code != http.StatusOK {
		t.Fatalf("subscribe through the TLS transport: %d %q", code, body)
	}
	b.next("subscribe")

	// Without the transport, Go's default one does not trust the
	// backend's certificate.
	ep = start(t, site(b.URL, "on subscribe", ""))
	if code, body := status(t, "GET", ep+"?topic=a", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "unreachable") {
		t.Fatalf("subscribe without the transport: %d %q", code, body)
	}
}
