package docs_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// root is the repository, seen from this package's directory.
const root = "../.."

// block is one fenced code block of a markdown file.
type block struct {
	doc    string // the markdown file, relative to root
	line   int    // line of the opening fence, from 1
	lang   string // the fence's info string: caddyfile, sh, json, text...
	body   string
	marker string // the doc-test comment before the fence, without "doc-test: "
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.doc, b.line) }

// verb and argument of the block's marker: "serve", "above".
func (b block) verb() (string, string) {
	verb, arg, _ := strings.Cut(b.marker, " ")
	return verb, strings.TrimSpace(arg)
}

var markerRE = regexp.MustCompile(`^<!-- doc-test: (.+?) -->$`)

// documents returns README.md and docs/*.md, relative to root.
func documents(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md"}
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d)
		out = append(out, rel)
	}
	if len(out) < 8 {
		t.Fatalf("found only %v", out)
	}
	return out
}

// blocks parses the fenced blocks of the markdown file doc (relative to
// root). Fences start at the beginning of a line.
func blocks(t *testing.T, doc string) []block {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, doc))
	if err != nil {
		t.Fatal(err)
	}
	var out []block
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "```") {
			continue
		}
		bl := block{doc: doc, line: i + 1, lang: strings.TrimPrefix(lines[i], "```")}
		for j := i - 1; j >= 0; j-- {
			if strings.TrimSpace(lines[j]) == "" {
				continue
			}
			if m := markerRE.FindStringSubmatch(lines[j]); m != nil {
				bl.marker = m[1]
			}
			break
		}
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body = append(body, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("%s: block not closed", bl)
		}
		bl.body = strings.Join(body, "\n") + "\n"
		out = append(out, bl)
	}
	return out
}

// fromDoc resolves path, written relative to the markdown file doc, to a
// path from this package's directory.
func fromDoc(doc, path string) string {
	return filepath.Join(root, filepath.Dir(doc), path)
}

// adapt adapts Caddyfile text as `caddy adapt` does.
func adapt(body string) ([]byte, error) {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), map[string]any{"filename": "Caddyfile"})
	return cfg, err
}

// hostPortRE finds the addresses the documents use: localhost:PORT,
// 127.0.0.1:PORT, and a site address that is only :PORT.
var hostPortRE = regexp.MustCompile(`(localhost|127\.0\.0\.1):(\d{2,5})\b|(?m)^:(\d{2,5})\b`)

// loopback moves a documented setup onto free loopback ports: every port
// the Caddyfile or the commands name gets a free one, the same in both,
// with 127.0.0.1 as its host. Caddy's admin endpoint goes on a free port
// too, for the commands that use localhost:2019, unless the Caddyfile
// sets its own admin.
type loopback struct {
	t     testing.TB
	ports map[string]int
}

func newLoopback(t testing.TB) *loopback { return &loopback{t: t, ports: map[string]int{}} }

func (l *loopback) port(documented string) int {
	if p, ok := l.ports[documented]; ok {
		return p
	}
	p := testserver.FreePort(l.t)
	l.ports[documented] = p
	return p
}

// rewrite replaces the documented addresses in s.
func (l *loopback) rewrite(s string) string {
	return hostPortRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := hostPortRE.FindStringSubmatch(m)
		if sub[3] != "" {
			return fmt.Sprintf("127.0.0.1:%d", l.port(sub[3]))
		}
		return fmt.Sprintf("127.0.0.1:%d", l.port(sub[2]))
	})
}

// caddyfile rewrites a documented Caddyfile to run here: its addresses on
// loopback, and global options that keep the test's Caddy to itself (no
// autosave, errors-only logs, the admin endpoint on a free loopback port).
func (l *loopback) caddyfile(body string) string {
	body = l.rewrite(body)
	globals := "\tpersist_config off\n\tlog {\n\t\tlevel ERROR\n\t}\n"
	if !regexp.MustCompile(`(?m)^\tadmin\b`).MatchString(body) {
		globals += fmt.Sprintf("\tadmin 127.0.0.1:%d\n", l.port("2019"))
	}
	lines := strings.Split(body, "\n")
	for i, line := range lines {
		switch strings.TrimSpace(line) {
		case "":
			continue
		case "{": // the Caddyfile's own global options: add to them
			lines[i] = "{\n" + strings.TrimSuffix(globals, "\n")
			return strings.Join(lines, "\n")
		}
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			break
		}
	}
	return "{\n" + globals + "}\n" + body
}

// serving is the Caddy this test process runs for the documents: one
// config at a time, stopped before the next starts, so that each starts
// with empty hubs.
type serving struct {
	t       *testing.T
	current string // the documented Caddyfile it runs, "" for none
	lb      *loopback
}

func newServing(t *testing.T) *serving {
	s := &serving{t: t}
	t.Cleanup(s.stop)
	return s
}

func (s *serving) stop() {
	if s.current == "" {
		return
	}
	if err := caddy.Stop(); err != nil {
		s.t.Errorf("stopping caddy: %v", err)
	}
	s.current = ""
}

// serve runs Caddy from the documented Caddyfile text body, unless it
// runs it already, and returns the address rewriter for the commands.
func (s *serving) serve(where fmt.Stringer, body string) *loopback {
	s.t.Helper()
	if body == s.current {
		return s.lb
	}
	s.stop()
	lb := newLoopback(s.t)
	text := lb.caddyfile(body)
	cfg, err := adapt(text)
	if err != nil {
		s.t.Fatalf("%s: adapting the Caddyfile it runs against: %v\n%s", where, err, text)
	}
	if err := caddy.Load(cfg, true); err != nil {
		s.t.Fatalf("%s: starting Caddy: %v\n%s", where, err, text)
	}
	s.current, s.lb = body, lb
	return lb
}

// command is one shell command of a sh block, with the output the block
// shows for it (the comment lines right after it), if any.
type command struct {
	text string
	want []string
}

// commands splits a sh block into commands: lines joined by a trailing
// backslash are one; comment lines right after a command are its output.
func commands(body string) []command {
	var out []command
	afterCommand := false
	lines := strings.Split(body, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch trimmed := strings.TrimSpace(line); {
		case trimmed == "":
			afterCommand = false
		case strings.HasPrefix(trimmed, "#"):
			if afterCommand {
				out[len(out)-1].want = append(out[len(out)-1].want, strings.TrimPrefix(strings.TrimPrefix(trimmed, "#"), " "))
			}
		default:
			text := line
			for strings.HasSuffix(text, "\\") && i+1 < len(lines) {
				i++
				text += "\n" + lines[i]
			}
			out = append(out, command{text: text})
			afterCommand = true
		}
	}
	return out
}

// runsCurl reports whether a sh block runs curl.
func runsCurl(body string) bool {
	for _, c := range commands(body) {
		if regexp.MustCompile(`(^|[\s;&|(])curl\s`).MatchString(c.text) {
			return true
		}
	}
	return false
}

// curlWrapper replaces curl in the scripts the test runs: quiet but for
// errors, and bounded in time. A stream (-N) is cut after a few seconds,
// which curl reports as exit code 28; for a stream that is its end, not a
// failure.
const curlWrapper = `curl() {
	local limit=10 stream=
	for a in "$@"; do [ "$a" = -N ] && limit=3 stream=1; done
	command curl --silent --show-error --max-time "$limit" "$@"
	local rc=$?
	[ "$rc" = 28 ] && [ -n "$stream" ] && rc=0
	return $rc
}
`

var endRE = regexp.MustCompile(`\n?@@doc-test end (\d+) (\d+)@@\n`)

// run runs cmds in one bash, in order, and returns each one's output. A
// command that exits non-zero fails the test.
func run(t *testing.T, where fmt.Stringer, cmds []command) []string {
	t.Helper()
	var script strings.Builder
	script.WriteString(curlWrapper)
	for i, c := range cmds {
		fmt.Fprintf(&script, "%s\nprintf '\\n@@doc-test end %d %%d@@\\n' $?\n", c.text, i)
	}
	cmd := exec.Command("bash", "-c", script.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\nstderr: %s\nscript:\n%s", where, err, stderr.String(), script.String())
	}
	outputs := make([]string, len(cmds))
	rest := string(out)
	for range cmds {
		m := endRE.FindStringSubmatchIndex(rest)
		if m == nil {
			t.Fatalf("%s: output ends early: %q\nstderr: %s", where, rest, stderr.String())
		}
		i, _ := strconv.Atoi(rest[m[2]:m[3]])
		rc := rest[m[4]:m[5]]
		outputs[i] = rest[:m[0]]
		if rc != "0" {
			t.Errorf("%s: %q exited with %s\noutput: %s\nstderr: %s", where, cmds[i].text, rc, outputs[i], stderr.String())
		}
		rest = rest[m[1]:]
	}
	return outputs
}

// What differs from one run to the next: IDs (memory and bolt
// 5b310d3f-42, Redis 86f71a78-1795307561868-0) and times.
var (
	idRE   = regexp.MustCompile(`\b[0-9a-f]{8}-\d+(-\d+)?\b`)
	timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
)

// normalise returns the lines of s with IDs and times replaced, trailing
// space trimmed and blank lines dropped.
func normalise(s string) []string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimRight(line, " \t\r")
		if line == "" {
			continue
		}
		line = timeRE.ReplaceAllString(idRE.ReplaceAllString(line, "ID"), "TIME")
		out = append(out, line)
	}
	return out
}

// expectOutput fails unless got is what the documents show, want.
func expectOutput(t *testing.T, where fmt.Stringer, what, got string, want []string) {
	t.Helper()
	if g, w := normalise(got), normalise(strings.Join(want, "\n")); !slices.Equal(g, w) {
		t.Errorf("%s: %s printed\n%s\nthe document shows\n%s", where, what, strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

// exported runs a setup block and returns the variables it exports, with
// their values.
func exported(t *testing.T, b block) map[string]string {
	t.Helper()
	names := regexp.MustCompile(`(?m)^export ([A-Za-z_][A-Za-z0-9_]*)=`).FindAllStringSubmatch(b.body, -1)
	if len(names) == 0 {
		t.Fatalf("%s: a setup block exports nothing", b)
	}
	script := b.body
	for _, n := range names {
		script += fmt.Sprintf("printf '%%s\\0' \"$%s\"\n", n[1])
	}
	out, err := exec.Command("bash", "-e", "-c", script).Output()
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	values := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(values) != len(names) {
		t.Fatalf("%s: got %d values for %d variables", b, len(values), len(names))
	}
	env := map[string]string{}
	for i, n := range names {
		env[n[1]] = values[i]
	}
	return env
}
