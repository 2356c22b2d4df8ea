package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerify(t *testing.T) {
	opts := Options{Leeway: 30 * time.Second, Now: clock}
	hmacV := must(NewHMAC(secret, opts))
	rsaPEM := publicPEM(t, &rsaKey().PublicKey)
	rsaV := must(NewPublicKey(rsaPEM, opts))
	ecV := must(NewPublicKey(publicPEM(t, &ecKey().PublicKey), opts))
	edV := must(NewPublicKey(publicPEM(t, edKey().Public()), opts))

	with := func(edit func(*testClaims)) testClaims {
		c := validClaims()
		edit(&c)
		return c
	}
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	valid := sign(t, jwt.SigningMethodHS256, secret, validClaims())

	tests := []struct {
		name  string
		v     *Verifier
		token string
		err   string // "" for a valid token
	}{
		{"HS256", hmacV, valid, ""},
		{"HS512", hmacV, sign(t, jwt.SigningMethodHS512, secret, validClaims()), ""},
		{"RS256", rsaV, sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims()), ""},
		{"PS256", rsaV, sign(t, jwt.SigningMethodPS256, rsaKey(), validClaims()), ""},
		{"ES256", ecV, sign(t, jwt.SigningMethodES256, ecKey(), validClaims()), ""},
		{"EdDSA", edV, sign(t, jwt.SigningMethodEdDSA, edKey(), validClaims()), ""},

		{"expired", hmacV, sign(t, jwt.SigningMethodHS256, secret, with(func(c *testClaims) { c.ExpiresAt = at(-time.Minute) })), "expired"},
		{"expired within leeway", hmacV, sign(t, jwt.SigningMethodHS256, secret, with(func(c *testClaims) { c.ExpiresAt = at(-20 * time.Second) })), ""},
		{"not yet valid", hmacV, sign(t, jwt.SigningMethodHS256, secret, with(func(c *testClaims) { c.NotBefore = at(time.Minute) })), "not valid yet"},
		{"nbf within leeway", hmacV, sign(t, jwt.SigningMethodHS256, secret, with(func(c *testClaims) { c.NotBefore = at(20 * time.Second) })), ""},
		{"no exp", hmacV, sign(t, jwt.SigningMethodHS256, secret, with(func(c *testClaims) { c.ExpiresAt = nil })), "missing required claim"},

		{"wrong secret", hmacV, sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), validClaims()), "signature is invalid"},
		{"wrong RSA key", rsaV, sign(t, jwt.SigningMethodRS256, must(rsa.GenerateKey(rand.Reader, 2048)), validClaims()), "signature is invalid"},
		// The classic confusion: the public key PEM, which is public, used
		// as the HMAC secret of an HS256 token sent to an RS256 verifier.
		{"HS256 signed with the RSA public key", rsaV, sign(t, jwt.SigningMethodHS256, rsaPEM, validClaims()), "signing method HS256 is invalid"},
		{"RS256 token to an HMAC verifier", hmacV, sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims()), "signing method RS256 is invalid"},
		{"ES256 token to an RSA verifier", rsaV, sign(t, jwt.SigningMethodES256, ecKey(), validClaims()), "signing method ES256 is invalid"},
		{"ES384 token to a P-256 verifier", ecV, sign(t, jwt.SigningMethodES384, ec384Key(), validClaims()), "signing method ES384 is invalid"},
		{"alg none", hmacV, unsigned(`{"alg":"none","typ":"JWT"}`, `{"exp":9999999999,"pubsub":{"publish":["#"]}}`, ""), "signing method none is invalid"},
		{"alg none to an RSA verifier", rsaV, unsigned(`{"alg":"none"}`, `{"exp":9999999999}`, ""), "signing method none is invalid"},
		{"alg None", hmacV, unsigned(`{"alg":"None"}`, `{"exp":9999999999}`, ""), "invalid"},
		{"tampered grant", hmacV, tamper(valid, `{"sub":"alice","exp":9999999999,"pubsub":{"publish":["#"],"subscribe":["#"]}}`), "signature is invalid"},
		{"tampered exp", rsaV, tamper(sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims()), `{"exp":9999999999}`), "signature is invalid"},

		{"bad pattern", hmacV, sign(t, jwt.SigningMethodHS256, secret, with(func(c *testClaims) { c.PubSub.Subscribe = []string{"chat/#/x"} })), "pubsub.subscribe"},
		{"too many patterns", hmacV, sign(t, jwt.SigningMethodHS256, secret, with(func(c *testClaims) { c.PubSub.Publish = slices.Repeat([]string{"a"}, MaxPatterns+1) })), "pubsub.publish"},
		{"claim of the wrong type", hmacV, unsigned(`{"alg":"HS256"}`, `{"exp":9999999999,"pubsub":{"publish":"#"}}`, "x"), "malformed"},
		{"garbage", hmacV, "not.a.token", "malformed"},
		{"empty", hmacV, "", "malformed"},
		{"too long", hmacV, strings.Repeat("a", MaxTokenLength+1), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := tt.v.Verify(tt.token)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if tok.Subject != "alice" || !slices.Equal(tok.Publish, Grant{"chat/#"}) || !slices.Equal(tok.Subscribe, Grant{"chat/#", "news/+"}) {
					t.Fatalf("token %+v", tok)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", tok)
			}
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Verify error %q, want ErrInvalidToken mentioning %q", err, tt.err)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Fatalf("error %q contains the token", err)
			}
		})
	}
}

// A token is accepted until exp plus the leeway, and Expires says so.
func TestTokenExpires(t *testing.T) {
	clockNow := now
	v := must(NewHMAC(secret, Options{Leeway: 5 * time.Second, Now: func() time.Time { return clockNow }}))
	c := validClaims()
	c.ExpiresAt = jwt.NewNumericDate(now.Add(10 * time.Second))
	token := sign(t, jwt.SigningMethodHS256, secret, c)
	tok, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(15 * time.Second); !tok.Expires.Equal(want) {
		t.Fatalf("Expires = %s, want %s", tok.Expires, want)
	}
	if tok.Expired(now.Add(14*time.Second)) || !tok.Expired(now.Add(15*time.Second)) {
		t.Fatal("Expired does not switch at exp+leeway")
	}
	clockNow = now.Add(16 * time.Second)
	if _, err := v.Verify(token); err == nil {
		t.Fatal("Verify accepted a token past exp+leeway")
	}
}

// A token without a pubsub claim is valid and grants nothing.
func TestVerifyNoGrant(t *testing.T) {
	v := must(NewHMAC(secret, Options{Now: clock}))
	c := validClaims()
	c.PubSub = nil
	tok, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, c))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Publish.Allows("chat/a") || tok.Subscribe.Coverage("chat/a") != Denied {
		t.Fatalf("a token without grant allows something: %+v", tok)
	}
}

func TestVerifyIssuerAudience(t *testing.T) {
	v := must(NewHMAC(secret, Options{Now: clock, Issuer: "https://auth.example.com", Audience: "pubsub"}))
	tests := []struct {
		name     string
		iss, aud string
		ok       bool
	}{
		{"both match", "https://auth.example.com", "pubsub", true},
		{"wrong issuer", "https://evil.example.com", "pubsub", false},
		{"no issuer", "", "pubsub", false},
		{"wrong audience", "https://auth.example.com", "other", false},
		{"no audience", "https://auth.example.com", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validClaims()
			c.Issuer = tt.iss
			if tt.aud != "" {
				c.Audience = jwt.ClaimStrings{tt.aud}
			}
			_, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, c))
			if (err == nil) != tt.ok {
				t.Fatalf("Verify: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestNewHMAC(t *testing.T) {
	if _, err := NewHMAC([]byte(strings.Repeat("k", MinSecretLength-1)), Options{}); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short secret: %v", err)
	}
	v, err := NewHMAC([]byte(strings.Repeat("k", MinSecretLength)), Options{})
	if err != nil || !slices.Equal(v.Methods(), []string{"HS256", "HS384", "HS512"}) {
		t.Fatalf("NewHMAC: %v, methods %v", err, v.Methods())
	}
}

func TestNewPublicKey(t *testing.T) {
	rsaDER := x509.MarshalPKCS1PublicKey(&rsaKey().PublicKey)
	privDER := must(x509.MarshalPKCS8PrivateKey(ecKey()))
	small := must(rsa.GenerateKey(rand.Reader, 1024))
	tests := []struct {
		name    string
		pem     []byte
		methods []string
		err     string
	}{
		{"RSA PUBLIC KEY", publicPEM(t, &rsaKey().PublicKey), []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, ""},
		{"RSA PKCS1", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: rsaDER}), []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, ""},
		{"P-256", publicPEM(t, &ecKey().PublicKey), []string{"ES256"}, ""},
		{"P-384", publicPEM(t, &ec384Key().PublicKey), []string{"ES384"}, ""},
		{"Ed25519", publicPEM(t, edKey().Public()), []string{"EdDSA"}, ""},
		{"certificate", certificatePEM(t, ecKey()), []string{"ES256"}, ""},
		{"private key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), nil, "public key only"},
		{"small RSA", publicPEM(t, &small.PublicKey), nil, "at least 2048"},
		{"not PEM", []byte("secret"), nil, "no PEM block"},
		{"corrupt", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")}), nil, "parsing PUBLIC KEY"},
		{"other block", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("x")}), nil, "unsupported PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewPublicKey(tt.pem, Options{})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v.Methods(), tt.methods) {
				t.Fatalf("methods %v, want %v", v.Methods(), tt.methods)
			}
		})
	}
}
