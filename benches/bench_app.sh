# Sourced by the benchmark scripts that run builds of the app against the test
# upstream on loopback (alternate.sh, syscalls.sh): the load tool, and one app with
# its own fresh database and ws_load.sh's settings (the caps off: the benchmarks
# measure the relay, not the refusals).
APP_PORT=3300 FAKE_PORT=3301

# LOADTEST: the load tool to run; this tree's, built here, unless already set.
bench_loadtest() {
  if [ -z "${LOADTEST:-}" ]; then
    LEPTOS_OUTPUT_NAME=tutor-chat RUSTFLAGS="--cfg erase_components" \
      cargo build --release --features ssr --bin loadtest >/dev/null 2>&1
    LOADTEST=./target/release/loadtest
  fi
}

# Starts the test upstream and binary $1 on a fresh database and waits until the app
# answers; sets `fake`, `app` (pids) and `data` (its directory).
start_bench_app() {
  local bin=$1
  data=$(mktemp -d)
  "$bin" fake-upstream --port $FAKE_PORT >/dev/null 2>&1 &
  fake=$!
  RUST_LOG=warn TUTOR_BIND=127.0.0.1:$APP_PORT TUTOR_DATA_DIR=$data \
    TUTOR_MAX_CONCURRENT_ANSWERS=100000 TUTOR_QUESTION_BUDGET=0 \
    TUTOR_NEW_GUESTS_PER_HOUR_PER_ADDRESS=0 TUTOR_QUESTIONS_PER_MINUTE_PER_ADDRESS=0 TUTOR_ANSWERS_AT_ONCE_PER_ADDRESS=0 TUTOR_CONNECTIONS_PER_ADDRESS=0 \
    OPENAI_BASE_URL=http://127.0.0.1:$FAKE_PORT/v1 OPENAI_API_KEY=bench \
    "$bin" >/dev/null 2>&1 &
  app=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$APP_PORT/healthz >/dev/null && break; sleep 0.1; done
}

# Stops what start_bench_app started; the app is waited for before its data goes.
stop_bench_app() {
  kill $app $fake 2>/dev/null
  wait $app $fake 2>/dev/null
  rm -rf "$data"
}
