// Command plot draws the curves of BENCHMARKS.md as SVG files from
// pubsub-bench's JSON reports: latency of one message against the number
// of subscribers, server memory per idle subscriber, server CPU per
// delivery and publish throughput, one series per build.
//
//	cmd/pubsub-bench/plot.sh
//
// Each argument is a results file, {"build": NAME, "source": TEXT,
// "reports": [REPORT, ...]}, or NAME=DIR, a directory of reports as
// cmd/pubsub-bench/run-all.sh writes them (one -out file per run).
//
// It is a module of its own so that gonum.org/v1/plot, its fonts and its
// PDF and raster back ends stay out of the plugin's go.mod, which every
// Caddy build with the plugin reads.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Stderr))
}

func cli(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("plot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", ".", "directory for the SVG files")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: plot [-out DIR] RESULTS.json... | NAME=DIR...\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	var builds []build
	for _, arg := range fs.Args() {
		b, err := load(arg)
		if err != nil {
			fmt.Fprintln(stderr, "plot:", err)
			return 1
		}
		builds = append(builds, b)
	}
	files, err := drawAll(builds, *out)
	if err != nil {
		fmt.Fprintln(stderr, "plot:", err)
		return 1
	}
	for _, f := range files {
		fmt.Fprintln(stderr, "wrote", f)
	}
	return 0
}
