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
if [ -z "${LOADTEST:-}" ]; then
  LEPTOS_OUTPUT_NAME=tutor-chat RUSTFLAGS="--cfg erase_components" \
    cargo build --release --features ssr --bin loadtest >/dev/null 2>&1
  LOADTEST=./target/release/loadtest
fi
APP_PORT=3300 FAKE_PORT=3301
data=$(mktemp -d)
"$bin" fake-upstream --port $FAKE_PORT >/dev/null 2>&1 &
fake=$!
RUST_LOG=warn TUTOR_BIND=127.0.0.1:$APP_PORT TUTOR_DATA_DIR=$data \
  TUTOR_MAX_CONCURRENT_ANSWERS=100000 TUTOR_QUESTION_BUDGET=0 \
  TUTOR_NEW_GUESTS_PER_HOUR_PER_ADDRESS=0 TUTOR_QUESTIONS_PER_MINUTE_PER_ADDRESS=0 TUTOR_ANSWERS_AT_ONCE_PER_ADDRESS=0 TUTOR_CONNECTIONS_PER_ADDRESS=0 \
  OPENAI_BASE_URL=http://127.0.0.1:$FAKE_PORT/v1 OPENAI_API_KEY=bench \
  "$bin" >/dev/null 2>&1 &
app=$!
trap 'kill $app $fake 2>/dev/null; wait $app 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$APP_PORT/healthz >/dev/null && break; sleep 0.1; done
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
