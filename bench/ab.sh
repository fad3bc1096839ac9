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
# DEV_ARGS_A and DEV_ARGS_B add `distkv dev` flags for one side, and KV_ARGS_A
# and KV_ARGS_B kvbench flags for one side, in which {data} stands for that
# side's data directory: TLS and authentication against plain, one binary:
#   DEV_ARGS_B=--secure KV_ARGS_B="-cacert {data}/certs/ca.crt \
#     -cert {data}/certs/client-root.crt -key {data}/certs/client-root.key" \
#     SIDE_BY_SIDE=1 bench/ab.sh bin/distkv bin/distkv 5 "write 64 5" "read 64 5"
#
# Rounds alternate which binary runs first (A B, B A, A B, ...): on a shared
# machine whose load drifts, series that always ran A first gave the opposite
# answer, for the same two builds within the hour, from series that
# alternated, on 1-client latency. ROUTE sets kvbench's
# -route (rr, the default; each: every request to the next node in turn, as
# bench/compare.sh's 1-client run does; one; leader), ROUTE_A and ROUTE_B one
# side's:
#   ROUTE=each bench/ab.sh /tmp/distkv-old bin/distkv 8 "write 1 4"
#
# SIDE_BY_SIDE=1 keeps both clusters up for the whole series (A on ports
# 18000-18002, B on 28000-28002) and loads them in turn, each workload on A
# and B back to back: a host whose speed drifts within minutes then weighs on
# both sides of every pair alike. Short windows and many rounds then show
# differences of about 5% in the 1-client p50 (the same binary on both sides,
# 12 rounds of 2 s: per-round B/A 0.91-1.14, median 1.03):
#   SIDE_BY_SIDE=1 ROUTE=each bench/ab.sh /tmp/distkv-old bin/distkv 20 "write 1 2"
#
# At the end, per workload: the median p50 and ops/s of each side, the median
# of the rounds' B/A ratios, and in how many rounds B had the lower p50.
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
SIDE_BY_SIDE=${SIDE_BY_SIDE:-0}
ROUTE=${ROUTE:-rr}
ROUTE_A=${ROUTE_A:-$ROUTE} ROUTE_B=${ROUTE_B:-$ROUTE}
A=$1 B=$2 ROUNDS=$3; shift 3
SPECS=("$@")
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/distkv-ab.XXXXXX")
KVBENCH=$TMP/kvbench
(cd "$HERE" && go build -o "$KVBENCH" ./cmd/kvbench)
EP=127.0.0.1:18000,127.0.0.1:18001,127.0.0.1:18002
EP_B=127.0.0.1:28000,127.0.0.1:28001,127.0.0.1:28002
DEV= DEV_A= DEV_B= KV_A= KV_B=
cleanup() {
	local d
	for d in $DEV $DEV_A $DEV_B; do kill -TERM "$d" 2>/dev/null || true; wait "$d" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

cpu_ticks() { # total utime+stime clock ticks of the given pids
	local t=0 p
	for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	echo "$t"
}

hz=$(getconf CLK_TCK)
RESULTS=$TMP/results

# start_cluster SIDE HTTP_PORT PEER_PORT: a fresh cluster of SIDE's binary,
# every key written once; sets DEV and pids, and KV_A or KV_B (the side's
# kvbench flags).
start_cluster() {
	local v=$1 bin=$A args=${ARGS_A:-} envs=${ENV_A:-} devargs=${DEV_ARGS_A:-} kv=${KV_ARGS_A:-} ep=127.0.0.1:$2,127.0.0.1:$(($2 + 1)),127.0.0.1:$(($2 + 2))
	[ "$v" = B ] && bin=$B args=${ARGS_B:-} envs=${ENV_B:-} devargs=${DEV_ARGS_B:-} kv=${KV_ARGS_B:-}
	kv=${kv//\{data\}/$TMP/data-$v}
	if [ "$v" = A ]; then KV_A=$kv; else KV_B=$kv; fi
	rm -rf "$TMP/data-$v"
	env $envs "$bin" dev --nodes 3 --data-dir "$TMP/data-$v" --http-port "$2" --peer-port "$3" $devargs -- --log-level warn $args >"$TMP/dev-$v.log" 2>&1 &
	DEV=$!
	for _ in $(seq 60); do
		"$KVBENCH" -target distkv -endpoints "$ep" $kv -clients 3 -ops 30 -quiet -timeout 1s 2>/dev/null | grep -q ' errors=0 ' && break
		sleep 0.5
	done
	"$KVBENCH" -target distkv -endpoints "$ep" $kv -workload load -keys 1000 -clients 16 -quiet >/dev/null
	pids=$(pgrep -P "$DEV") || { echo "ab.sh: $bin dev is not running (ports $2-$(($2 + 2))/$3-$(($3 + 2)) taken?):" >&2; cat "$TMP/dev-$v.log" >&2; exit 1; }
}

# run_spec ROUND SIDE ENDPOINTS PIDS SPEC: one workload, one result line.
run_spec() {
	local round=$1 v=$2 ep=$3 pids=$4 w c s r t0 t1 ops route=$ROUTE_A kv=$KV_A
	read -r w c s <<<"$5"
	[ "$v" = B ] && route=$ROUTE_B kv=$KV_B
	t0=$(cpu_ticks $pids)
	r=$("$KVBENCH" -target distkv -endpoints "$ep" $kv -workload "$w" -clients "$c" -route "$route" -duration "${s}s" -keys 1000 -preload=false -quiet | grep '^RESULT')
	t1=$(cpu_ticks $pids)
	ops=$(sed 's/.* ops=\([0-9]*\).*/\1/' <<<"$r")
	echo "round $round $v $w clients=$c $(grep -o 'ops_s=[0-9]*' <<<"$r") $(grep -o 'p50_ms=[0-9.]*' <<<"$r") $(grep -o 'errors=[0-9]*' <<<"$r") cpu_us_per_op=$(( (t1 - t0) * 1000000 / hz / (ops + 1) ))" | tee -a "$RESULTS"
}

if [ "$SIDE_BY_SIDE" = 1 ]; then
	start_cluster A 18000 19000; DEV_A=$DEV pids_a=$pids DEV=
	start_cluster B 28000 29000; DEV_B=$DEV pids_b=$pids DEV=
	for round in $(seq "$ROUNDS"); do
		order="A B"
		[ $((round % 2)) = 0 ] && order="B A"
		for spec in "${SPECS[@]}"; do
			for v in $order; do
				if [ "$v" = A ]; then run_spec "$round" A "$EP" "$pids_a" "$spec"; else run_spec "$round" B "$EP_B" "$pids_b" "$spec"; fi
			done
		done
	done
else
	for round in $(seq "$ROUNDS"); do
		order="A B"
		[ $((round % 2)) = 0 ] && order="B A"
		for v in $order; do
			start_cluster "$v" 18000 19000
			for spec in "${SPECS[@]}"; do
				run_spec "$round" "$v" "$EP" "$pids" "$spec"
			done
			kill -TERM "$DEV"; wait "$DEV" 2>/dev/null || true; DEV=
		done
	done
fi

# Per workload and client count: medians of each side, the median of the
# rounds' B/A ratios, and the rounds in which B's p50 was lower.
awk '
function median(list,    n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	key = $4 " " $5; side = $3; r = $2
	for (i = 6; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
	p50[key, side, r] = f["p50_ms"]; ops[key, side, r] = f["ops_s"]
	if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
	rounds[key] = rounds[key] " " r
}
END {
	print "summary (medians over rounds; B/A: median of the per-round ratios)"
	for (k = 1; k <= nk; k++) {
		key = keys[k]; pa = pb = oa = ob = rp = ro = ""; lower = n = 0
		split(rounds[key], rs, " "); delete done
		for (i in rs) {
			r = rs[i]
			if (r in done || !((key, "A", r) in p50) || !((key, "B", r) in p50)) continue
			done[r] = 1; n++
			pa = pa " " p50[key, "A", r]; pb = pb " " p50[key, "B", r]
			oa = oa " " ops[key, "A", r]; ob = ob " " ops[key, "B", r]
			if (p50[key, "A", r] > 0) rp = rp " " p50[key, "B", r] / p50[key, "A", r]
			if (ops[key, "A", r] > 0) ro = ro " " ops[key, "B", r] / ops[key, "A", r]
			if (p50[key, "B", r] + 0 < p50[key, "A", r] + 0) lower++
		}
		if (n == 0) continue
		printf "%s: p50 A %.3f B %.3f ms (B/A %.3f, B lower in %d of %d); ops/s A %d B %d (B/A %.3f)\n",
			key, median(pa), median(pb), median(rp), lower, n, median(oa), median(ob), median(ro)
	}
}' "$RESULTS"
