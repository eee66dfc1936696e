#!/usr/bin/env bash
# WebSocket relay benchmark (docs/BENCHMARKS.md). Builds release binaries, starts the
# test upstream and the app on loopback, runs the load tool for each N, stops both.
#   bash benches/ws_load.sh            # N = 1, 100, 1000
#   bash benches/ws_load.sh 10 50      # other Ns
#   bash benches/ws_load.sh idle:10000 # 10,000 idle sockets held IDLE_SECS (20) s: RSS per socket,
#                                      #   the RSS before read IDLE_SETTLE_SECS (20) s after start
#   bash benches/ws_load.sh sweep      # the largest N whose relay p99 stays under 5 ms (to 100)
#   LOADTEST_ARGS="--first-token-spread-ms 50" bash benches/ws_load.sh 2000   # more load tool flags
# Exits non-zero when a run had errors (CI runs `10 idle:20` as a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/end2end/node_modules/.bin:$HOME/.cargo/bin:$PATH"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

bash .ci/release-build >/dev/null
# What cargo-leptos gives the release build: its RUSTFLAGS (`always-erase-components`)
# and LEPTOS_OUTPUT_NAME (read by leptos at compile time). Other values and cargo
# rebuilds the release crates for the load tool, then again for the app.
LEPTOS_OUTPUT_NAME=tutor-chat RUSTFLAGS="--cfg erase_components" \
  cargo build --release --features ssr --bin loadtest >/dev/null 2>&1

APP_PORT=3300 FAKE_PORT=3301
./target/release/tutor-chat fake-upstream --port $FAKE_PORT >/dev/null &
fake=$!
data=$(mktemp -d)   # a fresh SQLite history per run (set DATABASE_URL for PostgreSQL)
# The caps would refuse most of the load (that is their job); the bench measures relay.
RUST_LOG=warn LEPTOS_SITE_ROOT=target/site TUTOR_BIND=127.0.0.1:$APP_PORT TUTOR_DATA_DIR=$data \
  TUTOR_MAX_CONCURRENT_ANSWERS=100000 TUTOR_QUESTION_BUDGET=0 \
  TUTOR_NEW_GUESTS_PER_HOUR_PER_ADDRESS=0 TUTOR_QUESTIONS_PER_MINUTE_PER_ADDRESS=0 TUTOR_ANSWERS_AT_ONCE_PER_ADDRESS=0 TUTOR_CONNECTIONS_PER_ADDRESS=0 \
  OPENAI_BASE_URL=http://127.0.0.1:$FAKE_PORT/v1 OPENAI_API_KEY=bench \
  ./target/release/tutor-chat &
app=$!
# The app is waited for before its data goes: it writes SQLite while it shuts down.
trap 'kill $app $fake 2>/dev/null || true; wait $app 2>/dev/null || true; rm -rf "$data" || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$APP_PORT/healthz >/dev/null && break; sleep 0.1; done

# CPU seconds (user+system) a process has used so far.
cpu() { awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat"; }

# One run of N students; prints the load tool's report and returns its relay p99 in
# µs on the last line (a run with errors counts as over any limit).
relay_p99_us() {
  local out
  out=$(./target/release/loadtest --app http://127.0.0.1:$APP_PORT --connections "$1" \
    --tokens 200 --delay-ms 50 --server-pid $app --deadline-secs 180 ${LOADTEST_ARGS:-}) || { echo "$out" >&2; echo 999999999; return; }
  echo "$out" | grep -E "^(relay latency|  of which in app|first token|  from connecting|errors|server RSS)" | sed "s/^/  N = $1: /" >&2
  echo "$out" | awk '/^relay latency ms/ { printf "%d\n", $7 * 1000 }'
}

# Past the knee latency grows; the sweep finds where p99 crosses 5 ms: doubling from
# 500, then halving the gap down to 100 students.
sweep() {
  local limit_us=5000 good=0 bad=0 n=500
  while [ "$bad" -eq 0 ] && [ "$n" -le 8000 ]; do
    if [ "$(relay_p99_us "$n")" -lt $limit_us ]; then good=$n; n=$((n * 2)); else bad=$n; fi
  done
  if [ "$bad" -eq 0 ]; then echo "relay p99 under 5 ms up to N = $good (the largest tried)"; return; fi
  while [ $((bad - good)) -gt 100 ]; do
    n=$(((good + bad) / 2))
    if [ "$(relay_p99_us "$n")" -lt $limit_us ]; then good=$n; else bad=$n; fi
  done
  echo "largest N with relay p99 under 5 ms: $good (over 5 ms at $bad)"
}

failed=0
for n in "${@:-1 100 1000}"; do
  for each in $n; do
    if [ "$each" = sweep ]; then
      echo "## sweep"
      sweep
      echo
      continue
    fi
    if [[ $each == idle:* ]]; then
      # Best first on a fresh process: the RSS before is then the idle app's own.
      echo "## idle sockets: ${each#idle:}"
      ./target/release/loadtest --app http://127.0.0.1:$APP_PORT --connections "${each#idle:}" \
        --idle-secs "${IDLE_SECS:-20}" --settle-secs "${IDLE_SETTLE_SECS:-20}" --ramp-ms 5000 \
        --server-pid $app --deadline-secs 600 || failed=1
      echo
      continue
    fi
    echo "## N = $each"
    app_cpu=$(cpu $app) fake_cpu=$(cpu $fake)
    /usr/bin/time -f "load tool CPU s      %U user %S system" \
      ./target/release/loadtest --app http://127.0.0.1:$APP_PORT --connections "$each" \
      --tokens 200 --delay-ms 50 --server-pid $app --deadline-secs 120 --timeline ${LOADTEST_ARGS:-} || failed=1
    echo "app CPU s            $(awk -v a="$(cpu $app)" -v b="$app_cpu" 'BEGIN { print a - b }')"
    echo "test upstream CPU s  $(awk -v a="$(cpu $fake)" -v b="$fake_cpu" 'BEGIN { print a - b }')"
    echo
  done
done
exit $failed
