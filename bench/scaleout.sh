#!/usr/bin/env bash
# scaleout.sh: does distkv write faster on more nodes? For each node count
# (3, then 6), a fresh cluster of distkv containers, every node capped at the
# same CPU share (docker run --cpus), the key space loaded until it has split
# into many ranges, then 64 clients writing over the whole key space for a
# fixed time; it prints writes/s, p50 and p99 of each count and the ratio of
# the last count's writes/s to the first's (issue 19: 6 nodes >= 1.7x 3).
#
#   bench/scaleout.sh                        # 3 then 6 nodes, 0.2 CPU each, 30 s of writes
#   bench/scaleout.sh --route range --save   # writes to their range's leader; keep the result
#   bench/scaleout.sh --form join --nodes "3 6 9" --cpus 0.15
#
# See bench/README.md#scaleoutsh for every flag. The load generator (kvbench)
# runs on the host, uncapped, and reaches the containers at their addresses
# on a network of the script's own; the containers, the network, their
# volumes and the image tag it builds are removed on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

NODES="3 6"
CPUS=0.2
FORM=cluster
SPLIT=256KiB
KEYS=10000
VALUE_SIZE=256
CLIENTS=64
DURATION=30s
ROUTE=rr
SETTLE=5s
SETTLE_WAIT=120s
IMAGE=
SUBNET=
NODE_ARGS=
NODE_ENV=
SAVE=0

usage() { sed -n '2,16s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
	case $1 in
	--nodes) NODES=$2; shift ;;
	--cpus) CPUS=$2; shift ;;
	--form) FORM=$2; shift ;;
	--split-bytes) SPLIT=$2; shift ;;
	--keys) KEYS=$2; shift ;;
	--value-size) VALUE_SIZE=$2; shift ;;
	--clients) CLIENTS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--route) ROUTE=$2; shift ;;
	--settle) SETTLE=$2; shift ;;
	--settle-wait) SETTLE_WAIT=$2; shift ;;
	--image) IMAGE=$2; shift ;;
	--subnet) SUBNET=$2; shift ;;
	--node-args) NODE_ARGS=$2; shift ;;
	--node-env) NODE_ENV=$2; shift ;;
	--save) SAVE=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "scaleout.sh: unknown argument $1 (--help lists them)" >&2; exit 2 ;;
	esac
	shift
done
case $FORM in cluster | join) ;; *) echo "scaleout.sh: --form must be cluster or join" >&2; exit 2 ;; esac
case $ROUTE in rr | range) ;; *) echo "scaleout.sh: --route must be rr or range" >&2; exit 2 ;; esac
for n in $NODES; do
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 200 ]; then
		echo "scaleout.sh: --nodes takes node counts 1..200, got $n" >&2; exit 2
	fi
	if [ "$FORM" = join ] && [ "$n" -lt 3 ]; then
		echo "scaleout.sh: --form join starts 3 nodes with --cluster, so every count must be 3 or more" >&2; exit 2
	fi
done
command -v docker >/dev/null || { echo "scaleout.sh: needs the docker command and a Docker engine" >&2; exit 1; }

RUN=scaleout-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
LABEL=distkv-bench=$RUN # on every container and the network, for the cleanup
NET=$RUN
BUILT_IMAGE=
STAGE=bin/image-$RUN # make image's staging directory (.dockerignore sends bin/image* only)
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/distkv-scaleout.XXXXXX")
OUT=$TMP/report.md
STARTED=$(date -u +%s)

log() { echo "scaleout: $*" >&2; }

cleanup() {
	local rc=$? ids
	trap - EXIT INT TERM
	ids=$(docker ps -aq --filter "label=$LABEL" 2>/dev/null || true)
	if [ -n "$ids" ]; then
		if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ]; then
			for id in $ids; do
				log "last log lines of $(docker inspect --format '{{.Name}}' "$id" 2>/dev/null):"
				docker logs --tail 15 "$id" 2>&1 | sed 's/^/    /' >&2 || true
			done
		fi
		# -v: the anonymous volume of each node's /var/lib/distkv too.
		# shellcheck disable=SC2086
		docker rm -f -v $ids >/dev/null 2>&1 || true
	fi
	docker network rm "$NET" >/dev/null 2>&1 || true
	if [ -n "$BUILT_IMAGE" ]; then docker rmi "$BUILT_IMAGE" >/dev/null 2>&1 || true; fi
	rm -rf "$STAGE"
	case $rc in
	0 | 130 | 143) rm -rf "$TMP" ;;
	*) log "failed; its files are in $TMP" ;;
	esac
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the image, the load generator and the network ----

if [ -z "$IMAGE" ]; then
	IMAGE=distkv:$RUN
	log "building $IMAGE (make image)"
	BUILT_IMAGE=$IMAGE
	make --no-print-directory image IMAGE="$IMAGE" IMAGE_STAGE="$STAGE" >"$TMP/make.log" 2>&1 ||
		{ tail -20 "$TMP/make.log" >&2; exit 1; }
	rm -rf "$STAGE"
fi
(cd bench && go build -o "$TMP/kvbench" ./cmd/kvbench)
KV=$TMP/kvbench

# Nodes get fixed addresses, .11 up, so each can publish its own at start
# (--advertise-*) and the host reach it without published ports.
if [ -n "$SUBNET" ]; then
	docker network create --label "$LABEL" --subnet "$SUBNET" "$NET" >/dev/null
else
	for try in 1 2 3 4 5 6 7 8; do
		SUBNET=10.213.$((RANDOM % 230 + 20)).0/24
		if docker network create --label "$LABEL" --subnet "$SUBNET" "$NET" >/dev/null 2>"$TMP/net.err"; then break; fi
		SUBNET=
	done
	[ -n "$SUBNET" ] || { cat "$TMP/net.err" >&2; exit 1; }
fi
PREFIX=${SUBNET%.*}
ip_of() { echo "$PREFIX.$((10 + $1))"; }

# ---- measuring CPU ----

# node_cpu_ns ID...: CPU time the containers' cgroups have used, in ns
# (cgroup v1 cpuacct or v2 cpu.stat); empty where neither is found. IDs are
# full container ids.
node_cpu_ns() {
	local sum=0 id f u
	for id in "$@"; do
		u=
		for f in /sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage /sys/fs/cgroup/cpu,cpuacct/docker/$id/cpuacct.usage; do
			if [ -r "$f" ]; then u=$(cat "$f"); break; fi
		done
		if [ -z "$u" ]; then
			for f in /sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat /sys/fs/cgroup/docker/$id/cpu.stat; do
				if [ -r "$f" ]; then u=$(awk '$1 == "usage_usec" { print $2 * 1000 }' "$f"); break; fi
			done
		fi
		[ -n "$u" ] || { echo; return; }
		sum=$((sum + u))
	done
	echo "$sum"
}

# node_throttle ID...: "periods throttled" of the containers' CFS quota.
node_throttle() {
	local p=0 t=0 id f
	for id in "$@"; do
		for f in /sys/fs/cgroup/cpu/docker/$id/cpu.stat /sys/fs/cgroup/cpu,cpuacct/docker/$id/cpu.stat \
			/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat /sys/fs/cgroup/docker/$id/cpu.stat; do
			if [ -r "$f" ]; then
				read -r a b < <(awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 } END { print p + 0, t + 0 }' "$f")
				p=$((p + a)); t=$((t + b))
				break
			fi
		done
	done
	echo "$p $t"
}

# ---- one cluster ----

# start_node I N EXTRA...: node nI of a cluster of N.
start_node() {
	local i=$1 ip
	shift
	ip=$(ip_of "$i")
	local envs=() e
	for e in $NODE_ENV; do envs+=(-e "$e"); done
	# shellcheck disable=SC2086
	docker run -d --name "$RUN-n$i" --label "$LABEL" --network "$NET" --ip "$ip" --cpus "$CPUS" "${envs[@]}" \
		"$IMAGE" server --id "n$i" --cluster-token "$RUN" \
		--advertise-http "$ip:8000" --advertise-peer "$ip:9000" \
		--range-split-bytes "$SPLIT" --log-level warn $NODE_ARGS "$@" >/dev/null
}

# form N: start a cluster of N nodes as --form says and wait until every node
# is a voter.
form() {
	local n=$1 i members="" first
	first=$(ip_of 1)
	if [ "$FORM" = cluster ]; then
		for i in $(seq "$n"); do members+="${members:+,}n$i=$(ip_of "$i"):9000"; done
		for i in $(seq "$n"); do start_node "$i" --cluster "$members"; done
		for i in $(seq "$n"); do wait_http "http://$(ip_of "$i"):8000/readyz" 90; done
	else
		for i in 1 2 3; do members+="${members:+,}n$i=$(ip_of "$i"):9000"; done
		for i in 1 2 3; do start_node "$i" --cluster "$members"; done
		for i in 1 2 3; do wait_http "http://$(ip_of "$i"):8000/readyz" 90; done
		for i in $(seq 4 "$n"); do
			start_node "$i" --join "http://$first:8000"
			wait_http "http://$(ip_of "$i"):8000/readyz" 90
			# It joined as a learner; it votes once promoted (retried while a
			# change is in progress or it is still catching up).
			local deadline=$((SECONDS + 60)) code
			until code=$(curl -sS -o "$TMP/promote" -w '%{http_code}' --max-time 15 -X POST \
				"http://$first:8000/cluster/members/n$i/promote") && [ "$code" = 200 ]; do
				if [ $SECONDS -ge $deadline ]; then log "promote n$i: $code $(cat "$TMP/promote")"; return 1; fi
				sleep 0.5
			done
		done
	fi
	# Every member a voter, as n1 sees it.
	local deadline=$((SECONDS + 60))
	until curl -fsS --max-time 2 "http://$first:8000/cluster/status" 2>/dev/null >"$TMP/status" &&
		[ "$(grep -o '"role":"voter"' "$TMP/status" | wc -l)" -eq "$n" ] && ! grep -q '"leader":""' "$TMP/status"; do
		if [ $SECONDS -ge $deadline ]; then log "the cluster of $n did not show $n voters and a leader: $(cat "$TMP/status" 2>/dev/null)"; return 1; fi
		sleep 0.3
	done
}

# measure N: one cluster of N, loaded, settled, then the timed writes; prints
# one table row to $OUT and leaves the details in $TMP/nN.*.
measure() {
	local n=$1 eps="" i ids=() t0 t1 c0 c1 h0 h1 th0 th1 res lay
	log "$n nodes ($FORM, --cpus $CPUS each): starting"
	form "$n"
	for i in $(seq "$n"); do
		eps+="${eps:+,}$(ip_of "$i"):8000"
		ids+=("$RUN-n$i")
	done
	# Each split leaves its new range without a leader for a moment, and
	# writes to it meanwhile fail (503), so the load is repeated until one
	# pass has no error: a key missing after it would be written first in the
	# measured run and could split a range there.
	local pass
	for pass in 1 2 3 4 5; do
		"$KV" -target distkv -endpoints "$eps" -workload load -keys "$KEYS" -value-size "$VALUE_SIZE" \
			-clients "$CLIENTS" -quiet -label load >"$TMP/n$n.load" 2>&1 || { cat "$TMP/n$n.load" >&2; return 1; }
		res=$(grep '^RESULT' "$TMP/n$n.load")
		log "$n nodes: load pass $pass: $KEYS keys of $VALUE_SIZE B (ranges split at $SPLIT) at $(field ops_s "$res") writes/s, $(field errors "$res") failed"
		[ "$(field errors "$res")" != 0 ] || break
		log "$n nodes: load pass $pass: $(grep 'last error' "$TMP/n$n.load" | sed 's/^ *//')"
	done
	log "$n nodes: waiting until the ranges stay the same for $SETTLE"
	"$KV" ranges -endpoints "$eps" -settle "$SETTLE" -wait "$SETTLE_WAIT" >"$TMP/n$n.ranges" 2>&1 ||
		{ cat "$TMP/n$n.ranges" >&2; return 1; }
	lay=$(grep '^RANGES' "$TMP/n$n.ranges")
	log "$n nodes: $lay; $(grep '^NODE' "$TMP/n$n.ranges" | sed 's/NODE id=//' | tr '\n' ';' | sed 's/;$//')"

	local full=() kvroute=rr
	mapfile -t full < <(docker inspect --format "{{.Id}}" "${ids[@]}")
	[ "$ROUTE" = range ] && kvroute=range
	log "$n nodes: $CLIENTS clients writing for $DURATION (-route $kvroute)"
	t0=$(date +%s%N)
	c0=$(node_cpu_ns "${full[@]}")
	th0=$(node_throttle "${full[@]}")
	h0=$(host_busy)
	/usr/bin/time -f "%U %S" -o "$TMP/n$n.time" "$KV" -target distkv -endpoints "$eps" -route "$kvroute" \
		-workload write -keys "$KEYS" -value-size "$VALUE_SIZE" -clients "$CLIENTS" -duration "$DURATION" \
		-label "n$n" >"$TMP/n$n.run" 2>"$TMP/n$n.progress" || { cat "$TMP/n$n.run" "$TMP/n$n.progress" >&2; return 1; }
	h1=$(host_busy)
	th1=$(node_throttle "${full[@]}")
	c1=$(node_cpu_ns "${full[@]}")
	t1=$(date +%s%N)
	res=$(grep '^RESULT' "$TMP/n$n.run")
	# The leaders as they are after the run, and the layout once more: a
	# change during the run would make its figure a mixture.
	"$KV" ranges -endpoints "$eps" >"$TMP/n$n.after" 2>&1 || true

	read -r ku ks <"$TMP/n$n.time"
	read -r hb0 ht0 <<<"$h0"
	read -r hb1 ht1 <<<"$h1"
	read -r tp0 tt0 <<<"$th0"
	read -r tp1 tt1 <<<"$th1"
	local leads replicas after
	leads=$(grep '^NODE' "$TMP/n$n.ranges" | sed -n 's/NODE id=\([^ ]*\) replicas=[0-9]* leads=\([0-9]*\)/\1:\2/p' | tr '\n' ' ' | sed 's/ $//')
	replicas=$(grep '^NODE' "$TMP/n$n.ranges" | sed -n 's/NODE id=\([^ ]*\) replicas=\([0-9]*\).*/\1:\2/p' | tr '\n' ' ' | sed 's/ $//')
	after=$(grep '^NODE' "$TMP/n$n.after" 2>/dev/null | sed -n 's/NODE id=\([^ ]*\) replicas=[0-9]* leads=\([0-9]*\)/\1:\2/p' | tr '\n' ' ' | sed 's/ $//')
	awk -v n="$n" -v cpus="$CPUS" -v ops="$(field ops_s "$res")" -v p50="$(field p50_ms "$res")" -v p99="$(field p99_ms "$res")" \
		-v errs="$(field errors "$res")" -v ranges="$(field ranges "$lay")" -v leads="$leads" -v replicas="$replicas" -v after="$after" \
		-v c0="$c0" -v c1="$c1" -v wall=$(((t1 - t0) / 1000)) -v ku="$ku" -v ks="$ks" \
		-v hb=$((hb1 - hb0)) -v ht=$((ht1 - ht0)) -v tp=$((tp1 - tp0)) -v tt=$((tt1 - tt0)) -v cores="$(nproc)" '
	BEGIN {
		s = wall / 1e6
		nodes = (c0 == "" || c1 == "") ? -1 : (c1 - c0) / 1e9 / s
		node = nodes < 0 ? "n/a" : sprintf("%.2f of %.2f", nodes, n * cpus)
		# Far steadier than writes/s on a shared machine: with placement it
		# should stay about the same from 3 nodes to 6.
		per = (nodes < 0 || ops <= 0) ? "n/a" : sprintf("%.0f", nodes * 1e6 / ops)
		thr = tp > 0 ? sprintf("%.0f%%", 100 * tt / tp) : "n/a"
		if (after != leads) leads = leads " (after the run: " after ")"
		kv = (ku + ks) / s
		host = ht > 0 ? cores * hb / ht : 0
		# What the machine spent beyond the nodes and kvbench: other
		# sessions, Docker, the kernel (a busy host slows the capped nodes too).
		others = nodes < 0 ? "n/a" : sprintf("%.2f", host - nodes - kv)
		printf "| %d | %d | %.2f | %.2f | %d | %d | %s | %s | %s | %s | %s | %.2f | %.2f of %d | %s |\n",
			n, ops, p50, p99, errs, ranges, leads, replicas, node, per, thr, kv, host, cores, others
	}' >>"$OUT"
	log "$n nodes: $(sed -n 's/^  //p' "$TMP/n$n.run" | tr -s ' ' | tr '\n' ';')"
	log "$n nodes: removing the cluster"
	docker rm -f -v "${ids[@]}" >/dev/null
}

{
	echo "| nodes | writes/s | p50 ms | p99 ms | errors | ranges | leads per node | replicas per node | nodes' CPU, cores of their cap | nodes' CPU per write, µs | CFS periods throttled | kvbench CPU, cores | host CPU busy, cores | other processes, cores |"
	echo "|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|"
} >"$OUT"
for n in $NODES; do measure "$n"; done

first=$(sed -n '3p' "$OUT" | awk -F'|' '{ gsub(/ /, "", $3); print $3 }')
last=$(tail -1 "$OUT" | awk -F'|' '{ gsub(/ /, "", $3); print $3 }')
nfirst=$(sed -n '3p' "$OUT" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }')
nlast=$(tail -1 "$OUT" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }')
{
	echo
	if [ "$nfirst" != "$nlast" ] && [ "${first:-0}" -gt 0 ]; then
		awk -v a="$first" -v b="$last" -v na="$nfirst" -v nb="$nlast" \
			'BEGIN { printf "writes/s with %d nodes / with %d nodes: %.2fx (issue 19 asks at least 1.7x for 6 over 3)\n", nb, na, b / a }'
	fi
} >>"$OUT"

COMMIT=$(git rev-parse --short HEAD)
MACHINE="$(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), Docker $(docker version --format '{{.Server.Version}}')"
CMD="bench/scaleout.sh --nodes \"$NODES\" --cpus $CPUS --form $FORM --split-bytes $SPLIT --keys $KEYS --value-size $VALUE_SIZE --clients $CLIENTS --duration $DURATION --route $ROUTE --settle $SETTLE${NODE_ARGS:+ --node-args \"$NODE_ARGS\"}${NODE_ENV:+ --node-env \"$NODE_ENV\"}"
echo "# scaleout.sh: $(date -u '+%Y-%m-%d %H:%M') UTC, distkv at $COMMIT ($(($(date -u +%s) - STARTED)) s)"
echo
echo "- Command: \`$CMD\`"
echo "- Machine: $MACHINE; the load generator on the host, uncapped."
echo
cat "$OUT"
if [ "$SAVE" = 1 ]; then
	f=bench/results/$(date -u +%Y-%m-%d-%H%M)-$COMMIT-scaleout.md
	{
		echo "# scaleout.sh: $(date -u '+%Y-%m-%d %H:%M') UTC, distkv at $COMMIT"
		echo
		echo "- Command: \`$CMD\`"
		echo "- distkv: $COMMIT."
		echo "- Machine: $MACHINE; the load generator (kvbench) on the host, uncapped."
		echo
		cat "$OUT"
	} >"$f"
	log "wrote $f"
fi
