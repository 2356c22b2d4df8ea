package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The results BENCHMARKS.md's figures are drawn from (docs/images/bench,
// transcribed from its tables) are reports of this tool, field for field,
// and each prints, as -report does, a row that BENCHMARKS.md has.
func TestCommittedResultsAreReports(t *testing.T) {
	files, err := filepath.Glob("../../docs/images/bench/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no results in docs/images/bench: %v", err)
	}
	doc, err := os.ReadFile("../../BENCHMARKS.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for line := range strings.SplitSeq(string(doc), "\n") {
		rows[line] = true
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var results struct {
			Build   string   `json:"build"`
			Source  string   `json:"source"`
			Reports []Report `json:"reports"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&results); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if results.Build == "" || results.Source == "" || len(results.Reports) == 0 {
			t.Errorf("%s: want a build, its source and reports", f)
		}
		for _, r := range results.Reports {
			if row := r.markdownRow(); !rows[row] {
				t.Errorf("%s: %s's row is not in BENCHMARKS.md:\n%s", f, r.Label, row)
			}
		}
	}
}
