#!/usr/bin/env bash
# Runs the side-by-side suite of BENCHMARKS.md: the same scenarios against
# caddy-pubsub, Mercure and nginx+nchan, each server started fresh by
# pubsub-bench -start for each run from a template in cmd/pubsub-bench/peers/,
# and prints one table, a row per scenario and a column per server, then the
# sizing tables of caddy-pubsub's own runs (RSS and subscribers per GiB by
# connection kind; CPU per delivery and cores per 100,000 deliveries/s).
#
#   cmd/pubsub-bench/peers.sh          # the issue's sizes, about 25 minutes
#   cmd/pubsub-bench/peers.sh quick    # a tenth of the subscribers (and topics), shorter waits
#
# Needs: nginx and libnginx-mod-nchan (apt-get install nginx
# libnginx-mod-nchan), and Mercure's Caddy, built here with xcaddy when
# $MERCURE_BIN (default /tmp/mercure-caddy) does not exist (2-10 minutes).
# Environment: OUT (results directory, default /tmp/pubsub-bench-peers),
# BENCH_CADDY (this project's Caddy, built from the tree, default
# /tmp/bench-caddy), CADDY_BIN (a Caddy built before, used as it is),
# PEERS (default "pubsub mercure nchan").
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=
if [ "${1:-}" = quick ]; then quick=1; fi
OUT=${OUT:-/tmp/pubsub-bench-peers}
CADDY=${BENCH_CADDY:-/tmp/bench-caddy}
MERCURE_BIN=${MERCURE_BIN:-/tmp/mercure-caddy}
PEERS=${PEERS:-pubsub mercure nchan}
BENCH=$OUT/pubsub-bench

. cmd/pubsub-bench/build.sh
rm -f "$OUT"/[0-9]*.json
if [[ " $PEERS " == *" mercure "* ]] && [ ! -x "$MERCURE_BIN" ]; then
	echo "building $MERCURE_BIN with xcaddy (Mercure v0.20.0 on Caddy v2.11.9)"
	scratch=$(mktemp -d)
	(
		cd "$scratch"
		go mod init xcaddy-scratch >/dev/null 2>&1
		go get github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.7
		GOBIN=$scratch go install github.com/caddyserver/xcaddy/cmd/xcaddy
		GONOSUMDB=github.com/dunglas/mercure "$scratch/xcaddy" build v2.11.9 --output "$MERCURE_BIN" \
			--with github.com/dunglas/mercure/caddy@v0.20.0 --with github.com/dunglas/mercure@v0.20.0
	)
	rm -rf "$scratch"
fi

{
	echo "date:    $(date -u +%FT%TZ)"
	echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (plus uncommitted changes: $(git status --porcelain 2>/dev/null | wc -l) files)"
	echo "cpu:     $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "kernel:  $(uname -r)"
	echo "go:      $(go version | cut -d' ' -f3)"
	echo "nginx:   $(nginx -v 2>&1 | cut -d/ -f2), nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo unknown)"
	echo "mercure: $MERCURE_BIN ($("$MERCURE_BIN" list-modules 2>/dev/null | grep -c mercure || true) mercure modules)"
	echo "nofile:  $(ulimit -Hn) (hard limit per process)"
	echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, before the suite)"
} | tee "$OUT/machine.txt"

scale=1 waits=()
if [ -n "$quick" ]; then
	scale=10 waits=(-settle 2s -idle 3s)
fi
n() { echo $(($1 / scale)); }
seconds() { if [ -n "$quick" ]; then echo 10s; else echo "$1"; fi; }

declare -A bin=([pubsub]=$CADDY [mercure]=$MERCURE_BIN [nchan]=nginx)
failed=0
step=0
# run NAME PEERS FLAGS...: one scenario against each of PEERS (those of
# $PEERS), a fresh server each.
run() {
	local name=$1 peers=$2
	shift 2
	step=$((step + 1))
	for peer in $peers; do
		[[ " $PEERS " == *" $peer "* ]] || continue
		echo
		echo "== $(date +%T) $name, $peer: pubsub-bench $*"
		if ! "$BENCH" -peer "$peer" -start -server-bin "${bin[$peer]}" -label "$name" \
			-out "$OUT/$(printf %02d $step)-$peer.json" -progress 0 "${waits[@]}" "$@"; then
			failed=1
		fi
	done
}

all="pubsub mercure nchan"
ws="pubsub nchan" # Mercure has no WebSocket
run "RSS per idle SSE subscriber, $(n 10000)" "$all" -mode idle -n "$(n 10000)"
run "RSS per idle WebSocket, $(n 10000)" "$ws" -mode idle -transport ws -n "$(n 10000)"
run "one message to $(n 10000): p99 / CPU-s per 1M" "$all" -mode fanout -n "$(n 10000)" -count 5 -interval 2s
run "$(n 1000) × 100 msg/s: p99 / CPU-s per 1M" "$all" -mode sustained -n "$(n 1000)" -rate 100 -duration "$(seconds 20s)"
run "$(n 10000) × 30 msg/s: deliveries/s, p99 / CPU-s per 1M" "$all" -mode sustained -n "$(n 10000)" -rate 30 -duration "$(seconds 20s)"
run "$(n 10000) subscribers × $(n 10000) topics, 5,000 publishes/s" "$all" -mode sustained -n "$(n 10000)" -topics "$(n 10000)" -rate 5000 -duration "$(seconds 20s)"
run "$(n 10000) subscribers × $(n 1000) topics, 2,000 publishes/s" "$all" -mode sustained -n "$(n 10000)" -topics "$(n 1000)" -rate 2000 -duration "$(seconds 20s)"
# The cheapest documented publish path (docs/operations.md, Publishing at a
# high rate): JSON batches, which the peers do not have.
run "$(n 10000) subscribers × $(n 10000) topics, 5,000 publishes/s in JSON batches of 100" pubsub -mode sustained -n "$(n 10000)" -topics "$(n 10000)" -rate 5000 -batch 100 -duration "$(seconds 20s)"
run "$(n 10000) subscribers × $(n 1000) topics, 2,000 publishes/s in JSON batches of 100" pubsub -mode sustained -n "$(n 10000)" -topics "$(n 1000)" -rate 2000 -batch 100 -duration "$(seconds 20s)"
run "TLS: RSS per idle SSE subscriber over HTTP/2, a connection each, $(n 5000)" "$all" -mode idle -tls -http2 -own-conn -n "$(n 5000)"
run "TLS: RSS per idle SSE subscriber over HTTP/1.1, $(n 5000)" "$all" -mode idle -tls -n "$(n 5000)"
run "TLS: RSS per idle WebSocket, $(n 5000)" "$ws" -mode idle -tls -transport ws -n "$(n 5000)"

echo
echo "JSON reports in $OUT; machine in $OUT/machine.txt; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Cells: RSS per idle subscriber; or p99 / server CPU-s per 1M deliveries (= µs per delivery),"
echo "after the publishes/s the server took and the deliveries/s; loss, drops and gaps in brackets."
echo
"$BENCH" -side-by-side "$OUT"/[0-9]*.json
echo
echo "Sizing (caddy-pubsub, from the same runs):"
echo
"$BENCH" -sizing "$OUT"/[0-9]*-pubsub.json
exit $failed
