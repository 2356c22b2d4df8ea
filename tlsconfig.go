package pubsub

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-pubsub/caddy-pubsub/clienttls"
)

// parseClientTLS parses one TLS setting of a connection to an outside
// service (a Redis server, an MQTT broker) into *t, allocated on first use;
// it reports false for a name that is no TLS setting. Every such service
// takes the same settings, as Caddy's reverse_proxy transport spells them:
//
//	tls_ca          <ca.pem>
//	tls_cert        <cert.pem> <key.pem>
//	tls_server_name <name>
//
// and in JSON the same object, "tls": {"ca", "cert", "key", "server_name"}.
// Verification cannot be switched off.
func parseClientTLS(d *caddyfile.Dispenser, service, name string, args []string, t **clienttls.Files) (bool, error) {
	want := 1
	switch name {
	case "tls_ca", "tls_server_name":
	case "tls_cert":
		want = 2
	case "tls_insecure_skip_verify":
		return true, d.Errf("%s: tls_insecure_skip_verify is not offered: it would hand the credentials to anyone on the path; name the server's CA with tls_ca instead", service)
	default:
		return false, nil
	}
	if len(args) != want || args[0] == "" {
		return true, d.ArgErr()
	}
	if *t == nil {
		*t = new(clienttls.Files)
	}
	switch name {
	case "tls_ca":
		(*t).CA = args[0]
	case "tls_cert":
		(*t).Cert, (*t).Key = args[0], args[1]
	case "tls_server_name":
		(*t).ServerName = args[0]
	}
	return true, nil
}
