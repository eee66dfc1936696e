#!/usr/bin/env bash
# The app's system calls and context switches per relayed token, counted by the
# kernel during one relay run (docs/BENCHMARKS.md). Counts, unlike seconds, barely move
# with the machine's noise, so they can tell two builds apart where CPU time cannot
# (this VM has no hardware counters for `perf stat -e instructions`).
#   bash benches/syscalls.sh BINARY N          # e.g. target/release/tutor-chat 1000
#   LOADTEST=path/to/loadtest ...               # a load tool built already (no build here)
# Needs `perf` (apt: linux-perf) and root or kernel.perf_event_paranoid <= -1 for the
# syscall tracepoints. Build BINARY as ws_load.sh does (see alternate.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ $# -eq 2 ] || { echo "usage: syscalls.sh BINARY N" >&2; exit 2; }
bin=$1 n=$2 tokens=200
. benches/bench_app.sh
bench_loadtest
start_bench_app "$bin"
trap stop_bench_app EXIT
counts=$(mktemp)
events=sendto,recvfrom,writev,write,read,futex,epoll_wait
perf stat -x, -e "$(echo $events | sed 's/\([a-z_]*\)/syscalls:sys_enter_\1/g'),context-switches" -p $app -o "$counts" &
counter=$!
"$LOADTEST" --app http://127.0.0.1:$APP_PORT --connections "$n" --tokens $tokens --delay-ms 50 \
  --server-pid $app --deadline-secs 180 | grep -E "^(relay latency|errors)"
kill -INT $counter; wait $counter
# One line per event: its count and the count per relayed token.
awk -F, -v t=$((n * tokens)) '$3 ~ /sys_enter_|context-switches/ {
  name = $3; sub(/syscalls:sys_enter_/, "", name)
  printf "%-18s %10d  %6.3f a token\n", name, $1, $1 / t }' "$counts"
awk -v t=$((n * tokens)) '{ printf "app CPU            %10.1f s  %6.1f µs a token\n", ($14 + $15) / 100, ($14 + $15) * 10000 / t }' /proc/$app/stat
rm -f "$counts"
