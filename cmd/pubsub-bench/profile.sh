#!/usr/bin/env bash
# Profiles Caddy under one pubsub-bench run: starts a fresh Caddy from
# cmd/pubsub-bench/Caddyfile (its admin endpoint serves /debug/pprof/ on
# loopback), runs pubsub-bench with the given flags, and while it runs takes
# a CPU profile (or, with STRACE=1, counts syscalls with strace -c -f), a
# heap profile after a GC, the goroutines and the runtime's memory stats.
# BENCHMARKS.md's profile excerpts come from it.
#
#   cmd/pubsub-bench/profile.sh /tmp/prof -mode sustained -n 10000 -rate 5 -duration 30s
#   go tool pprof -top /tmp/bench-caddy /tmp/prof/cpu.pb.gz
#
# Environment: CADDY_BIN (a Caddy binary to profile; default: build
# /tmp/bench-caddy from this tree), PROFILE_AFTER (seconds from the start
# of the run to the profile, default 13: after 10,000 subscribers have
# connected and settled), PROFILE_SECONDS (default 15), STRACE=1,
# PUBSUB_BENCH_PORT (default 8399), PUBSUB_BENCH_ADMIN_PORT (default 8398).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ $# -lt 1 ]; then
	echo "usage: $0 OUTDIR [pubsub-bench flags...]" >&2
	exit 2
fi
OUT=$1
shift
PORT=${PUBSUB_BENCH_PORT:-8399}
ADMIN=http://127.0.0.1:${PUBSUB_BENCH_ADMIN_PORT:-8398}
AFTER=${PROFILE_AFTER:-13}
SECONDS_=${PROFILE_SECONDS:-15}
export PUBSUB_BENCH_PORT=$PORT
export PUBSUB_BENCH_KEY=${PUBSUB_BENCH_KEY:-bench-$RANDOM$RANDOM$RANDOM}
mkdir -p "$OUT"

CADDY=${CADDY_BIN:-/tmp/bench-caddy}
if [ -z "${CADDY_BIN:-}" ]; then
	go build -o "$CADDY" ./cmd/caddy
fi
go build -o "$OUT/pubsub-bench" ./cmd/pubsub-bench

ulimit -n "$(ulimit -Hn)"
STATE=$(mktemp -d)
XDG_CONFIG_HOME=$STATE XDG_DATA_HOME=$STATE "$CADDY" run --config cmd/pubsub-bench/Caddyfile --adapter caddyfile >"$OUT/caddy.log" 2>&1 &
CADDY_PID=$!
BENCH_PID=
cleanup() {
	if [ -n "$BENCH_PID" ]; then kill "$BENCH_PID" 2>/dev/null || true; fi
	kill "$CADDY_PID" 2>/dev/null || true
	rm -rf "$STATE"
}
trap cleanup EXIT
for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
	sleep 0.1
done

"$OUT/pubsub-bench" -url "http://127.0.0.1:$PORT/events" -pid "$CADDY_PID" -out "$OUT/report.json" "$@" >"$OUT/bench.txt" 2>&1 &
BENCH_PID=$!
sleep "$AFTER"
if [ -n "${STRACE:-}" ]; then
	timeout -s INT "$SECONDS_" strace -c -f -p "$CADDY_PID" -o "$OUT/strace.txt" >/dev/null 2>&1 || true
else
	curl -sf "$ADMIN/debug/pprof/profile?seconds=$SECONDS_" >"$OUT/cpu.pb.gz"
fi
curl -sf "$ADMIN/debug/pprof/heap?gc=1" >"$OUT/heap.pb.gz"
curl -sf "$ADMIN/debug/pprof/goroutine?debug=1" >"$OUT/goroutine.txt"
curl -sf "$ADMIN/debug/vars" >"$OUT/vars.json"
wait "$BENCH_PID" || true
BENCH_PID=
cat "$OUT/bench.txt"
echo "profiles in $OUT: go tool pprof -top $CADDY $OUT/cpu.pb.gz"
