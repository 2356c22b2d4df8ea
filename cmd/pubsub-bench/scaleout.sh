#!/usr/bin/env bash
# Scale-out (issue 13): K Caddy instances sharing one hub through one
# redis-server, N subscribers per instance, one publisher; deliveries/s,
# p99, the instances' CPU per delivery and redis-server's CPU and commands
# per message, against K. pubsub-bench -start -instances K starts
# redis-server and the instances (cmd/pubsub-bench/peers/pubsub.Caddyfile.tmpl)
# on free loopback ports, a fresh set for each K; K=1 keeps its hub in the
# redis-server too, so every row pays the same broker.
#
#   cmd/pubsub-bench/scaleout.sh                  # K = 1 2 4 8, 10,000 subscribers per instance
#   cmd/pubsub-bench/scaleout.sh quick            # 1,000 per instance
#   KS="1 2" PER_INSTANCE=500 cmd/pubsub-bench/scaleout.sh
#
# Environment: KS (default "1 2 4 8"), PER_INSTANCE (default 10000; 1000
# with quick), RATE (msg/s, default 5; 20 with quick), DURATION (default 20s; 10s with
# quick), OUT (default /tmp/pubsub-bench-scaleout), BENCH_CADDY / CADDY_BIN
# as in run-all.sh. The load client holds all K × N subscribers itself,
# spread over worker processes; on a machine that cannot, lower
# PER_INSTANCE and say so with the numbers.
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=
if [ "${1:-}" = quick ]; then quick=1; fi
KS=${KS:-1 2 4 8}
PER_INSTANCE=${PER_INSTANCE:-$([ -n "$quick" ] && echo 1000 || echo 10000)}
RATE=${RATE:-$([ -n "$quick" ] && echo 20 || echo 5)}
DURATION=${DURATION:-$([ -n "$quick" ] && echo 10s || echo 20s)}
OUT=${OUT:-/tmp/pubsub-bench-scaleout}
CADDY=${BENCH_CADDY:-/tmp/bench-caddy}
BENCH=$OUT/pubsub-bench

. cmd/pubsub-bench/build.sh
rm -f "$OUT"/k*.json
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $PER_INSTANCE subscribers per instance, $RATE msg/s for $DURATION, one publisher"

failed=0
for k in $KS; do
	echo
	echo "== $(date +%T) $k instances × $PER_INSTANCE subscribers"
	if ! "$BENCH" -start -server-bin "$CADDY" -redis -instances "$k" -n $((k * PER_INSTANCE)) \
		-mode sustained -rate "$RATE" -duration "$DURATION" -publishers 1 -settle 3s -idle 5s -progress 0 \
		-label "scale-out $k" -out "$OUT/k$(printf %02d "$k").json"; then
		failed=1
	fi
done
echo
echo "JSON reports in $OUT; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$BENCH" -scale-out "$OUT"/k*.json
exit $failed
