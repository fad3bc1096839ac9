#!/usr/bin/env bash
# idle.sh: what idle ranges cost in real distkv processes. It starts three
# `distkv server` processes on 127.0.0.1 twice: first a cluster that keeps its
# one range (the baseline), then one whose key space is loaded with a small
# --range-split-bytes until it has split into --ranges ranges (every node
# holds a replica of each). With no client traffic it then measures each
# node for --window: CPU (utime+stime, /proc/PID/stat), RSS (VmRSS), the Go
# heap and stacks in use, goroutines and peer messages sent (from /metrics).
# It prints one row per node and the cost per node and per replica (the
# loaded cluster minus the baseline, over the replicas it added).
#
#   bench/idle.sh                               # 10,000 ranges, 60 s windows
#   bench/idle.sh --ranges 2000 --window 30s --save
#   bench/idle.sh --build-timeout 10m --settle-wait 2m
#
# See bench/README.md#idlesh for every flag. Ports: HTTP 18400-18402 and
# peers 18410-18412 (loaded cluster), 18420-18422 and 18430-18432
# (baseline). Every process it started is killed and its temporary
# directory removed on exit, Ctrl-C included (kept on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

RANGES=10000
SPLIT=4KiB
VALUE_SIZE=256
KEYS=
CLIENTS=16
WINDOW=60s
BUILD_TIMEOUT=25m
SETTLE=10s
SETTLE_WAIT=5m
SAVE=0

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
	case $1 in
	--ranges) RANGES=$2; shift ;;
	--split-bytes) SPLIT=$2; shift ;;
	--value-size) VALUE_SIZE=$2; shift ;;
	--keys) KEYS=$2; shift ;;
	--clients) CLIENTS=$2; shift ;;
	--window) WINDOW=$2; shift ;;
	--build-timeout) BUILD_TIMEOUT=$2; shift ;;
	--settle) SETTLE=$2; shift ;;
	--settle-wait) SETTLE_WAIT=$2; shift ;;
	--save) SAVE=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "idle.sh: unknown argument $1 (--help lists them)" >&2; exit 2 ;;
	esac
	shift
done
# secs D: a duration of the form 90, 90s, 5m or 1h in seconds.
secs() {
	case $1 in
	*h) echo $((${1%h} * 3600)) ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}
for v in "$RANGES" "$CLIENTS" "$(secs "$WINDOW")" "$(secs "$BUILD_TIMEOUT")"; do
	[[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] || { echo "idle.sh: --ranges, --clients, --window and --build-timeout must be positive" >&2; exit 2; }
done
# About 10 keys of 16 B + 256 B per range at 4KiB splits (a range splits in
# halves once past the size, so ranges end between half and all of it).
[ -n "$KEYS" ] || KEYS=$((RANGES * 10))
WIN_S=$(secs "$WINDOW")

TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/distkv-idle.XXXXXX")
PIDS=()
STARTED=$(date -u +%s)
log() { echo "idle: $*" >&2; }

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$p" 2>/dev/null || true
	done
	case $rc in
	0 | 130 | 143) rm -rf "$TMP" ;;
	*) log "failed; its files are in $TMP" ;;
	esac
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building bin/distkv (make build) and kvbench"
nice -n 19 make --no-print-directory build >"$TMP/make.log" 2>&1 || { tail -20 "$TMP/make.log" >&2; exit 1; }
cp bin/distkv "$TMP/distkv" # a rebuild of bin/distkv meanwhile changes nothing here
(cd bench && nice -n 19 go build -o "$TMP/kvbench" ./cmd/kvbench)
BIN=$TMP/distkv
KV=$TMP/kvbench
TICK=$(getconf CLK_TCK)

# start NAME HTTP_BASE PEER_BASE SPLIT: a 3-node cluster, nodes nI on ports
# HTTP_BASE+I-1 and PEER_BASE+I-1; sets EPS (HTTP endpoints) and NPIDS.
start() {
	local name=$1 hb=$2 pb=$3 split=$4 i members=""
	EPS="" NPIDS=()
	for i in 1 2 3; do members+="${members:+,}n$i=127.0.0.1:$((pb + i - 1))"; done
	for i in 1 2 3; do
		"$BIN" server --id "n$i" --cluster "$members" --cluster-token "idle-$name" \
			--http "127.0.0.1:$((hb + i - 1))" --peer "127.0.0.1:$((pb + i - 1))" \
			--data-dir "$TMP/$name/n$i" --range-split-bytes "$split" --log-level warn \
			>"$TMP/$name-n$i.log" 2>&1 &
		PIDS+=($!) NPIDS+=($!)
		EPS+="${EPS:+,}127.0.0.1:$((hb + i - 1))"
	done
	for i in 1 2 3; do wait_http "http://127.0.0.1:$((hb + i - 1))/readyz" 60; done
}

# stop PID...: SIGTERM and wait.
stop() {
	local p
	kill "$@" 2>/dev/null || true
	for p in "$@"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$p" 2>/dev/null || true
	done
}

# look: one RANGES line and its NODE lines, flattened ("" if the look failed).
look() { "$KV" ranges -endpoints "$EPS" 2>/dev/null | tr '\n' ' ' || true; }
# leads LOOK: "n1:L n2:L n3:L".
leads() { grep -o 'NODE id=[^ ]* replicas=[0-9]* leads=[0-9]*' <<<"$1" | sed 's/NODE id=\([^ ]*\) replicas=[0-9]* leads=/\1:/' | tr '\n' ' ' | sed 's/ $//'; }

# scrape BASE: "goroutines heap_inuse stack_inuse peer_msgs_sent" from /metrics.
scrape() {
	curl -fsS --max-time 10 "http://$1/metrics" 2>/dev/null | awk '
		$1 == "go_goroutines" { g = $2 }
		$1 == "go_memstats_heap_inuse_bytes" { h = $2 }
		$1 == "go_memstats_stack_inuse_bytes" { s = $2 }
		$1 ~ /^distkv_peer_messages_sent_total/ { m += $2 }
		END { printf "%.0f %.0f %.0f %.0f\n", g, h, s, m }'
}
ticks() { local f; read -ra f < <(sed 's/.*) //' "/proc/$1/stat"); echo $((f[11] + f[12])); }
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

# measure NAME: the window on the running cluster; one row per node to
# $TMP/rows and "NAME ranges cpu% rss heap stack goroutines" per node to
# $TMP/raw.
measure() {
	local name=$1 i hb lk0 lk1 nr t0 t1 h0 h1 c0=() c1=() s0=() s1=() leads0 leads1
	hb=${EPS%%,*}
	hb=${hb##*:}
	lk0=$(look)
	nr=$(field ranges "$lk0")
	leads0=$(leads "$lk0")
	for i in 0 1 2; do s0[i]=$(scrape "127.0.0.1:$((hb + i))"); done
	log "$name: measuring $WINDOW with no traffic ($nr ranges; leads $leads0)"
	h0=$(host_busy)
	t0=$(date +%s%N)
	for i in 0 1 2; do c0[i]=$(ticks "${NPIDS[i]}"); done
	sleep "$WIN_S"
	for i in 0 1 2; do c1[i]=$(ticks "${NPIDS[i]}"); done
	t1=$(date +%s%N)
	h1=$(host_busy)
	for i in 0 1 2; do s1[i]=$(scrape "127.0.0.1:$((hb + i))"); done
	lk1=$(look)
	leads1=$(leads "$lk1")
	[ "$(field ranges "$lk1")" = "$nr" ] || log "$name: the ranges changed during the window: $nr, then $(field ranges "$lk1")"
	read -r hb0 ht0 <<<"$h0"
	read -r hb1 ht1 <<<"$h1"
	HOST_BUSY=$(awk -v b=$((hb1 - hb0)) -v t=$((ht1 - ht0)) -v c="$(nproc)" 'BEGIN { printf "%.2f", (t > 0 ? c * b / t : 0) }')
	for i in 0 1 2; do
		local g0 h0_ st0 m0 g1 hp st m1 rss
		read -r g0 h0_ st0 m0 <<<"${s0[i]}"
		read -r g1 hp st m1 <<<"${s1[i]}"
		rss=$(rss_kib "${NPIDS[i]}")
		awk -v name="$name" -v n="n$((i + 1))" -v nr="$nr" -v c=$((c1[i] - c0[i])) -v tick="$TICK" -v w=$(((t1 - t0) / 1000)) \
			-v rss="$rss" -v hp="$hp" -v st="$st" -v g="$g1" -v m=$((m1 - m0)) -v l0="$leads0" -v l1="$leads1" '
		function lead(s, node,   a, k, p) { k = split(s, a, " "); for (p = 1; p <= k; p++) if (index(a[p], node ":") == 1) return substr(a[p], length(node) + 2); return "?" }
		BEGIN {
			s = w / 1e6
			cpu = 100 * c / tick / s
			la = lead(l0, n); lb = lead(l1, n)
			printf "| %s | %d | %s | %.2f | %.0f | %.0f | %.1f | %d | %.1f | %s |\n", name, nr, n, cpu, rss / 1024, hp / 1048576, st / 1048576, g, m / s, la == lb ? la : la " → " lb
			printf "%s %d %.4f %d %.0f %.0f %d\n", name, nr, cpu, rss, hp, st, g >> "/dev/stderr"
		}' >>"$TMP/rows" 2>>"$TMP/raw"
	done
	log "$name: $(grep "^| $name " "$TMP/rows" | awk -F'|' '{ printf "%s %s%% ", $4, $5 }')of a core; host busy $HOST_BUSY of $(nproc) cores"
	echo "$name $HOST_BUSY $leads0 / $leads1" >>"$TMP/host"
}

# ---- the baseline: one range ----

log "baseline: 3 nodes, one range (HTTP 18420-18422)"
start base 18420 18430 64MiB
"$KV" ranges -endpoints "$EPS" -settle "$SETTLE" -wait "$SETTLE_WAIT" >"$TMP/base.ranges" 2>&1 || { cat "$TMP/base.ranges" >&2; exit 1; }
measure base
stop "${NPIDS[@]}"

# ---- the loaded cluster ----

log "loaded: 3 nodes, --range-split-bytes $SPLIT (HTTP 18400-18402); loading until $RANGES ranges or $BUILD_TIMEOUT"
start main 18400 18410 "$SPLIT"
BUILD_DEADLINE=$((SECONDS + $(secs "$BUILD_TIMEOUT")))
BUILD_START=$SECONDS
keys=$KEYS
pass=0
REACHED=0
NOTE=
while :; do
	pass=$((pass + 1))
	log "load pass $pass: keys 0..$((keys - 1)), $VALUE_SIZE B values, $CLIENTS clients (nice -n 19)"
	nice -n 19 "$KV" -target distkv -endpoints "$EPS" -workload load -keys "$keys" -value-size "$VALUE_SIZE" \
		-clients "$CLIENTS" -quiet -label "pass$pass" >"$TMP/load$pass.out" 2>&1 &
	kvp=$!
	PIDS+=("$kvp")
	last=-1 same=0 next=$((SECONDS + 30))
	# While it loads and afterwards, until the count of ranges stays the
	# same for 20 s (the splits it caused are done) or the time is up.
	while :; do
		sleep 5
		lk=$(look)
		n=$(field ranges "$lk")
		n=${n:-$last}
		if [ "$n" = "$last" ]; then same=$((same + 5)); else same=0 last=$n; fi
		running=0
		kill -0 "$kvp" 2>/dev/null && running=1
		if [ $SECONDS -ge $next ]; then
			log "  $((SECONDS - BUILD_START)) s: $n ranges, leads $(leads "$lk")$([ $running = 1 ] && echo ", loading")"
			next=$((SECONDS + 30))
		fi
		if [ $SECONDS -ge $BUILD_DEADLINE ]; then
			[ $running = 1 ] && { kill "$kvp" 2>/dev/null || true; NOTE="the load was stopped at the build timeout"; }
			break
		fi
		[ $running = 0 ] && [ $same -ge 20 ] && break
	done
	wait "$kvp" 2>/dev/null || true
	res=$(grep '^RESULT' "$TMP/load$pass.out" || true)
	[ -n "$res" ] && log "load pass $pass: $(field ops "$res") writes at $(field ops_s "$res")/s, $(field errors "$res") failed"
	REACHED=$last
	if [ "${REACHED:-0}" -ge "$RANGES" ] || [ $SECONDS -ge $BUILD_DEADLINE ]; then break; fi
	# More keys, in proportion (the first keys are written again: the load
	# workload always starts at key 0).
	keys=$(awk -v k="$keys" -v r="$RANGES" -v n="$REACHED" 'BEGIN { printf "%d", k * r / (n > 0 ? n : 1) * 1.05 + 1 }')
done
BUILD_S=$((SECONDS - BUILD_START))
log "loaded: $REACHED ranges after $BUILD_S s; waiting until ranges and leaders stay the same for $SETTLE (at most $SETTLE_WAIT)"
if "$KV" ranges -endpoints "$EPS" -settle "$SETTLE" -wait "$SETTLE_WAIT" >"$TMP/main.ranges" 2>&1; then
	SETTLED="settled: $(grep '^RANGES' "$TMP/main.ranges" | sed 's/^RANGES //')"
else
	SETTLED="not settled within $SETTLE_WAIT ($(tail -1 "$TMP/main.ranges")); measured anyway"
fi
log "$SETTLED"
measure main
stop "${NPIDS[@]}"

# ---- the report ----

COMMIT=$(git rev-parse --short HEAD)
DIRTY=$(git status --porcelain --untracked-files=no -- . ':(exclude)bench' ':(exclude)docs' | awk '{ print $2 }' | tr '\n' ' ' | sed 's/ $//')
MACHINE="$(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '$1 == "MemTotal:" { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
CMD="bench/idle.sh --ranges $RANGES --split-bytes $SPLIT --value-size $VALUE_SIZE --keys $KEYS --clients $CLIENTS --window $WINDOW --build-timeout $BUILD_TIMEOUT --settle $SETTLE --settle-wait $SETTLE_WAIT"
OUT=$TMP/report.md
{
	echo "- Command: \`$CMD\`"
	echo "- distkv: $COMMIT${DIRTY:+ with uncommitted changes to $DIRTY}."
	echo "- Machine: $MACHINE; all three nodes of a cluster on it, on loopback."
	echo "- Loaded cluster: $REACHED ranges after $BUILD_S s of loading ($pass pass(es), last one keys 0..$((keys - 1)))${NOTE:+; $NOTE}; $SETTLED."
	echo
	echo "| cluster | ranges | node | CPU, % of a core | RSS MiB | Go heap in use MiB | stacks MiB | goroutines | peer messages sent/s | leads |"
	echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"
	cat "$TMP/rows"
	echo
	awk -v host="$(tr '\n' ';' <"$TMP/host")" '
		{ n[$1]++; r[$1] = $2; cpu[$1] += $3; rss[$1] += $4; hp[$1] += $5; st[$1] += $6; g[$1] += $7 }
		END {
			d = r["main"] - r["base"]
			printf "Per node, mean of 3: %.2f%% of a core with %d ranges, %.2f%% with 1; RSS %.0f MiB and %.0f MiB.\n",
				cpu["main"] / 3, r["main"], cpu["base"] / 3, rss["main"] / 3 / 1024, rss["base"] / 3 / 1024
			if (d > 0)
				printf "Per replica (loaded minus baseline, over the %d replicas each node added): %.1f KiB RSS, %.1f KiB Go heap, %.1f KiB stacks, %.2f goroutines; %.2f%% of a core per 1,000 replicas.\n",
					d, (rss["main"] - rss["base"]) / 3 / d, (hp["main"] - hp["base"]) / 3 / 1024 / d, (st["main"] - st["base"]) / 3 / 1024 / d,
					(g["main"] - g["base"]) / 3 / d, (cpu["main"] - cpu["base"]) / 3 / d * 1000
			k = split(host, a, ";")
			for (i = 1; i <= k; i++) if (a[i] != "") { split(a[i], b, " "); printf "Whole machine busy during the %s window: %s cores (other work on it included).\n", b[1], b[2] }
		}' "$TMP/raw"
	echo
	echo "No range quiescence count is shown: neither /cluster/ranges nor /metrics reports it; peer messages sent/s is the sign (a range that ticks sends heartbeats every tick)."
} >"$OUT"

echo "# idle.sh: $(date -u '+%Y-%m-%d %H:%M') UTC, distkv at $COMMIT ($(($(date -u +%s) - STARTED)) s)"
echo
cat "$OUT"
if [ "$SAVE" = 1 ]; then
	f=bench/results/$(date -u +%Y-%m-%d-%H%M)-$COMMIT-idle.md
	{
		echo "# idle.sh: $(date -u '+%Y-%m-%d %H:%M') UTC, distkv at $COMMIT"
		echo
		cat "$OUT"
	} >"$f"
	log "wrote $f"
fi
