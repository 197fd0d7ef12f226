#!/bin/bash
# System calls and context switches per operation for each proxy, counted with perf's
# tracepoints over 6 s in the middle of a 12 s bench run (one round), from the repository
# root:
#
#   scripts/bench-counts.sh many=64x4 zkgate,haproxy,floor ["--coalesce 0"]
#
# Counts are steadier than CPU time on a shared machine (BENCHMARKS.md, session 9).
# Needs Debian's linux-perf and root (tracepoints); HAProxy's epoll_wait is not counted
# (it calls epoll_wait, zkgate and the floor epoll_pwait).
set -euo pipefail
sc=${1:?scenario, e.g. many=64x4}
targets=${2:-zkgate,haproxy,floor}
flags=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bench" ./bench
"$tmp/bench" -rounds 1 -duration 12s -targets "direct,$targets" -scenarios "$sc" -zkgate-flags "$flags" \
	>"$tmp/out" 2>"$tmp/err" &
bench=$!
events=syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_nanosleep,syscalls:sys_enter_futex,sched:sched_switch,task-clock
prev=direct
for t in ${targets//,/ }; do
	until grep -q " $prev round 1" "$tmp/err"; do
		kill -0 $bench 2>/dev/null || { cat "$tmp/err" >&2; exit 1; }
		sleep 0.2
	done
	sleep 3 # into the middle of $t's run
	case $t in
	zkgate) pid=$(pgrep -f "zkgate serve" | head -1) ;;
	haproxy) pid=$(pgrep -x haproxy | tail -1) ;;
	floor) pid=$(pgrep -f "/floor" | head -1) ;;
	*) echo "bench-counts: no process for target $t" >&2; exit 2 ;;
	esac
	perf stat -e "$events" -p "$pid" -o "$tmp/stat.$t" -- sleep 6 >/dev/null 2>&1
	prev=$t
done
wait $bench
for t in ${targets//,/ }; do
	ops=$(grep -E "^\| [a-z]+ \([0-9x@.]+\) \| $t \|" "$tmp/out" | head -1 | awk -F'|' '{print $4}' | tr -d ' ')
	echo "$t ($ops ops/s), per operation:"
	awk -v ops="$ops" '/syscalls:|sched:|task-clock/ {gsub(",", "", $1); printf "  %-36s %8.3f\n", $2, $1 / (ops * 6)}' "$tmp/stat.$t"
done
