#!/usr/bin/env bash
# txn.sh: transactions side by side, on this machine, in one run: distkv's
# /txn whose two keys lie in one range (txn-near) and in two ranges (txn-far,
# committed in two phases), and etcd's Txn of the same two puts.
#
#   bench/txn.sh [ROUNDS] [SECONDS]      # 3 rounds of 5 s per run by default
#
# Each round starts a fresh 3-node `distkv dev` cluster whose ranges split at
# 256 KiB (and not by load), writes KEYS (10000) keys of 1 KiB once so that
# the key space lies in ranges of a few hundred keys, waits for the ranges
# to settle, and runs kvbench txn-near and txn-far with 64 clients and with 1;
# then a fresh 3-node etcd cluster and kvbench txn-far (two keys, one Raft
# group: etcd has no ranges) with 64 and with 1. The rounds alternate which
# system runs first. Values are 256 bytes. At the end: per run, the median
# ops/s, p50 and p99 over the rounds, and the ratio to etcd.
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
KEYS=${KEYS:-10000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DISTKV_HTTP=18000 DISTKV_PEER=19000 ETCD_CLIENT=12379 ETCD_PEER=12380
log() { printf '== %s\n' "$*" >&2; }
# shellcheck source=lib.sh
. "$HERE/lib.sh"

command -v etcd >/dev/null || {
	SUDO=
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	log "installing etcd-server"
	$SUDO apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q etcd-server >&2
}
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/distkv-txn.XXXXXX")
PIDS=()
stop_all() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		pkill -KILL -P "$p" 2>/dev/null || true
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
	rm -rf "$TMP/data"
}
trap 'stop_all; rm -rf "$TMP"' EXIT
(cd "$HERE" && go build -o "$TMP/kvbench" ./cmd/kvbench)
(cd "$ROOT" && go build -o "$TMP/distkv" ./cmd/distkv)

DEP=127.0.0.1:$DISTKV_HTTP,127.0.0.1:$((DISTKV_HTTP + 1)),127.0.0.1:$((DISTKV_HTTP + 2))
EEP=127.0.0.1:$ETCD_CLIENT,127.0.0.1:$((ETCD_CLIENT + 10)),127.0.0.1:$((ETCD_CLIENT + 20))

bench() { # LABEL TARGET ENDPOINTS WORKLOAD CLIENTS
	local line
	line=$("$TMP/kvbench" -quiet -target "$2" -endpoints "$3" -workload "$4" -clients "$5" \
		-keys "$KEYS" -value-size 256 -duration "${SECS}s" -label "$1" | grep '^RESULT')
	echo "$line" >>"$TMP/results"
	log "$line"
}

run_distkv() {
	mkdir -p "$TMP/data"
	"$TMP/distkv" dev --data-dir "$TMP/data/distkv" --http-port "$DISTKV_HTTP" --peer-port "$DISTKV_PEER" \
		-- --log-level warn --range-split-bytes 256KiB --range-split-qps 0 >"$TMP/distkv.log" 2>&1 &
	PIDS+=($!)
	wait_http "http://127.0.0.1:$DISTKV_HTTP/readyz" 60
	"$TMP/kvbench" -quiet -endpoints "$DEP" -workload load -keys "$KEYS" -value-size 1024 -clients 16 >/dev/null
	"$TMP/kvbench" ranges -endpoints "$DEP" -settle 3s | head -1 >&2
	bench distkv-near distkv "$DEP" txn-near 64
	bench distkv-far distkv "$DEP" txn-far 64
	bench distkv-near-1 distkv "$DEP" txn-near 1
	bench distkv-far-1 distkv "$DEP" txn-far 1
	stop_all
}

run_etcd() {
	local cluster= i c p
	mkdir -p "$TMP/data"
	for i in 1 2 3; do cluster+="${cluster:+,}e$i=http://127.0.0.1:$((ETCD_PEER + 10 * (i - 1)))"; done
	for i in 1 2 3; do
		c=$((ETCD_CLIENT + 10 * (i - 1)))
		p=$((ETCD_PEER + 10 * (i - 1)))
		etcd --name "e$i" --data-dir "$TMP/data/etcd$i" \
			--listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
			--listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
			--initial-cluster "$cluster" --initial-cluster-state new \
			--initial-cluster-token distkv-txn --logger zap --log-level warn >"$TMP/etcd$i.log" 2>&1 &
		PIDS+=($!)
	done
	wait_http "http://127.0.0.1:$ETCD_CLIENT/health" 60
	bench etcd etcd "$EEP" txn-far 64
	bench etcd-1 etcd "$EEP" txn-far 1
	stop_all
}

for r in $(seq "$ROUNDS"); do
	log "round $r of $ROUNDS"
	if [ $((r % 2)) -eq 1 ]; then run_distkv; run_etcd; else run_etcd; run_distkv; fi
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
stat() { # LABEL FIELD
	grep " label=$1 " "$TMP/results" | while read -r line; do field "$2" "$line"; done | median
}
echo "transactions of two 256-byte puts on $KEYS keys, $ROUNDS rounds of ${SECS} s, medians (ratios to etcd at the same clients):"
printf '%-15s %10s %9s %9s %9s\n' run ops/s p50_ms p99_ms x_etcd
for l in distkv-near distkv-far etcd distkv-near-1 distkv-far-1 etcd-1; do
	ops=$(stat "$l" ops_s)
	base=etcd
	case $l in *-1) base=etcd-1 ;; esac
	printf '%-15s %10.0f %9.3f %9.3f %9.2f\n' "$l" "$ops" "$(stat "$l" p50_ms)" "$(stat "$l" p99_ms)" \
		"$(awk -v a="$ops" -v b="$(stat "$base" ops_s)" 'BEGIN { print a / b }')"
done
