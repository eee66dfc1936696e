#!/usr/bin/env bash
# Memory a streaming conversation holds, read in the middle of the stream rather than
# at the peak (docs/BENCHMARKS.md, "What a streaming answer keeps of its request"):
# builds in alternating runs, each a fresh app and database with ws_load.sh's
# settings, jemalloc told to return freed pages at once (so RSS follows live bytes),
# 1,000 students asking 400-token answers; the app's RSS 14 s in (all streaming, the
# arrival over) minus its RSS before.
#   bash benches/midstream_rss.sh OLD_BINARY NEW_BINARY
#   QCHARS=3000 RUNS=3 LOADTEST=path/to/loadtest bash benches/midstream_rss.sh A B
set -uo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ $# -ge 1 ] || { echo "usage: midstream_rss.sh BINARY..." >&2; exit 2; }
. benches/bench_app.sh
bench_loadtest
out=$(mktemp)
students=1000
one() {
  local bin=$1 idle mid tool
  _RJEM_MALLOC_CONF="dirty_decay_ms:0,muzzy_decay_ms:0" start_bench_app "$bin"
  idle=$(awk '/VmRSS/ { print $2 }' "/proc/$app/status")
  "$LOADTEST" --app http://127.0.0.1:$APP_PORT --connections $students --tokens 400 --delay-ms 50 \
    --question-chars "${QCHARS:-0}" --deadline-secs 120 >"$out" 2>&1 &
  tool=$!
  sleep 14
  mid=$(awk '/VmRSS/ { print $2 }' "/proc/$app/status")
  wait $tool
  printf '%s: idle %d MiB, mid-stream %d MiB, %d bytes a conversation; %s\n' "$bin" $((idle / 1024)) \
    $((mid / 1024)) $(((mid - idle) * 1024 / students)) "$(grep -E '^errors' "$out" | tr -s ' ')"
  stop_bench_app
}
for _ in $(seq "${RUNS:-2}"); do
  for bin in "$@"; do one "$bin"; done
done
rm -f "$out"
