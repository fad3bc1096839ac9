#!/usr/bin/env bash
# Runs every native Go fuzz target in the repository for a short time each.
# Usage: scripts/fuzz.sh [seconds per target, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
status=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
    echo "fuzz ./$dir $target (${secs}s)"
    if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="${secs}s" "./$dir" >/tmp/fuzz.$$.log 2>&1; then
      cat /tmp/fuzz.$$.log
      status=1
    fi
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' internal cmd 2>/dev/null | sort)
rm -f /tmp/fuzz.$$.log
exit $status
