package auth_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// publish_rate counts each token subject as its own publisher, and the
// publish key as another: a subject over its rate gets 429 while another
// subject and the key holder still publish.
func TestPublishRateBySubject(t *testing.T) {
	ep := startHMAC(t, hmacSite("0s", "limits {\n\t\t\tpublish_rate 2/m\n\t\t\tpublish_burst 2\n\t\t}"))
	as := func(sub string) http.Header {
		return bearer(signedFor(t, sub, jwt.SigningMethodHS256, []byte(secret), time.Hour, grants{Publish: []string{"chat/#"}}))
	}
	alice, bob := as("alice"), as("bob")
	for i := range 2 {
		if code, body := publishAs(t, ep, alice, "chat/a", "x"); code != http.StatusOK {
			t.Fatalf("alice's publish %d within the burst: %d %s", i, code, body)
		}
	}
	if code, body := publishAs(t, ep, alice, "chat/a", "x"); code != http.StatusTooManyRequests || !strings.HasPrefix(body, "publish rate exceeded: retry in ") {
		t.Fatalf("alice over her rate: %d %q, want 429 and the reason", code, body)
	}
	for i := range 2 {
		if code, body := publishAs(t, ep, bob, "chat/b", "x"); code != http.StatusOK {
			t.Fatalf("bob's publish %d while alice is limited: %d %s", i, code, body)
		}
	}
	publish(t, ep, "chat/k", "the key holder is a publisher of its own")
}
