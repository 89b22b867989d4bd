#!/usr/bin/env bash
# Dockyard vs distribution 2.8.2, side by side in one run. Usage: bench/run.sh [scenario...]
# Scenarios: hashwrite push-blob pull-blob manifest-get e2e-skopeo memory tls-pull auth-pull auth-flood mirror (default: all). See bench/README.md.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ALL=(hashwrite push-blob pull-blob manifest-get e2e-skopeo memory tls-pull auth-pull auth-flood mirror)
case ${1:-} in -h | --help) sed -n '2,3s/^# //p' "$0"; exit 0 ;; esac
selected=("$@")
[ $# -gt 0 ] || selected=("${ALL[@]}")
for s in "${selected[@]}"; do
  [ -f "$BENCH_SRC/scenarios/$s.sh" ] || die "unknown scenario '$s' (known: ${ALL[*]})"
done
for tool in curl openssl docker-registry skopeo wrk socat; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
for f in "$BENCH_SRC"/scenarios/*.sh; do . "$f"; done

setup_run
describe_run
for SCENARIO in "${selected[@]}"; do
  log ""
  log "--- $SCENARIO ---"
  "scenario_${SCENARIO//-/_}"
done
log ""
log "===== summary (stdout) ====="
cat "$RESULTS"
cp "$RESULTS" "$BENCH_DIR/last-results.txt"
