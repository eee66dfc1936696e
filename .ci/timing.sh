# Sourced by .ci/setup and .ci/test. `timed NAME COMMAND...` runs one stage and prints
# its wall-clock time as `[time] NAME: N s`; at exit, also after a failure, the script
# prints every stage's time and the total, so a slow CI run says where its minutes
# went. The command runs as it would alone: under `set -e` a failure still ends the
# script (the summary then names the stage that failed). TIMING_TAG names the script.

timing_names=()
timing_secs=()
timing_tag=${TIMING_TAG:-run}
timing_start=$SECONDS
timing_current=""
timing_current_start=0

timed() {
  timing_current=$1
  timing_current_start=$SECONDS
  shift
  "$@"
  timing_names+=("$timing_current")
  timing_secs+=($((SECONDS - timing_current_start)))
  printf '[time] %s: %d s\n' "$timing_current" $((SECONDS - timing_current_start))
  timing_current=""
}

# Called by the EXIT trap, or by a script's own trap with the exit status.
timing_summary() {
  local status=${1:-$?} i
  [ ${#timing_names[@]} -gt 0 ] || [ -n "$timing_current" ] || return $status
  printf '\n[time] %s summary\n' "$timing_tag"
  for i in "${!timing_names[@]}"; do
    printf '[time]   %-46s %5d s\n' "${timing_names[$i]}" "${timing_secs[$i]}"
  done
  if [ -n "$timing_current" ]; then
    printf '[time]   %-46s %5d s (failed, exit %d)\n' "$timing_current" $((SECONDS - timing_current_start)) $status
  fi
  printf '[time]   %-46s %5d s (%d min)\n' total $((SECONDS - timing_start)) $(((SECONDS - timing_start + 30) / 60))
  # A nearly full disk fails tests far from the cause: say how much was left.
  printf '[time]   %-46s %5s\n' "disk free at the end" "$(df -Ph . | awk 'NR==2 { print $4 }')"
  return $status
}
trap timing_summary EXIT
