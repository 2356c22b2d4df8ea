package docs_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Every Caddyfile the user reads adapts (see documentedCaddyfiles).
func TestDocumentedCaddyfilesAdapt(t *testing.T) {
	files := documentedCaddyfiles(t)
	for name, body := range files {
		t.Run(name, func(t *testing.T) {
			if _, err := adapt(body); err != nil {
				t.Errorf("%v\n%s", err, body)
			}
		})
	}
}

// documentedCaddyfiles returns, by where they are, the Caddyfiles the user
// reads that must adapt: each caddyfile block of the documents (a block
// marked as a fragment wrapped in a site block) and each Caddyfile in
// examples/ and deploy/. It checks the refused ones, which must not adapt,
// against the error their document quotes.
func documentedCaddyfiles(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	refused := 0
	for _, doc := range documents(t) {
		bs := blocks(t, doc)
		for i, b := range bs {
			if b.lang != "caddyfile" {
				continue
			}
			body := b.body
			switch verb, _ := b.verb(); verb {
			case "fragment":
				body = "http://127.0.0.1:1 {\n" + body + "}\n"
			case "refused":
				// A mistake the document shows, and the error it quotes
				// in the output block after it.
				refused++
				_, err := adapt(body)
				if i+1 == len(bs) || bs[i+1].marker != "output" {
					t.Errorf("%s: a refused Caddyfile without the output block that quotes its error", b)
				} else if want := strings.TrimSpace(bs[i+1].body); err == nil || err.Error() != want {
					t.Errorf("%s: adapting gives %v, the document quotes %q", b, err, want)
				}
				continue
			case "", "file":
			default:
				t.Errorf("%s: a caddyfile block with marker %q", b, b.marker)
			}
			files[b.String()] = body
		}
	}
	if refused == 0 {
		t.Error("found no refused Caddyfile with its error")
	}
	paths, err := filepath.Glob(filepath.Join(root, "examples", "*", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, filepath.Join(root, "examples", "Caddyfile"), filepath.Join(root, "deploy", "Caddyfile"))
	for _, name := range paths {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	if len(files) < 20 {
		t.Fatalf("found only %d Caddyfiles", len(files))
	}
	return files
}

// Every JSON config the documents show passes caddy validate (modules
// provisioned, no listener opened, no broker connected).
func TestDocumentedJSONConfigsValidate(t *testing.T) {
	// The configs name the publish key as a placeholder, which must not
	// resolve empty.
	t.Setenv("PUBSUB_KEY", "json-doc-key")
	n := 0
	for _, doc := range documents(t) {
		for _, b := range blocks(t, doc) {
			if b.marker != "config" {
				continue
			}
			n++
			if !json.Valid([]byte(b.body)) {
				t.Errorf("%s: not JSON", b)
				continue
			}
			if err := testserver.Validate(t, []byte(b.body)); err != nil {
				t.Errorf("%s: %v", b, err)
			}
		}
	}
	if n < 2 {
		t.Fatalf("found %d JSON configs", n)
	}
}

// Every curl line of the documents runs, against a Caddy started from the
// Caddyfile the document names for it, and prints what the document shows.
// The blocks of one document run in order, as a reader follows it: what
// an earlier block published, a later one reads. Blocks marked skip are
// listed in the log with the reason.
func TestDocumentedCommandsRun(t *testing.T) {
	testserver.NeedBinary(t, "curl")
	testserver.NeedBinary(t, "openssl")
	ran, visited := 0, 0
	docs := documents(t)
	for _, doc := range docs {
		t.Run(doc, func(t *testing.T) {
			visited++
			s := newServing(t)
			var above string      // the last caddyfile block
			var lastOutput string // the last command's output
			var last block        // the sh block that printed it
			var prev block
			for _, b := range blocks(t, doc) {
				verb, arg := b.verb()
				refusedOutput := verb == "output" && prev.marker == "refused"
				prev = b
				switch {
				case b.lang == "caddyfile" && verb == "refused", refusedOutput:
					// TestDocumentedCaddyfilesAdapt checks these.
				case b.lang == "caddyfile":
					above = b.body
				case b.lang == "sh" && verb == "setup":
					for name, value := range exported(t, b) {
						t.Setenv(name, value)
					}
				case b.lang == "sh" && verb == "serve":
					body := above
					if arg != "above" {
						raw, err := os.ReadFile(fromDoc(doc, arg))
						if err != nil {
							t.Fatalf("%s: %v", b, err)
						}
						body = string(raw)
					}
					if body == "" {
						t.Fatalf("%s: serve above, with no caddyfile block above", b)
					}
					lb := s.serve(b, body)
					cmds := commands(b.body)
					for i := range cmds {
						cmds[i].text = lb.rewrite(cmds[i].text)
					}
					outputs := run(t, b, cmds)
					for i, c := range cmds {
						if c.want != nil {
							expectOutput(t, b, fmt.Sprintf("%q", c.text), outputs[i], c.want)
						}
					}
					ran += len(cmds)
					lastOutput, last = outputs[len(outputs)-1], b
				case b.lang == "sh" && verb == "skip":
					if arg == "" {
						t.Errorf("%s: skip without a reason", b)
					}
					t.Logf("%s: not run: %s", b, arg)
				case b.lang == "sh" && runsCurl(b.body):
					t.Errorf("%s: a sh block with curl, and no doc-test comment to run or skip it", b)
				case verb == "output":
					if last.doc == "" {
						t.Fatalf("%s: output of no command", b)
					}
					expectOutput(t, b, "the last command of "+last.String(), lastOutput, strings.Split(b.body, "\n"))
				}
			}
		})
	}
	// A parser that stopped finding blocks would run nothing and pass.
	if visited == len(docs) && ran < 20 {
		t.Errorf("ran only %d documented commands", ran)
	}
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// Every link from one document to another, or within one, lands on a file
// and, with a #fragment, on a heading of it.
func TestDocumentLinksResolve(t *testing.T) {
	headings := map[string]map[string]bool{}
	anchors := func(doc string) map[string]bool {
		if h, ok := headings[doc]; ok {
			return h
		}
		h := map[string]bool{}
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			return nil
		}
		inFence := false
		seen := map[string]int{}
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(line, "```") {
				inFence = !inFence
			}
			if inFence || !strings.HasPrefix(line, "#") {
				continue
			}
			slug := slugify(strings.TrimLeft(line, "# "))
			if n := seen[slug]; n > 0 {
				h[fmt.Sprintf("%s-%d", slug, n)] = true
			} else {
				h[slug] = true
			}
			seen[slug]++
		}
		headings[doc] = h
		return h
	}
	for _, doc := range documents(t) {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range linkRE.FindAllStringSubmatch(string(b), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(link, "#")
			target := doc
			if path != "" {
				target = filepath.Clean(filepath.Join(filepath.Dir(doc), path))
				if _, err := os.Stat(filepath.Join(root, target)); err != nil {
					t.Errorf("%s: link %s: no file %s", doc, link, target)
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			if !anchors(target)[frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", doc, link, target, frag)
			}
		}
	}
}

// slugify makes a heading's anchor as GitHub does: lower case, letters,
// digits, '-' and '_' kept, spaces to '-', the rest dropped.
func slugify(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}
