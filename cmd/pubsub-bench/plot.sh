#!/usr/bin/env bash
# Draws the figures of BENCHMARKS.md (docs/images/bench/*.svg) from
# pubsub-bench's JSON reports, with cmd/pubsub-bench/plot (a module of its
# own: gonum/plot stays out of the plugin's go.mod).
#
#   cmd/pubsub-bench/plot.sh                 # the results committed in docs/images/bench
#   cmd/pubsub-bench/plot.sh after=/tmp/pubsub-bench-results before=/tmp/before-results
#
# Arguments: results files ({"build", "source", "reports"}) or NAME=DIR, a
# directory of run-all.sh's reports. OUT=DIR writes elsewhere.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${OUT:-$root/docs/images/bench}")
args=()
if [ $# -eq 0 ]; then
	args=("$root"/docs/images/bench/2026-11-22-after.json "$root"/docs/images/bench/2026-11-22-before-run-2.json "$root"/docs/images/bench/2026-11-22-before-run-1.json)
fi
for a in "$@"; do
	case $a in
	*=*) args+=("${a%%=*}=$(realpath "${a#*=}")") ;;
	*) args+=("$(realpath "$a")") ;;
	esac
done
mkdir -p "$out"
go -C "$root/cmd/pubsub-bench/plot" run . -out "$out" "${args[@]}"
