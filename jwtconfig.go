package pubsub

// The jwt sub-directive: JSON Web Token authorisation. The auth package
// verifies tokens and matches grants; this file holds the configuration,
// its Caddyfile syntax and its provisioning.

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/auth"
)

// maxLeeway bounds the clock skew a configuration may allow.
const maxLeeway = 5 * time.Minute

// JWT authorises clients with JSON Web Tokens. Once configured, subscribing
// needs a token whose pubsub.subscribe grant allows the topics, and
// publishing needs one whose pubsub.publish grant allows the topic (or the
// publish_key); loopback clients get no exception.
type JWT struct {
	// Secret is the HMAC key of HS256, HS384 and HS512 tokens, at least 32
	// bytes. Usually a placeholder such as {env.PUBSUB_JWT_SECRET},
	// resolved at provision, which must not resolve empty. Exactly one of
	// Secret and PublicKey is set.
	Secret string `json:"secret,omitempty"`

	// PublicKey is the path of a PEM file with the issuer's public key,
	// read at provision: RSA (RS256/384/512, PS256/384/512; at least 2048
	// bits), ECDSA (ES256 on P-256, ES384 on P-384, ES512 on P-521) or
	// Ed25519 (EdDSA). The key alone decides the algorithms accepted.
	PublicKey string `json:"public_key,omitempty"`

	// Cookie names a cookie that may carry the token, for browsers, whose
	// EventSource and WebSocket cannot send an Authorization header.
	// Default: none (the header and ?access_token= only).
	Cookie string `json:"cookie,omitempty"`

	// Leeway is the clock skew allowed on exp and nbf: a token is valid
	// from nbf-leeway to exp+leeway, and a stream ends at exp+leeway. At
	// most 5m. Default: 30s.
	Leeway *caddy.Duration `json:"leeway,omitempty"`

	// Issuer, when set, must equal the token's iss claim.
	Issuer string `json:"issuer,omitempty"`

	// Audience, when set, must be one of the token's aud claim.
	Audience string `json:"audience,omitempty"`
}

// check validates the settings that need no placeholder resolved.
func (j *JWT) check() error {
	if j == nil {
		return nil
	}
	var errs []error
	switch {
	case j.Secret == "" && j.PublicKey == "":
		errs = append(errs, errors.New("jwt: set secret or public_key"))
	case j.Secret != "" && j.PublicKey != "":
		errs = append(errs, errors.New("jwt: set secret or public_key, not both"))
	}
	if j.Cookie != "" && !validCookieName(j.Cookie) {
		errs = append(errs, fmt.Errorf("jwt: cookie name %q: use letters, digits and !#$%%&'*+-.^_`|~", j.Cookie))
	}
	if l := j.leeway(); l < 0 || l > maxLeeway {
		errs = append(errs, fmt.Errorf("jwt: leeway %s out of range 0s..%s", l, maxLeeway))
	}
	return errors.Join(errs...)
}

func (j *JWT) leeway() time.Duration {
	if j.Leeway == nil {
		return auth.DefaultLeeway
	}
	return time.Duration(*j.Leeway)
}

// validCookieName reports whether name is an RFC 6265 cookie name (an RFC
// 7230 token).
func validCookieName(name string) bool {
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return name != ""
}

// verifier resolves the key (placeholders, the public key file) and
// returns the token verifier. Errors never contain the secret.
func (j *JWT) verifier(logger *zap.Logger) (*auth.Verifier, error) {
	opts := auth.Options{Leeway: j.leeway(), Issuer: j.Issuer, Audience: j.Audience}
	if j.Secret != "" {
		secret, err := resolve("jwt: secret", j.Secret)
		if err != nil {
			return nil, err
		}
		if secret == j.Secret {
			logger.Warn("jwt secret is written in the configuration, which Caddy may save to disk: use a placeholder such as {env.PUBSUB_JWT_SECRET}")
		}
		v, err := auth.NewHMAC([]byte(secret), opts)
		if err != nil {
			return nil, fmt.Errorf("jwt: %w", err)
		}
		return v, nil
	}
	path, err := resolve("jwt: public_key", j.PublicKey)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwt: public_key: %w", err)
	}
	v, err := auth.NewPublicKey(data, opts)
	if err != nil {
		return nil, fmt.Errorf("jwt: public_key %s: %w", path, err)
	}
	return v, nil
}

// parseJWT reads a jwt block:
//
//	jwt {
//		secret     <key>          # or: public_key <file>
//		cookie     <name>
//		leeway     <duration>
//		issuer     <iss>
//		audience   <aud>
//	}
func (h *Handler) parseJWT(d *caddyfile.Dispenser, args []string) error {
	if len(args) != 0 {
		return d.ArgErr()
	}
	if h.JWT != nil {
		return d.Err("jwt: given twice")
	}
	j := new(JWT)
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("jwt: %s given twice", name)
		}
		seen[name] = true
		if !d.NextArg() || d.Val() == "" {
			return d.ArgErr()
		}
		v := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch name {
		case "secret":
			j.Secret = v
		case "public_key":
			j.PublicKey = v
		case "cookie":
			j.Cookie = v
		case "leeway":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("jwt: leeway: %v", err)
			}
			j.Leeway = (*caddy.Duration)(&dur)
		case "issuer":
			j.Issuer = v
		case "audience":
			j.Audience = v
		default:
			return d.Errf("unknown jwt option %q: use secret, public_key, cookie, leeway, issuer or audience", name)
		}
	}
	if err := j.check(); err != nil {
		return d.Err(err.Error())
	}
	h.JWT = j
	return nil
}
