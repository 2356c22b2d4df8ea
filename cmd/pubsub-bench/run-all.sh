#!/usr/bin/env bash
# Runs the benchmark suite of BENCHMARKS.md: builds Caddy with the plugin
# and pubsub-bench, then for each run starts a fresh Caddy from
# cmd/pubsub-bench/Caddyfile (so each memory baseline is clean), measures,
# and stops it. Prints a Markdown table of the runs at the end.
#
#   cmd/pubsub-bench/run-all.sh          # the full suite, about 8 minutes
#   cmd/pubsub-bench/run-all.sh quick    # a tenth of the subscribers, same durations
#
# Environment: OUT (results directory, default /tmp/pubsub-bench-results),
# PUBSUB_BENCH_PORT (default 8399), PUBSUB_BENCH_ADMIN_PORT (Caddy's admin
# endpoint, for /debug/pprof/; default 8398), BENCH_CADDY (Caddy binary to
# build, default /tmp/bench-caddy), CADDY_BIN (a Caddy binary built before,
# used as it is instead: to measure an older tree, as BENCHMARKS.md's
# before/after tables do).
#
#   CADDY_BIN=/tmp/caddy-before OUT=/tmp/before cmd/pubsub-bench/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

scale=1
if [ "${1:-}" = quick ]; then scale=10; fi
OUT=${OUT:-/tmp/pubsub-bench-results}
PORT=${PUBSUB_BENCH_PORT:-8399}
CADDY=${BENCH_CADDY:-/tmp/bench-caddy}
BENCH=$OUT/pubsub-bench
BASE=http://127.0.0.1:$PORT
export PUBSUB_BENCH_PORT=$PORT
export PUBSUB_BENCH_KEY=${PUBSUB_BENCH_KEY:-bench-$RANDOM$RANDOM$RANDOM}

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	echo "run-all.sh: 127.0.0.1:$PORT is in use: set PUBSUB_BENCH_PORT to a free port" >&2
	exit 1
fi
mkdir -p "$OUT"
rm -f "$OUT"/[0-9]*.json
STATE=$(mktemp -d)
CADDY_PID=
cleanup() {
	if [ -n "$CADDY_PID" ]; then kill "$CADDY_PID" 2>/dev/null || true; fi
	rm -rf "$STATE"
}
trap cleanup EXIT
# Both Go programs raise their soft open-files limit to the hard one;
# this makes it explicit for Caddy.
ulimit -n "$(ulimit -Hn)"

if [ -n "${CADDY_BIN:-}" ]; then
	CADDY=$CADDY_BIN
	echo "using $CADDY; building $BENCH"
else
	echo "building $CADDY and $BENCH"
	go build -o "$CADDY" ./cmd/caddy
fi
go build -o "$BENCH" ./cmd/pubsub-bench

{
	echo "date:    $(date -u +%FT%TZ)"
	echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (plus uncommitted changes: $(git status --porcelain 2>/dev/null | wc -l) files)"
	echo "cpu:     $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "memory:  $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "kernel:  $(uname -r)"
	echo "go:      $(go version | cut -d' ' -f3)"
	echo "nofile:  $(ulimit -Hn) (hard limit per process)"
	echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, before the suite)"
} | tee "$OUT/machine.txt"

start_caddy() {
	XDG_CONFIG_HOME=$STATE XDG_DATA_HOME=$STATE "$CADDY" run --config cmd/pubsub-bench/Caddyfile --adapter caddyfile >>"$OUT/caddy.log" 2>&1 &
	CADDY_PID=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
		if ! kill -0 "$CADDY_PID" 2>/dev/null; then
			echo "run-all.sh: Caddy exited; see $OUT/caddy.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "run-all.sh: Caddy did not listen on 127.0.0.1:$PORT within 10s" >&2
	exit 1
}

stop_caddy() {
	kill "$CADDY_PID"
	wait "$CADDY_PID" || true
	CADDY_PID=
}

failed=0
# run NAME FLAGS...: one measurement against a fresh Caddy.
run() {
	local name=$1
	shift
	echo
	echo "== $(date +%T) $name: pubsub-bench $*"
	start_caddy
	if ! "$BENCH" -url "$BASE/events" -pid "$CADDY_PID" -label "$name" -out "$OUT/$name.json" "$@"; then
		failed=1
	fi
	stop_caddy
}

n() { echo $(($1 / scale)); }

run 01-idle-sse-$(n 1000) -mode idle -n "$(n 1000)"
run 02-idle-sse-$(n 5000) -mode idle -n "$(n 5000)"
run 03-idle-sse-$(n 10000) -mode idle -n "$(n 10000)"
run 04-idle-sse-$(n 19000) -mode idle -n "$(n 19000)"
run 05-fanout-sse-$(n 10000) -mode fanout -n "$(n 10000)" -count 5 -interval 2s
run 06-sustained-sse-$(n 10000)x5 -mode sustained -n "$(n 10000)" -rate 5 -duration 30s
run 07-sustained-sse-$(n 1000)x100 -mode sustained -n "$(n 1000)" -rate 100 -duration 20s
run 08-publish-sse -url "$BASE/throughput" -mode publish -n 1 -publishers 8 -duration 10s
run 09-publish-sse-batch10 -url "$BASE/throughput" -mode publish -n 1 -publishers 8 -batch 10 -duration 10s
run 10-idle-ws-$(n 10000) -mode idle -transport ws -n "$(n 10000)"
run 11-sustained-ws-$(n 10000)x5 -mode sustained -transport ws -n "$(n 10000)" -rate 5 -duration 30s
run 12-sustained-poll-$(n 5000)x5 -mode sustained -transport poll -n "$(n 5000)" -rate 5 -duration 30s
# The fan-out curve around run 05, up to what one Caddy can hold.
run 13-fanout-sse-$(n 1000) -mode fanout -n "$(n 1000)" -count 5 -interval 2s
run 14-fanout-sse-$(n 5000) -mode fanout -n "$(n 5000)" -count 5 -interval 2s
run 15-fanout-sse-$(n 19000) -mode fanout -n "$(n 19000)" -count 5 -interval 2s
# Publishers enough to keep the server, not round trips, the limit.
run 16-publish-sse-32pub -url "$BASE/throughput" -mode publish -n 1 -publishers 32 -duration 10s

echo
echo "JSON reports in $OUT; machine in $OUT/machine.txt"
echo
"$BENCH" -report "$OUT"/[0-9]*.json
exit $failed
