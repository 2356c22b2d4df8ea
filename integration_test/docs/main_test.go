// Package docs_test checks that the documentation says what the code does:
// every Caddyfile in README.md, docs/*.md, examples/ and deploy/ adapts;
// every JSON config in docs/json.md passes caddy validate; every shell block
// with a curl line runs, with real curl, against a real Caddy started in
// this process from the Caddyfile the markdown names (on loopback, with
// only hosts and ports rewritten), and its output matches the output the
// markdown shows; every link between the documents lands on a file and a
// heading; and the Dockerfile, compose file and deployment Caddyfile agree
// with each other and with docs/deployment.md.
//
// A markdown block is tied to the test by an HTML comment on the line
// before it (the line above the opening fence, blank lines skipped):
//
//	<!-- doc-test: serve above -->        run this sh block against the last caddyfile block above it
//	<!-- doc-test: serve PATH -->         ... against the Caddyfile at PATH (relative to the markdown)
//	<!-- doc-test: setup -->              run this sh block first; the variables it exports reach Caddy
//	<!-- doc-test: output -->             this block is the output of the last command of the sh block above
//	<!-- doc-test: skip REASON -->        a sh block with curl that is not run, and why
//	<!-- doc-test: fragment -->           a caddyfile block that belongs in a site block: adapted inside one
//	<!-- doc-test: refused -->            a caddyfile block that must fail to adapt with the error of the output block after it
//	<!-- doc-test: config -->             a JSON block that is a whole Caddy config: validated
//	<!-- doc-test: file PATH -->          this block is the whole file at PATH (relative to the markdown)
//
// In a sh block, comment lines right after a command are its expected
// output (IDs, times and blank lines aside); comment lines before it are
// labels. A sh block with a curl line and no comment fails the test.
package docs_test

import (
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }
