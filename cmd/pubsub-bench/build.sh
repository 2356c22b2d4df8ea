# Sourced by peers.sh and scaleout.sh: raises the open-files limit and
# builds what a suite runs. In: OUT, CADDY (where to build this tree's
# Caddy), BENCH (where to build pubsub-bench), CADDY_BIN (a Caddy built
# before, used as it is instead). Out: CADDY, the Caddy to run.

# Both Go programs raise their soft open-files limit to the hard one; this
# makes it explicit for the servers.
ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
if [ -n "${CADDY_BIN:-}" ]; then
	CADDY=$CADDY_BIN
else
	echo "building $CADDY"
	go build -o "$CADDY" ./cmd/caddy
fi
go build -o "$BENCH" ./cmd/pubsub-bench
