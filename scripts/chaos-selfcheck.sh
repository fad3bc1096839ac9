#!/usr/bin/env bash
# Shows that the chaos test's checker catches real bugs: builds distkv with
# the test hooks of internal/raftnode/testhooks.go, runs one chaos round with
# each hook on, and passes only if every round fails with a consistency
# violation (a stale linearizable read, a lost write, a read going back in
# time). A round that passes, or fails for another reason (a build error, a
# cluster that never started), fails the self-check.
# Usage: scripts/chaos-selfcheck.sh [round duration, default 30s]
set -uo pipefail
cd "$(dirname "$0")/.."
dur="${1:-30s}"
status=0
for hook in localreads earlyack; do
  log=$(mktemp)
  echo "chaos-selfcheck: a ${dur} round with DISTKV_TESTHOOK=${hook}"
  DISTKV_TAGS=testhooks DISTKV_TESTHOOK=$hook go test -count=1 -timeout 10m ./test/chaos \
    -run 'TestChaos$' -v -chaos.rounds=1 -chaos.duration="$dur" -chaos.faults=isolate-leader >"$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "chaos-selfcheck: FAILED: the checker passed a round with the ${hook} bug"
    status=1
  elif grep -Eq 'linearizable=Illegal|lost write|went back in time|is stale' "$log"; then
    echo "chaos-selfcheck: ok: ${hook} caught: $(grep -Eom1 'linearizable=Illegal|lost write[^"]*|went back in time|is stale' "$log")"
  else
    echo "chaos-selfcheck: FAILED: the round with ${hook} failed without a consistency verdict:"
    tail -40 "$log"
    status=1
  fi
  rm -f "$log"
done
exit $status
