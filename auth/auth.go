// Package auth verifies the JSON Web Tokens that authorise caddy-pubsub
// clients and matches the topic patterns they grant (the "pubsub" claim)
// against publish topics and subscription filters. It knows nothing of
// Caddy; the handlers ask it who a request is and what it may do.
package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Limits on what a key or a token may be.
const (
	// MinSecretLength is the shortest HMAC secret accepted, in bytes: RFC
	// 7518 (3.2) asks for a key at least as long as the hash (256 bits for
	// HS256).
	MinSecretLength = 32
	// MinRSABits is the smallest RSA modulus accepted.
	MinRSABits = 2048
	// MaxTokenLength bounds a token before it is parsed.
	MaxTokenLength = 8 << 10
	// MaxPatterns bounds each of a token's pattern lists, so matching a
	// message against a grant stays cheap.
	MaxPatterns = 128
	// DefaultLeeway is the clock skew allowed on exp and nbf.
	DefaultLeeway = 30 * time.Second
)

// ErrInvalidToken wraps every reason Verify refuses a token.
var ErrInvalidToken = errors.New("invalid token")

// Options adjust a Verifier.
type Options struct {
	// Leeway is the clock skew allowed on exp and nbf: a token is valid
	// from nbf-Leeway until exp+Leeway.
	Leeway time.Duration
	// Issuer, when set, must equal the token's iss claim.
	Issuer string
	// Audience, when set, must be one of the token's aud claim.
	Audience string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Verifier checks tokens signed with one key. The key fixes the accepted
// algorithms, so a token can never pick how it is checked: "none" is never
// accepted, and a token signed with HS256 using a public key as the HMAC
// secret fails against a public-key verifier.
type Verifier struct {
	key     any
	methods []string
	leeway  time.Duration
	parser  *jwt.Parser
}

// NewHMAC returns a verifier of HS256, HS384 and HS512 tokens signed with
// secret, which must be at least MinSecretLength bytes.
func NewHMAC(secret []byte, opts Options) (*Verifier, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("secret is %d bytes: use at least %d random bytes (e.g. openssl rand -base64 48)", len(secret), MinSecretLength)
	}
	return newVerifier(secret, []string{"HS256", "HS384", "HS512"}, opts), nil
}

// NewPublicKey returns a verifier of tokens signed with the private half of
// the PEM public key (a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block):
// RS256, RS384, RS512, PS256, PS384, PS512 for an RSA key of at least
// MinRSABits; ES256, ES384 or ES512 for an ECDSA key on P-256, P-384 or
// P-521 (the curve fixes the algorithm); EdDSA for an Ed25519 key.
func NewPublicKey(pemData []byte, opts Options) (*Verifier, error) {
	key, err := parsePublicKey(pemData)
	if err != nil {
		return nil, err
	}
	var methods []string
	switch k := key.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("RSA key of %d bits: use at least %d", bits, MinRSABits)
		}
		methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			methods = []string{"ES256"}
		case elliptic.P384():
			methods = []string{"ES384"}
		case elliptic.P521():
			methods = []string{"ES512"}
		default:
			return nil, errors.New("ECDSA key: use curve P-256, P-384 or P-521")
		}
	case ed25519.PublicKey:
		methods = []string{"EdDSA"}
	default:
		return nil, fmt.Errorf("unsupported public key type %T: use RSA, ECDSA or Ed25519", key)
	}
	return newVerifier(key, methods, opts), nil
}

func parsePublicKey(pemData []byte) (any, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("no PEM block found: want a PEM public key (-----BEGIN PUBLIC KEY-----)")
	}
	switch {
	case block.Type == "PUBLIC KEY":
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing PUBLIC KEY: %w", err)
		}
		return key, nil
	case block.Type == "RSA PUBLIC KEY":
		key, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing RSA PUBLIC KEY: %w", err)
		}
		return key, nil
	case block.Type == "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing CERTIFICATE: %w", err)
		}
		return cert.PublicKey, nil
	case strings.Contains(block.Type, "PRIVATE KEY"):
		return nil, fmt.Errorf("the PEM block is a %s: give the public key only (openssl pkey -in KEY -pubout)", block.Type)
	}
	return nil, fmt.Errorf("unsupported PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
}

func newVerifier(key any, methods []string, opts Options) *Verifier {
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(opts.Leeway),
	}
	if opts.Now != nil {
		popts = append(popts, jwt.WithTimeFunc(opts.Now))
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	return &Verifier{key: key, methods: methods, leeway: opts.Leeway, parser: jwt.NewParser(popts...)}
}

// Methods returns the algorithms the verifier accepts.
func (v *Verifier) Methods() []string { return v.methods }

// Token is a verified token: what its bearer may do, and until when.
type Token struct {
	// Subject is the sub claim ("" if none).
	Subject string
	// Expires is when the token stops being accepted: exp plus the leeway.
	Expires time.Time
	// Publish lists the topic patterns the bearer may publish to.
	Publish Grant
	// Subscribe lists the topic patterns the bearer may receive.
	Subscribe Grant
	// Claims is the token's payload, the JSON object of all its claims,
	// for the application's backend (hooks) to read.
	Claims json.RawMessage
}

// Expired reports whether the token is no longer accepted at now.
func (t *Token) Expired(now time.Time) bool { return !now.Before(t.Expires) }

// claims is the token payload: the registered claims and the pubsub grant.
type claims struct {
	jwt.RegisteredClaims
	PubSub struct {
		Publish   []string `json:"publish"`
		Subscribe []string `json:"subscribe"`
	} `json:"pubsub"`
}

// Verify checks raw's signature, algorithm, exp (required), nbf, and iss
// and aud when configured, and returns its grants. Every error wraps
// ErrInvalidToken; none contains the token.
func (v *Verifier) Verify(raw string) (*Token, error) {
	if len(raw) > MaxTokenLength {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, MaxTokenLength)
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(raw, &c, v.keyFunc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	publish, err := newGrant(c.PubSub.Publish)
	if err != nil {
		return nil, fmt.Errorf("%w: pubsub.publish: %v", ErrInvalidToken, err)
	}
	subscribe, err := newGrant(c.PubSub.Subscribe)
	if err != nil {
		return nil, fmt.Errorf("%w: pubsub.subscribe: %v", ErrInvalidToken, err)
	}
	return &Token{
		Subject:   c.Subject,
		Expires:   c.ExpiresAt.Add(v.leeway),
		Publish:   publish,
		Subscribe: subscribe,
		Claims:    payload(raw),
	}, nil
}

// payload returns the claims of a token whose signature was verified: its
// second segment, decoded.
func payload(raw string) json.RawMessage {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || !json.Valid(data) {
		return nil
	}
	return data
}

// keyFunc returns the one configured key; WithValidMethods has already
// refused any algorithm that key is not for.
func (v *Verifier) keyFunc(*jwt.Token) (any, error) { return v.key, nil }
