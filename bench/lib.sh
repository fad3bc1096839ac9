# lib.sh: helpers shared by the bench scripts (sourced; the script defines
# log MESSAGE..., which wait_http calls).

# field NAME LINE: the value of NAME=value in a kvbench RESULT or RANGES line.
field() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"; }

# wait_http URL SECONDS: until URL answers 200.
wait_http() {
	local deadline=$((SECONDS + $2))
	until curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; do
		if [ $SECONDS -ge $deadline ]; then log "no 200 from $1 within $2 s"; return 1; fi
		sleep 0.3
	done
}

# host_busy: "busy total" jiffies of the whole machine (/proc/stat).
host_busy() { awk '$1 == "cpu" { idle = $5 + $6; t = 0; for (i = 2; i <= 9; i++) t += $i; print t - idle, t; exit }' /proc/stat; }
