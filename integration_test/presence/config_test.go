package presence_test

import (
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// presence takes a block with claims and nothing else; two endpoints of
// one hub must choose the same claims.
func TestPresenceConfig(t *testing.T) {
	for _, c := range []struct{ block, want string }{
		{"presence {\n\t\t\tclaims\n\t\t}", "wrong argument count"},
		{"presence {\n\t\t\tcolour blue\n\t\t}", `unknown presence setting "colour"`},
		{"presence {\n\t\t\tclaims a\n\t\t\tclaims b\n\t\t}", "claims given twice"},
		{"presence extra", "wrong argument count"},
	} {
		_, err := testserver.Adapt(`
http://127.0.0.1:8080 {
	pubsub /events* {
		` + c.block + `
	}
}
`)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.block, err, c.want)
		}
	}

	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		presence
	}
}
`)
	err := s.TryLoad(`
http://127.0.0.1:{PORT} {
	pubsub /a* {
		presence {
			claims name
		}
	}
	pubsub /b* {
		presence {
			claims name email
		}
	}
}
`)
	if err == nil || !strings.Contains(err.Error(), "defined twice with different settings") {
		t.Fatalf("two endpoints of one hub choosing different claims: %v", err)
	}
}
