package pubsub

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// resolve replaces the global placeholders ({env.NAME}, {file.PATH}, …) in
// a configuration value when the config loads. A value that is set but
// resolves to nothing is an error that names the setting (what) and the
// value as written, never what it resolved to, which may be a secret.
func resolve(what, value string) (string, error) {
	if value == "" {
		return "", nil
	}
	v := caddy.NewReplacer().ReplaceKnown(value, "")
	if strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("%s %q resolves to an empty value (is the environment variable set?)", what, value)
	}
	return v, nil
}
