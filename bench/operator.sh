#!/usr/bin/env bash
# Operator scale: one Registry, then a burst of 300, against etcd + kube-apiserver on loopback.
# Usage: bench/operator.sh. Absolute figures with their targets (no distribution counterpart). See bench/README.md.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case ${1:-} in -h | --help) sed -n '2,3s/^# //p' "$0"; exit 0 ;; esac
for tool in etcd kube-apiserver kubectl; do
  [ -x "$REPO_ROOT/.tools/bin/$tool" ] || die ".tools/bin/$tool is missing: run tests/setup.sh"
done
for tool in curl openssl jq; do command -v "$tool" >/dev/null || die "$tool is not installed"; done

OUT=$BENCH_DIR/operator-last # results, the operator's and the API server's logs; replaced every run
mkdir -p "$BENCH_DIR"
rm -rf "$OUT"
mkdir -p "$OUT/bin"

# The test binary and the release dockyard it starts (one cargo build, then no cargo while measuring).
if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then # the test binary the last build made, as it is
  test_bin=$(find "$REPO_ROOT/target/release/deps" -maxdepth 1 -type f -executable -name 'operator_bench-*' -printf '%T@ %p\n' |
    sort -n | tail -n 1 | cut -d' ' -f2-)
else
  log "building: cargo test --release --test operator_bench --no-run"
  test_bin=$(cd "$REPO_ROOT" && cargo test --release --test operator_bench --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "operator_bench" and .executable != null) | .executable' | tail -n 1)
fi
[ -x "$test_bin" ] || die "cargo did not build the operator_bench test (run the cargo command above to see why)"
bin=${DOCKYARD_BIN:-$REPO_ROOT/target/release/dockyard}
[ -x "$bin" ] || die "no dockyard binary at $bin"
cp "$bin" "$OUT/bin/dockyard" # a rebuild during the run must not swap the binary
desc="$bin ($(stat -c %y "$bin" | cut -d. -f1), git $(git -C "$(dirname "$bin")" describe --always --dirty 2>/dev/null || echo '?'))"

wait_quiet
header=$(
  printf '# dockyard:     %s\n' "$desc"
  printf '# api server:   %s, etcd %s (loopback, etcd --unsafe-no-fsync, no kubelet)\n' \
    "$("$REPO_ROOT/.tools/bin/kube-apiserver" --version 2>/dev/null | awk '{print $NF}')" \
    "$("$REPO_ROOT/.tools/bin/etcd" --version 2>/dev/null | awk '/etcd Version/ {print $NF}')"
  printf '# machine:      %s cores, load %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
)
log "$header"

# Equivalent to `cargo test --release --test operator_bench -- --ignored --nocapture`, without a cargo
# process alive during the measurement (so a cargo build by someone else is visible to `building`).
disturbed=$OUT/build-seen
BENCH_OPERATOR_OUT=$OUT DOCKYARD_BIN=$OUT/bin/dockyard \
  "$test_bin" --ignored --nocapture --exact operator_scale --test-threads=1 >"$OUT/test.out" 2> >(tee "$OUT/test.err" >&2) &
test_pid=$!
while alive "$test_pid"; do
  if building; then : >"$disturbed"; fi
  sleep 2
done
rc=0
wait "$test_pid" || rc=$?
if [ "$rc" != 0 ] || [ ! -s "$OUT/results.txt" ]; then
  cat "$OUT/test.out" >&2
  die "operator_bench failed (exit $rc); logs in $OUT"
fi
{
  printf '%s\n' "$header"
  cat "$OUT/results.txt"
  [ ! -e "$disturbed" ] || printf '# WARNING: a cargo/rustc build ran during the measurement; rerun on a quiet machine\n'
  printf '# logs: %s/operator.log, %s/apiserver.log\n' "$OUT" "$OUT"
} | tee "$BENCH_DIR/last-operator-results.txt"
