package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The committed classic build is what the generator makes of the
// committed module: whoever changes pubsub.js runs go generate.
func TestClassicBuildUpToDate(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", Source))
	if err != nil {
		t.Fatal(err)
	}
	want, err := Classic(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", Build))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s is not the build of %s: run go generate in the repository root", Build, Source)
	}
}

// Module syntax the wrapper cannot carry into a classic script is refused,
// not copied into a build that would fail to load.
func TestClassicRefusesOtherModuleSyntax(t *testing.T) {
	for _, src := range []string{
		"import { x } from \"./x.js\";\nexport function f() {}\n",
		"export default function f() {}\n",
		"export { f };\nfunction f() {}\n",
		"function f() { return import(\"./x.js\"); }\nexport const g = 1;\n",
		"const here = import.meta.url;\nexport const g = 1;\n",
		"function f() {}\n",
	} {
		if out, err := Classic([]byte(src)); err == nil {
			t.Errorf("Classic(%q) = %q, want an error", src, out)
		}
	}
	out, err := Classic([]byte("export const A = 1;\nexport function b() {}\nconst exported = \"export x\";\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "\nconst A = 1;\nfunction b() {}\n") || !strings.Contains(string(out), "globalThis.PubSub = Object.freeze({ A, b });") {
		t.Fatalf("got %s", out)
	}
}
