#!/usr/bin/env bash
# Cross-instance benchmark (#12, docs/BENCHMARKS.md): three instances on one throwaway
# PostgreSQL; N students spread over them, each with a second socket on the next
# instance that follows its answer through the bus. Reports the asker's and the
# follower's relay latency, the instances' and PostgreSQL's CPU, and the
# notifications the instances sent (from their logs).
#   bash benches/cross_instance.sh           # N = 1000
#   bash benches/cross_instance.sh 100 300   # other Ns
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/end2end/node_modules/.bin:$HOME/.cargo/bin:$PATH"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# The release build as cargo-leptos makes it (its RUSTFLAGS and output name), so the
# server binary is the one deployed and nothing is compiled twice (benches/ws_load.sh).
bash .ci/release-build >/dev/null
LEPTOS_OUTPUT_NAME=tutor-chat RUSTFLAGS="--cfg erase_components" \
  cargo build --release --features ssr --bin loadtest >/dev/null 2>&1

exec bash .ci/with-postgres bash -s -- "$@" <<'INNER'
set -euo pipefail
FAKE_PORT=3401
./target/release/tutor-chat fake-upstream --port $FAKE_PORT >/dev/null &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
apps=()
for n in 1 2 3; do
  port=$((3410 + n))
  data=$(mktemp -d)
  RUST_LOG=warn TUTOR_BIND=127.0.0.1:$port TUTOR_INSTANCE_ID=bench-$n TUTOR_DATA_DIR=$data \
    DATABASE_URL=$TUTOR_TEST_DATABASE_URL TUTOR_DB_MAX_CONNECTIONS=20 TUTOR_SESSION_SECRET=bench \
    TUTOR_MAX_CONCURRENT_ANSWERS=100000 TUTOR_QUESTION_BUDGET=0 TUTOR_MAX_CONNECTIONS_PER_USER=10 \
    TUTOR_NEW_GUESTS_PER_HOUR_PER_ADDRESS=0 TUTOR_QUESTIONS_PER_MINUTE_PER_ADDRESS=0 \
    TUTOR_ANSWERS_AT_ONCE_PER_ADDRESS=0 TUTOR_CONNECTIONS_PER_ADDRESS=0 \
    OPENAI_BASE_URL=http://127.0.0.1:$FAKE_PORT/v1 OPENAI_API_KEY=bench \
    ./target/release/tutor-chat &
  pids+=($!)
  apps+=("http://127.0.0.1:$port")
done
for app in "${apps[@]}"; do
  for _ in $(seq 200); do curl -sf "$app/healthz" >/dev/null && break; sleep 0.1; done
done
cpu() { awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
pg_cpu() { local t=0; for p in $(pgrep -x postgres); do t=$(awk -v t="$t" '{ printf "%.1f", t + ($14 + $15) / 100 }' "/proc/$p/stat"); done; echo "$t"; }
app_cpu() { local t=0; for p in "${pids[@]:1}"; do t=$(awk -v t="$t" -v c="$(cpu "$p")" 'BEGIN { printf "%.1f", t + c }'); done; echo "$t"; }
for each in "${@:-1000}"; do
  echo "## N = $each (3 instances, each student followed from the next instance)"
  a0=$(app_cpu) p0=$(pg_cpu)
  ./target/release/loadtest --apps "$(IFS=,; echo "${apps[*]}")" --follow --connections "$each" \
    --tokens 200 --delay-ms 50 --deadline-secs 180 || true
  sent=0
  for app in "${apps[@]}"; do
    n=$(curl -sf "$app/metrics" | awk '/^tutor_bus_notifications_sent_total / { print $2 }')
    sent=$((sent + ${n:-0}))
  done
  echo "notifications sent   $sent (all instances, since they started)"
  echo "instances CPU s      $(awk -v a="$(app_cpu)" -v b="$a0" 'BEGIN { print a - b }') (three together)"
  echo "PostgreSQL CPU s     $(awk -v a="$(pg_cpu)" -v b="$p0" 'BEGIN { print a - b }')"
  echo
done
INNER
