package pubsub

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"
)

// The dependency rules of docs/architecture.md: the core imports only the
// standard library, nothing but the root package knows Caddy, brokers and
// transports meet only in hub, and only tests use internal/ and the
// broker contract suite.
func TestDependencyRules(t *testing.T) {
	const module = "github.com/caddy-pubsub/caddy-pubsub"
	own := func(pkgs ...string) []string {
		out := make([]string, len(pkgs))
		for i, p := range pkgs {
			out[i] = module + "/" + p
		}
		return out
	}
	rules := []struct {
		dir     string
		allowed []string // import path prefixes, besides the standard library
	}{
		{"hub", nil},
		{"hub/brokertest", own("hub")},
		{"broker/bolt", append(own("hub"), "go.etcd.io/bbolt", "go.uber.org/zap")},
		{"clienttls", nil},
		{"broker/redis", append(own("hub", "clienttls"), "github.com/redis/go-redis/", "go.uber.org/zap")},
		{"auth", append(own("hub"), "github.com/golang-jwt/jwt/")},
		{"mqtt", append(own("hub", "clienttls"), "github.com/eclipse/paho.mqtt.golang", "go.uber.org/zap")},
		{"park", []string{"golang.org/x/sys/unix"}},
		{"hooks", own("hub")},
		{"handlers", append(own("hub", "auth", "park", "hooks"), "github.com/gorilla/websocket", "go.uber.org/zap")},
		{"cmd/pubsub-bench", []string{"github.com/gorilla/websocket", "github.com/golang-jwt/jwt/"}},
	}
	for _, rule := range rules {
		pkg, err := build.ImportDir(filepath.FromSlash(rule.dir), 0)
		if err != nil {
			t.Fatalf("%s: %v", rule.dir, err)
		}
		for _, imp := range pkg.Imports {
			if isStandard(imp) {
				continue
			}
			ok := false
			for _, prefix := range rule.allowed {
				ok = ok || strings.HasPrefix(imp, prefix)
			}
			if !ok {
				t.Errorf("%s imports %s: see docs/architecture.md, Dependency rules", rule.dir, imp)
			}
		}
	}
	// Production code of the root package uses no test helper.
	root, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range root.Imports {
		if strings.HasPrefix(imp, module+"/internal/") || imp == module+"/hub/brokertest" {
			t.Errorf("the root package imports %s, which is for tests", imp)
		}
	}
}

// isStandard reports whether an import path is the standard library's:
// its first element has no dot.
func isStandard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
