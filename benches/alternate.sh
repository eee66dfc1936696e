#!/usr/bin/env bash
# Two builds of the app in alternating runs of the relay load (docs/BENCHMARKS.md):
# this machine's noise moves by the hour, so builds are compared in turns, each run on
# a fresh process and database, with ws_load.sh's settings.
#   bash benches/alternate.sh OLD_BINARY NEW_BINARY "1000 2000" 3
#   LOADTEST_ARGS="--first-token-spread-ms 50" bash benches/alternate.sh A B 2000 3
#   LOADTEST=path/to/loadtest ...   # a load tool built already (no build here)
#   TOKENS=1 bash benches/alternate.sh A B 2000 4   # the arrival alone: 1-token answers
# Build each binary as ws_load.sh does (cargo build --release --features ssr with
# LEPTOS_OUTPUT_NAME=tutor-chat RUSTFLAGS="--cfg erase_components"), copied aside.
set -uo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ $# -eq 4 ] || { echo "usage: alternate.sh OLD NEW \"N...\" RUNS" >&2; exit 2; }
old=$1 new=$2 ns=$3 runs=$4
. benches/bench_app.sh
bench_loadtest

one_run() {
  local bin=$1 n=$2 data fake app out
  start_bench_app "$bin"
  out=$("$LOADTEST" --app http://127.0.0.1:$APP_PORT --connections "$n" \
    --tokens "${TOKENS:-200}" --delay-ms 50 --server-pid $app --deadline-secs 180 ${LOADTEST_ARGS:-} 2>&1)
  echo "$out" | grep -E "^(relay latency|  of which in app|first token|  from connecting|errors|server RSS)" | sed "s|^|$bin N=$n: |"
  awk -v who="$bin N=$n" '{ printf "%s: app CPU s %.1f\n", who, ($14 + $15) / 100 }' "/proc/$app/stat"
  stop_bench_app
}

for n in $ns; do
  for _ in $(seq "$runs"); do
    one_run "$old" "$n"
    one_run "$new" "$n"
  done
done
