#!/usr/bin/env bash
# compare.sh: the same closed-loop workloads against a 3-node distkv, a 3-node
# etcd, a Redis with appendfsync always, kvbench's do-nothing HTTP server and
# kvbench's replication floor (the least work a write durable on two of three
# processes takes; writes only), all on this machine and running at once,
# loaded one at a time, each workload on every system back to back; prints one
# table with distkv's ratio to each. See bench/README.md.
#
#   bench/compare.sh [--duration 10s] [--clients 64] [--value-size 256]
#                    [--keys 1000] [--targets "null floor distkv etcd redis"]
#                    [--workloads "write read stale mixed95 write1"]
#                    [--rounds 1] [--memory-keys 1000000] [--tmp DIR]
#                    [--keep-logs]
set -euo pipefail

DURATION=10s
CLIENTS=64
VALUE_SIZE=256
KEYS=1000
TARGETS="null floor distkv etcd redis"
WORKLOADS="write read stale mixed95 write1"
MEMORY_KEYS=1000000
ROUNDS=1
TMP_PARENT=${TMPDIR:-/var/tmp}
KEEP_LOGS=0

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
	case "$1" in
	--duration) DURATION=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--value-size) VALUE_SIZE=$2; shift 2 ;;
	--keys) KEYS=$2; shift 2 ;;
	--targets) TARGETS=$2; shift 2 ;;
	--workloads) WORKLOADS=$2; shift 2 ;;
	--memory-keys) MEMORY_KEYS=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--tmp) TMP_PARENT=$2; shift 2 ;;
	--keep-logs) KEEP_LOGS=1; shift ;;
	-h | --help) usage 0 ;;
	*) echo "compare.sh: unknown argument $1" >&2; usage 2 ;;
	esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

# Ports, away from distkv dev's defaults so a running dev cluster is not hit.
NULL_ADDR=127.0.0.1:18100
FLOOR_ADDR=127.0.0.1:18200
FLOOR_REPLICA=18301 # 18301, 18302
DISTKV_HTTP=18000 # 18000-18002
DISTKV_PEER=19000 # 19000-19002
ETCD_CLIENT=12379 # 12379, 12389, 12399
ETCD_PEER=12380   # 12380, 12390, 12400
REDIS_PORT=16379

# GODEBUG of distkv's nodes: empty (the default) runs them as a plain
# `distkv dev` does; DISTKV_GODEBUG=schedtrace=2147483647 with the opt-in
# speed setting of docs/operations.md. The do-nothing server and the floor
# are Go servers too and run with the same GODEBUG unless BASELINE_GODEBUG
# says otherwise, so that a runtime setting any Go server could use does not
# count as distkv's own gain.
DISTKV_GODEBUG=${DISTKV_GODEBUG-}
BASELINE_GODEBUG=${BASELINE_GODEBUG-$DISTKV_GODEBUG}

log() { printf '== %s\n' "$*" >&2; }

# --- install what is missing -------------------------------------------------
need_pkgs=()
case " $TARGETS " in *" etcd "*) command -v etcd >/dev/null || need_pkgs+=(etcd-server) ;; esac
case " $TARGETS " in *" redis "*) command -v redis-server >/dev/null || need_pkgs+=(redis-server) ;; esac
if [ ${#need_pkgs[@]} -gt 0 ]; then
	SUDO=
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	log "installing ${need_pkgs[*]}"
	$SUDO apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_pkgs[@]}" >&2
fi
command -v go >/dev/null || { echo "compare.sh: needs Go" >&2; exit 1; }

# --- temp dir, cleanup -------------------------------------------------------
mkdir -p "$TMP_PARENT"
TMP=$(mktemp -d "$TMP_PARENT/distkv-bench.XXXXXX")
PIDS=()
cleanup() {
	local rc=$?
	stop_all
	if [ "$KEEP_LOGS" = 1 ] || [ $rc -ne 0 ]; then
		rm -rf "$TMP/data"
		log "logs kept in $TMP"
	else
		rm -rf "$TMP"
	fi
	exit $rc
}
BENCH_PID=
stop_all() {
	local p
	if [ -n "$BENCH_PID" ]; then
		kill -TERM "$BENCH_PID" 2>/dev/null || true
		wait "$BENCH_PID" 2>/dev/null || true
		BENCH_PID=
	fi
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		# wait up to ~10 s, then SIGKILL the process (and its children, for distkv dev)
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$p" 2>/dev/null; then
			pkill -KILL -P "$p" 2>/dev/null || true
			kill -KILL "$p" 2>/dev/null || true
		fi
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, logging to $TMP/NAME.log. Not
# in a session of its own: with the kernel's autogroup scheduling (on by
# default), a new session is a scheduling group that gets no more CPU than
# kvbench's, however many processes it holds, which would cap a 3-process
# cluster at half the machine while a 1-process server is not capped at all.
start() {
	local name=$1; shift
	"$@" >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
}

# --- build -------------------------------------------------------------------
log "building kvbench and distkv in $TMP"
(cd "$HERE" && go build -o "$TMP/kvbench" ./cmd/kvbench)
(cd "$ROOT" && go build -o "$TMP/distkv" ./cmd/distkv)
KVBENCH=$TMP/kvbench
RESULTS=$TMP/results.txt
: >"$RESULTS"

# client_of TARGET: kvbench's -target for TARGET (the floor speaks distkv's
# HTTP API, as the do-nothing server does).
client_of() { if [ "$1" = floor ]; then echo null; else echo "$1"; fi; }

# wait_ready TARGET ENDPOINTS: one successful write through every endpoint.
wait_ready() {
	local target=$1 endpoints=$2 ep
	for ep in ${endpoints//,/ }; do
		for i in $(seq 120); do
			if "$KVBENCH" -target "$(client_of "$target")" -endpoints "$ep" -clients 1 -ops 1 \
				-workload write -quiet -timeout 2s >/dev/null 2>&1; then
				continue 2
			fi
			[ "$i" -eq 120 ] && { echo "compare.sh: $target at $ep not ready; see $TMP/*.log" >&2; exit 1; }
			sleep 0.5
		done
	done
	# Then until one second of light writes through all endpoints has no
	# error, so a leader election just after start-up is not measured.
	for i in $(seq 20); do
		if "$KVBENCH" -target "$(client_of "$target")" -endpoints "$endpoints" -clients 3 -duration 1s \
			-workload write -quiet -timeout 2s 2>/dev/null | grep -q '^RESULT.* errors=0 '; then
			return 0
		fi
		sleep 0.5
	done
	echo "compare.sh: $target keeps failing writes after start-up; see $TMP/*.log" >&2
	exit 1
}

# bench TARGET ENDPOINTS WORKLOAD: one run of WORKLOAD. write1 is writes with
# a single client whose requests take the endpoints in turn (as etcd's client
# balancer does, so the leader serves a third of them either way); the others
# use --clients clients.
bench() {
	local target=$1 endpoints=$2 w=$3
	local -a common=(-target "$(client_of "$target")" -label "$target" -endpoints "$endpoints" -duration "$DURATION"
		-keys "$KEYS" -value-size "$VALUE_SIZE" -conns 4)
	case $w in
	write1) run_kvbench "$target" "${common[@]}" -workload write -clients 1 -route each ;;
	*) run_kvbench "$target" "${common[@]}" -workload "$w" -clients "$CLIENTS" ;;
	esac
}

# run_kvbench TARGET ARGS...: one run, output to $TMP/TARGET.out, progress on
# stderr. In the background + wait so that a signal stops the script at once.
run_kvbench() {
	local target=$1; shift
	"$KVBENCH" "$@" >>"$TMP/$target.out" &
	BENCH_PID=$!
	wait "$BENCH_PID"
	BENCH_PID=
	grep '^RESULT' "$TMP/$target.out" | tail -1 | sed "s/\$/ round=${round:-1}/" >>"$RESULTS"
}

# start_target TARGET DATADIR: starts TARGET with its data under DATADIR and
# sets eps to its endpoints.
start_target() {
	local target=$1 data=$2
	mkdir -p "$data"
	case $target in
	null)
		log "null: kvbench serve-null on $NULL_ADDR (GODEBUG=$BASELINE_GODEBUG)"
		start null env GODEBUG="$BASELINE_GODEBUG" "$KVBENCH" serve-null --addr "$NULL_ADDR" --value-size "$VALUE_SIZE"
		eps=$NULL_ADDR
		;;
	floor)
		log "floor: kvbench serve-floor, primary on $FLOOR_ADDR, replicas on $FLOOR_REPLICA-$((FLOOR_REPLICA + 1)), 1 ack (GODEBUG=$BASELINE_GODEBUG)"
		start floor-r1 env GODEBUG="$BASELINE_GODEBUG" "$KVBENCH" serve-floor -role replica -listen "127.0.0.1:$FLOOR_REPLICA" -dir "$data/floor/r1"
		start floor-r2 env GODEBUG="$BASELINE_GODEBUG" "$KVBENCH" serve-floor -role replica -listen "127.0.0.1:$((FLOOR_REPLICA + 1))" -dir "$data/floor/r2"
		start floor env GODEBUG="$BASELINE_GODEBUG" "$KVBENCH" serve-floor -role primary -addr "$FLOOR_ADDR" -dir "$data/floor/p" -acks 1 \
			-replicas "127.0.0.1:$FLOOR_REPLICA,127.0.0.1:$((FLOOR_REPLICA + 1))"
		eps=$FLOOR_ADDR
		;;
	distkv)
		log "distkv: 3 nodes, HTTP $DISTKV_HTTP-$((DISTKV_HTTP + 2)) (GODEBUG=$DISTKV_GODEBUG)"
		start distkv env GODEBUG="$DISTKV_GODEBUG" "$TMP/distkv" dev --data-dir "$data/distkv" \
			--http-port "$DISTKV_HTTP" --peer-port "$DISTKV_PEER" -- --log-level warn
		eps=127.0.0.1:$DISTKV_HTTP,127.0.0.1:$((DISTKV_HTTP + 1)),127.0.0.1:$((DISTKV_HTTP + 2))
		;;
	etcd)
		log "etcd: 3 nodes, clients $ETCD_CLIENT,$((ETCD_CLIENT + 10)),$((ETCD_CLIENT + 20))"
		cluster=
		for i in 1 2 3; do
			cluster+="${cluster:+,}e$i=http://127.0.0.1:$((ETCD_PEER + 10 * (i - 1)))"
		done
		eps=
		for i in 1 2 3; do
			c=$((ETCD_CLIENT + 10 * (i - 1)))
			p=$((ETCD_PEER + 10 * (i - 1)))
			eps+="${eps:+,}127.0.0.1:$c"
			start "etcd$i" etcd --name "e$i" --data-dir "$data/etcd$i" \
				--listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
				--listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
				--initial-cluster "$cluster" --initial-cluster-state new \
				--initial-cluster-token distkv-bench --logger zap --log-level warn
		done
		;;
	redis)
		log "redis: 127.0.0.1:$REDIS_PORT, appendonly yes, appendfsync always"
		mkdir -p "$data/redis"
		start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$data/redis" \
			--appendonly yes --appendfsync always --save "" --daemonize no --protected-mode no
		eps=127.0.0.1:$REDIS_PORT
		;;
	*) echo "compare.sh: unknown target $target" >&2; exit 2 ;;
	esac
}

# server_pids TARGET: the server processes started so far (for distkv, the
# nodes that distkv dev started rather than dev itself).
server_pids() {
	local p
	for p in "${PIDS[@]}"; do
		if [ "$1" = distkv ]; then pgrep -P "$p"; else echo "$p"; fi
	done
}

# rss_kib PID: resident set size in KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Every system runs for the whole comparison (idle ones cost little: their
# heartbeats), and each workload runs on each system in turn, so the runs a
# ratio compares are seconds apart, not minutes: on a shared machine whose
# load drifts, that matters more than anything else here. With --rounds N,
# the whole sequence runs N times, each round starting one system later, and
# the table shows medians.
mkdir -p "$TMP/data"
declare -A EPS
for target in $TARGETS; do
	start_target "$target" "$TMP/data"
	EPS[$target]=$eps
done
for target in $TARGETS; do
	wait_ready "$target" "${EPS[$target]}"
done
read -r -a TLIST <<<"$TARGETS"
for round in $(seq "$ROUNDS"); do
	for w in $WORKLOADS; do
		for i in "${!TLIST[@]}"; do
			target=${TLIST[$(((i + round - 1) % ${#TLIST[@]}))]}
			# The floor measures replicated writes; its reads are a map lookup.
			[ "$target" = floor ] && [ "$w" != write ] && [ "$w" != write1 ] && continue
			log "round $round/$ROUNDS: $w on $target"
			bench "$target" "${EPS[$target]}" "$w"
		done
	done
done
for target in $TARGETS; do
	grep -hs 'last error' "$TMP/$target.out" | sed "s/^ */== $target: /" >&2 || true
done
stop_all

# --- resident memory with --memory-keys keys ----------------------------------
# Each system fresh (no history from the runs above), loaded with every key
# once (16-byte keys, --value-size values), then left 5 s to settle.
MEMORY=$TMP/memory.txt
: >"$MEMORY"
if [ "$MEMORY_KEYS" -gt 0 ]; then
	for target in $TARGETS; do
		[ "$target" = null ] || [ "$target" = floor ] && continue
		start_target "$target" "$TMP/mem"
		wait_ready "$target" "$eps"
		log "$target: loading $MEMORY_KEYS keys"
		"$KVBENCH" -target "$target" -endpoints "$eps" -workload load -keys "$MEMORY_KEYS" \
			-value-size "$VALUE_SIZE" -clients 128 -conns 4 -quiet >>"$TMP/$target.load.out"
		sleep 5
		max=0 sum=0 n=0
		for p in $(server_pids "$target"); do
			r=$(rss_kib "$p")
			sum=$((sum + r)); n=$((n + 1))
			[ "$r" -gt "$max" ] && max=$r
		done
		disk=$(du -sk "$TMP/mem" | cut -f1)
		load=$(grep '^RESULT' "$TMP/$target.load.out" | tail -1 | sed 's/.*ops_s=\([0-9]*\).*/\1/')
		echo "MEM label=$target keys=$MEMORY_KEYS procs=$n max_rss_kib=$max sum_rss_kib=$sum disk_kib=$disk load_ops_s=$load" | tee -a "$MEMORY" >&2
		stop_all
		rm -rf "$TMP/mem"
	done
fi

# --- the table ----------------------------------------------------------------
# RESULT_AWK: what both tables' awk programs share: workload names, and kv,
# which splits a RESULT line's key=value fields into f.
RESULT_AWK='
BEGIN {
	name["write"] = "writes"; name["read"] = "linearizable reads"; name["stale"] = "stale reads"
	name["mixed95"] = "95% lin. reads + 5% writes"; name["mixed50"] = "50% lin. reads + 50% writes"
}
function kv(s,   a, i, n, p) { n = split(s, a, " "); for (i = 2; i <= n; i++) { split(a[i], p, "="); f[p[1]] = p[2] } }
'
log "machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
echo
rounds_note=
[ "$ROUNDS" -gt 1 ] && rounds_note=", medians of $ROUNDS rounds"
echo "distkv vs etcd, Redis, the do-nothing server and the replication floor: $VALUE_SIZE-byte values, $KEYS keys, $DURATION per run$rounds_note"
echo
awk -v targets="$TARGETS" "$RESULT_AWK"'
# median of the values "v1 v2 ..." in s
function median(s,   a, n, i, j, x) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
	return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^RESULT/ {
	delete f; kv($0)
	w = name[f["workload"]] ", " f["clients"] " client" (f["clients"] == 1 ? "" : "s")
	if (!(w in seen)) { seen[w] = 1; order[++nw] = w }
	k = w SUBSEP f["label"]
	ops_l[k] = ops_l[k] " " f["ops_s"]; p50_l[k] = p50_l[k] " " f["p50_ms"]; p99_l[k] = p99_l[k] " " f["p99_ms"]
	err[k] += f["errors"]
}
END {
	for (k in ops_l) { ops[k] = median(ops_l[k]); p50[k] = median(p50_l[k]); p99[k] = median(p99_l[k]) }
	nt = split(targets, t, " ")
	print "| workload | target | ops/s | p50 ms | p99 ms | errors | distkv ops/s ÷ target | distkv p50 ÷ target |"
	print "|---|---|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= nw; i++) {
		w = order[i]
		for (j = 1; j <= nt; j++) {
			x = t[j]
			if (!((w, x) in ops)) continue
			r1 = r2 = "—"
			if (x != "distkv" && (w, "distkv") in ops) {
				if (ops[w, x] > 0) r1 = sprintf("%.2fx", ops[w, "distkv"] / ops[w, x])
				if (p50[w, x] > 0) r2 = sprintf("%.2fx", p50[w, "distkv"] / p50[w, x])
			}
			printf "| %s | %s | %d | %.2f | %.2f | %d | %s | %s |\n", w, x, ops[w, x], p50[w, x], p99[w, x], err[w, x], r1, r2
		}
	}
}' "$RESULTS"

# Each round runs a workload on every system seconds apart, so a round's own
# ratios are the fairest single comparisons; the medians above hide how far
# they spread, which is what tells a target met from one at the edge.
if [ "$ROUNDS" -gt 1 ]; then
	echo
	echo "distkv's ops/s ratio to each system in each round (round 1, 2, ...); with 1 client, its p50 ratio (distkv p50 ÷ target p50)"
	echo
	awk -v targets="$TARGETS" "$RESULT_AWK"'
/^RESULT/ {
	delete f; kv($0)
	w = name[f["workload"]] ", " f["clients"] " client" (f["clients"] == 1 ? "" : "s")
	if (!(w in seen)) { seen[w] = 1; order[++nw] = w }
	# One client: the target is on latency, so the ratio is of p50s.
	ops[w, f["label"], f["round"]] = f["clients"] == 1 ? f["p50_ms"] : f["ops_s"]
	if (f["round"] > nr) nr = f["round"]
}
END {
	nt = split(targets, t, " ")
	printf "| workload |"; for (j = 1; j <= nt; j++) if (t[j] != "distkv") printf " distkv ÷ %s |", t[j]; print ""
	printf "|---|"; for (j = 1; j <= nt; j++) if (t[j] != "distkv") printf "---|"; print ""
	for (i = 1; i <= nw; i++) {
		w = order[i]; printf "| %s |", w
		for (j = 1; j <= nt; j++) {
			x = t[j]; if (x == "distkv") continue
			cell = ""
			for (r = 1; r <= nr; r++) {
				if (!((w, x, r) in ops) || !((w, "distkv", r) in ops) || ops[w, x, r] <= 0) continue
				cell = cell (cell == "" ? "" : ", ") sprintf("%.2f", ops[w, "distkv", r] / ops[w, x, r])
			}
			printf " %s |", (cell == "" ? "—" : cell)
		}
		print ""
	}
}' "$RESULTS"
fi

if [ -s "$MEMORY" ]; then
	echo
	echo "Resident memory after loading $MEMORY_KEYS keys (16 B) with $VALUE_SIZE-byte values into a fresh system"
	echo
	awk '
function kv(s,   a, i, n, p) { n = split(s, a, " "); for (i = 2; i <= n; i++) { split(a[i], p, "="); f[p[1]] = p[2] } }
/^MEM/ { delete f; kv($0); t[++n] = f["label"]; mx[f["label"]] = f["max_rss_kib"]; sm[f["label"]] = f["sum_rss_kib"]; pr[f["label"]] = f["procs"]; dk[f["label"]] = f["disk_kib"]; ld[f["label"]] = f["load_ops_s"] }
END {
	print "| target | processes | RSS per process, max MiB | RSS all processes MiB | data on disk MiB | load writes/s | distkv max RSS ÷ target |"
	print "|---|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= n; i++) {
		x = t[i]; r = "—"
		if (x != "distkv" && ("distkv" in mx) && mx[x] > 0) r = sprintf("%.2fx", mx["distkv"] / mx[x])
		printf "| %s | %d | %.0f | %.0f | %.0f | %d | %s |\n", x, pr[x], mx[x] / 1024, sm[x] / 1024, dk[x] / 1024, ld[x], r
	}
}' "$MEMORY"
fi
