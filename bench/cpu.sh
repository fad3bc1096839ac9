#!/usr/bin/env bash
# cpu.sh: CPU time per 64-client write of the do-nothing server, the
# replication floor and a 3-node distkv, each loaded in turn by kvbench for
# 6 s, ROUNDS times: the servers' CPU (user+sys of all their processes, from
# /proc) and the load generator's, per write. On a machine where the load
# generator and the servers share the cores, their sum bounds the writes per
# second: cores x 1 s / (server + kvbench CPU per write).
#
#   bench/cpu.sh [ROUNDS]        (default 3; builds bin/distkv and kvbench)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/distkv-cpu.XXXXXX")
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$TMP"' EXIT
make build >/dev/null
(cd bench && go build -o "$TMP/kvbench" ./cmd/kvbench)
KV=$TMP/kvbench
TICK=$(getconf CLK_TCK)
GD=${GODEBUG_ALL-} # GODEBUG of every server, distkv's nodes too (GODEBUG_ALL=schedtrace=2147483647: the opt-in setting)

# cputicks PID...: utime+stime of the processes, in clock ticks.
cputicks() {
	local sum=0 p f
	for p in "$@"; do
		read -ra f < <(sed 's/.*) //' "/proc/$p/stat")
		sum=$((sum + f[11] + f[12]))
	done
	echo "$sum"
}

# load LABEL CLIENT_TARGET ENDPOINTS PID...: one 6 s run, one line of output.
load() {
	local label=$1 client=$2 eps=$3
	shift 3
	local before after ops ops_s user sys
	before=$(cputicks "$@")
	/usr/bin/time -f "%U %S" -o "$TMP/time" "$KV" -target "$client" -endpoints "$eps" -workload write \
		-clients 64 -duration 6s -keys 1000 -quiet >"$TMP/out" 2>&1
	after=$(cputicks "$@")
	ops=$(sed -n 's/^RESULT.* ops=\([0-9]*\).*/\1/p' "$TMP/out")
	ops_s=$(sed -n 's/^RESULT.*ops_s=\([0-9]*\).*/\1/p' "$TMP/out")
	read -r user sys <"$TMP/time"
	awk -v l="$label" -v o="$ops" -v os="$ops_s" -v c=$((after - before)) -v t="$TICK" -v u="$user" -v s="$sys" \
		'BEGIN { printf "%-6s writes/s %6d  server CPU %6.1f us/write  kvbench CPU %5.1f us/write\n", l, os, c / t * 1e6 / o, (u + s) * 1e6 / o }'
}

for r in $(seq "$ROUNDS"); do
	echo "round $r"
	rm -rf "$TMP/d" && mkdir -p "$TMP/d"
	GODEBUG=$GD "$KV" serve-null --addr 127.0.0.1:17000 --value-size 256 >/dev/null 2>&1 &
	np=$!
	sleep 1
	load null null 127.0.0.1:17000 $np
	kill $np && wait $np 2>/dev/null || true

	GODEBUG=$GD "$KV" serve-floor -role replica -listen 127.0.0.1:17101 -dir "$TMP/d/r1" >/dev/null 2>&1 &
	r1=$!
	GODEBUG=$GD "$KV" serve-floor -role replica -listen 127.0.0.1:17102 -dir "$TMP/d/r2" >/dev/null 2>&1 &
	r2=$!
	sleep 0.5
	GODEBUG=$GD "$KV" serve-floor -role primary -addr 127.0.0.1:17100 -dir "$TMP/d/p" -acks 1 \
		-replicas 127.0.0.1:17101,127.0.0.1:17102 >/dev/null 2>&1 &
	fp=$!
	sleep 1
	load floor null 127.0.0.1:17100 $fp $r1 $r2
	kill $fp $r1 $r2 && wait $fp $r1 $r2 2>/dev/null || true

	GODEBUG=$GD bin/distkv dev --data-dir "$TMP/d/distkv" --http-port 17200 --peer-port 17300 >/dev/null 2>&1 &
	dp=$!
	sleep 4
	# shellcheck disable=SC2046
	load distkv distkv 127.0.0.1:17200,127.0.0.1:17201,127.0.0.1:17202 $(pgrep -f "distkv server --id n[123] --data-dir $TMP/d/distkv")
	kill -INT $dp && wait $dp 2>/dev/null || true
	sleep 1
done
