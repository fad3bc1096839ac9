#!/usr/bin/env bash
# ab.sh: interleaved A/B of two distkv binaries on this machine. For each
# round and each binary: a fresh 3-node `distkv dev` cluster, every key
# written once, then each workload; prints ops/s, p50 and the CPU time
# (user+sys) the three node processes spent per operation, which is far
# less noisy than throughput on a shared machine.
#
#   bench/ab.sh BIN_A BIN_B ROUNDS "workload clients seconds" ...
#   bench/ab.sh /tmp/distkv-old bin/distkv 2 "write 64 5" "read 64 5" "write 1 4"
#
# ARGS_A and ARGS_B in the environment add server flags for each side, and
# ENV_A and ENV_B environment variables (NAME=value ...), so one binary can be
# compared with itself under two settings:
#   ARGS_B="--wal-compression s2" bench/ab.sh bin/distkv bin/distkv 3 "write 64 8"
#   ENV_B="GOMAXPROCS=1" bench/ab.sh bin/distkv bin/distkv 3 "read 64 8"
#
# Rounds alternate which binary runs first (A B, B A, A B, ...): on a shared
# machine whose load drifts, series that always ran A first gave the opposite
# answer, for the same two builds within the hour, from series that
# alternated, on 1-client latency. ROUTE sets kvbench's
# -route (rr, the default; each: every request to the next node in turn, as
# bench/compare.sh's 1-client run does; one):
#   ROUTE=each bench/ab.sh /tmp/distkv-old bin/distkv 8 "write 1 4"
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
ROUTE=${ROUTE:-rr}
A=$1 B=$2 ROUNDS=$3; shift 3
SPECS=("$@")
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/distkv-ab.XXXXXX")
KVBENCH=$TMP/kvbench
(cd "$HERE" && go build -o "$KVBENCH" ./cmd/kvbench)
EP=127.0.0.1:18000,127.0.0.1:18001,127.0.0.1:18002
DEV=
cleanup() {
	if [ -n "$DEV" ]; then kill -TERM "$DEV" 2>/dev/null || true; wait "$DEV" 2>/dev/null || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT

cpu_ticks() { # total utime+stime clock ticks of the given pids
	local t=0 p
	for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	echo "$t"
}

hz=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
	order="A B"
	[ $((round % 2)) = 0 ] && order="B A"
	for v in $order; do
		bin=$A args=${ARGS_A:-} envs=${ENV_A:-}
		[ "$v" = B ] && bin=$B args=${ARGS_B:-} envs=${ENV_B:-}
		rm -rf "$TMP/data"
		env $envs "$bin" dev --nodes 3 --data-dir "$TMP/data" --http-port 18000 --peer-port 19000 -- --log-level warn $args >"$TMP/dev.log" 2>&1 &
		DEV=$!
		for _ in $(seq 60); do
			"$KVBENCH" -target distkv -endpoints "$EP" -clients 3 -ops 30 -quiet -timeout 1s 2>/dev/null | grep -q ' errors=0 ' && break
			sleep 0.5
		done
		"$KVBENCH" -target distkv -endpoints "$EP" -workload load -keys 1000 -clients 16 -quiet >/dev/null
		pids=$(pgrep -P "$DEV") || { echo "ab.sh: $bin dev is not running (ports 18000-18002/19000-19002 taken?):" >&2; cat "$TMP/dev.log" >&2; exit 1; }
		for spec in "${SPECS[@]}"; do
			read -r w c s <<<"$spec"
			t0=$(cpu_ticks $pids)
			r=$("$KVBENCH" -target distkv -endpoints "$EP" -workload "$w" -clients "$c" -route "$ROUTE" -duration "${s}s" -keys 1000 -preload=false -quiet | grep '^RESULT')
			t1=$(cpu_ticks $pids)
			ops=$(sed 's/.* ops=\([0-9]*\).*/\1/' <<<"$r")
			echo "round $round $v $w clients=$c $(grep -o 'ops_s=[0-9]*' <<<"$r") $(grep -o 'p50_ms=[0-9.]*' <<<"$r") $(grep -o 'errors=[0-9]*' <<<"$r") cpu_us_per_op=$(( (t1 - t0) * 1000000 / hz / (ops + 1) ))"
		done
		kill -TERM "$DEV"; wait "$DEV" 2>/dev/null || true; DEV=
	done
done
