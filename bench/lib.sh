# shellcheck shell=bash
# Shared functions for bench/run.sh: servers, timing, statistics and the result tables.
# Sourced by run.sh; every scenario in bench/scenarios/ may call anything defined here.

export LC_ALL=C
BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_SRC/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/dockyard-bench}
CACHE=$BENCH_DIR/cache
ROUNDS=${BENCH_ROUNDS:-5}
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=$(command -v python3)
SLOTS=(dockyard distribution)
SKOPEO_CACHE=/var/lib/containers/cache/blob-info-cache-v1.boltdb
E2E_LAYERS_MIB=${BENCH_E2E_LAYERS_MIB:-32,64,128,160,256,384}

declare -A PID=() BASE=() DATA=() STARTUP_MS=() VALS=()
ROUND_VALS=() DISTURBED=0 POLLER_PID=

log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }     # KiB -> MiB
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; } # two $EPOCHREALTIME stamps -> s

# --- run setup ---------------------------------------------------------------------------------------

# setup_run: one directory per run for data dirs, configs and logs, removed on exit (BENCH_KEEP=1 keeps it).
setup_run() {
  mkdir -p "$CACHE"
  RUN_DIR=$(mktemp -d "$BENCH_DIR/run-XXXXXX")
  RESULTS=$RUN_DIR/results.txt
  : >"$RESULTS"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  if [ "${BENCH_SELF_TEST:-0}" = 1 ]; then
    DOCKYARD_BIN=
  else
    local bin=${DOCKYARD_BIN:-$REPO_ROOT/target/release/dockyard}
    [ -x "$bin" ] || die "no dockyard binary at $bin (build it, set DOCKYARD_BIN, or BENCH_SELF_TEST=1)"
    # A private copy: a rebuild during the run must not swap the binary between rounds.
    mkdir -p "$RUN_DIR/bin" && cp "$bin" "$RUN_DIR/bin/dockyard"
    DOCKYARD_BIN=$RUN_DIR/bin/dockyard
    DOCKYARD_DESC="$bin ($(stat -c %y "$bin" | cut -d. -f1), git $(git -C "$(dirname "$bin")" describe --always --dirty 2>/dev/null || echo '?'))"
  fi
}

cleanup() {
  local slot
  for slot in "${!PID[@]}"; do stop_server "$slot"; done
  [ -z "$POLLER_PID" ] || kill "$POLLER_PID" 2>/dev/null || true
  [ -z "${RELAY_PID:-}" ] || kill "$RELAY_PID" 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $RUN_DIR"; else rm -rf "$RUN_DIR"; fi
}

describe_run() {
  local fs
  fs=$(findmnt -n -o FSTYPE,SOURCE -T "$BENCH_DIR" | tr -s ' ')
  say "# dockyard:     ${DOCKYARD_DESC:-SELF-TEST (BENCH_SELF_TEST=1): distribution 2.8.2 runs in BOTH columns}"
  say "# distribution: $(docker-registry --version | awk '{print $NF}')"
  say "# data dirs:    $RUN_DIR ($fs; fresh dir per server per round; page cache NOT dropped)"
  say "# rounds:       $ROUNDS, server order alternates every round; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
}

# building: a cargo build or test run is using the CPU (BENCH_IGNORE_BUILDS=1: pretend not, for quick script checks).
building() {
  [ "${BENCH_IGNORE_BUILDS:-0}" != 1 ] || return 1
  pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null || pgrep -x clippy-driver >/dev/null
}

# wait_quiet: never start a round while cargo/rustc builds (2 cores). Waits up to BENCH_BUILD_WAIT seconds.
wait_quiet() {
  local waited=0 limit=${BENCH_BUILD_WAIT:-3600}
  while building; do
    [ "$waited" -lt "$limit" ] || die "a cargo build is still running after ${limit}s; giving up"
    [ "$waited" -gt 0 ] || log "  waiting for a running cargo/rustc build to finish..."
    sleep 10
    waited=$((waited + 10))
  done
}

# round_order R: the two slots, swapped on every other round so neither always goes first.
round_order() { if (($1 % 2)); then echo "${SLOTS[@]}"; else echo "${SLOTS[1]} ${SLOTS[0]}"; fi; }

# rounds FN [PRE]: ROUNDS rounds; each runs PRE ROUND (if given), then FN SLOT ROUND for both slots.
# A round during which a cargo build ran is dropped and measured again, at most BENCH_RETRIES times a scenario.
rounds() {
  local r slot
  RETRIES=${BENCH_RETRIES:-5}
  for ((r = 1; r <= ROUNDS; r++)); do
    round_begin
    [ -z "${2:-}" ] || "$2" "$r"
    for slot in $(round_order "$r"); do "$1" "$slot" "$r"; done
    round_end || r=$((r - 1))
  done
}

round_begin() { wait_quiet; ROUND_VALS=(); DISTURBED=0; }

# round_end: adds the round's values to the medians; fails (round to repeat) when a build disturbed it.
round_end() {
  local kv
  if { ((DISTURBED)) || building; } && ((RETRIES > 0)); then
    RETRIES=$((RETRIES - 1))
    log "  a cargo build ran during this round: dropped, measuring it again"
    return 1
  fi
  if ((DISTURBED)); then log "  a cargo build ran during this round, and no retries are left: kept"; fi
  for kv in "${ROUND_VALS[@]}"; do VALS[${kv% *}]+=" ${kv#* }"; done
}

# --- servers -----------------------------------------------------------------------------------------

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server SLOT: fresh data dir and port; waits for 200 on /v2/. Sets PID, BASE, DATA, STARTUP_MS.
# With SERVER_TLS=1 (see ensure_tls_cert) the server serves HTTPS with TLS_CERT/TLS_KEY and BASE is https.
# A poller is started first, so STARTUP_MS is process start -> first 200 without interpreter start-up in it.
start_server() {
  local slot=$1 port dir log fifo fd line t0 t1 i
  sync # write back what earlier steps left dirty, so it is not flushed during this measurement
  port=$(free_port)
  dir=$(mktemp -d "$RUN_DIR/$slot-XXXX")
  log=$dir.log
  fifo=$dir.fifo
  mkfifo "$fifo"
  "$PY" "$BENCH_SRC/waitready.py" "$port" 60 ${SERVER_TLS:+https} >"$fifo" &
  POLLER_PID=$!
  exec {fd}<"$fifo"
  read -r -u "$fd" line # "polling"
  local env=(REGISTRY_LOG_LEVEL=warn)
  # MIRROR_OF=URL: a pull-through cache of that upstream (registry:2's proxy.remoteurl, both servers).
  [ -z "${MIRROR_OF:-}" ] || env+=(REGISTRY_PROXY_REMOTEURL="$MIRROR_OF")
  t0=$EPOCHREALTIME
  if [ "$slot" = dockyard ] && [ -n "$DOCKYARD_BIN" ]; then
    [ -z "${SERVER_TLS:-}" ] || env+=(REGISTRY_HTTP_TLS_CERTIFICATE="$TLS_CERT" REGISTRY_HTTP_TLS_KEY="$TLS_KEY")
    env "${env[@]}" REGISTRY_HTTP_ADDR="127.0.0.1:$port" REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$dir" \
      REGISTRY_STORAGE_DELETE_ENABLED=true "$DOCKYARD_BIN" serve >"$log" 2>&1 &
  else
    distribution_config "$port" "$dir" >"$dir.yml"
    env "${env[@]}" docker-registry serve "$dir.yml" >"$log" 2>&1 &
  fi
  PID[$slot]=$!
  t1=
  for ((i = 0; i < 600; i++)); do
    if read -r -t 0.1 -u "$fd" t1; then break; fi
    alive "${PID[$slot]}" || break
  done
  exec {fd}<&-
  rm -f "$fifo"
  kill "$POLLER_PID" 2>/dev/null || true
  wait "$POLLER_PID" 2>/dev/null || true
  POLLER_PID=
  if ! [[ $t1 =~ ^[0-9.]+$ ]]; then
    tail -n 20 "$log" >&2
    die "$slot did not answer 200 on /v2/ (log: $log)"
  fi
  BASE[$slot]=http${SERVER_TLS:+s}://127.0.0.1:$port
  DATA[$slot]=$dir
  STARTUP_MS[$slot]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
}

# The registry:2 image's own config, minus auth and health checks, with logging turned down.
distribution_config() {
  cat <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $2
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$1
  secret: dockyard-bench
EOF
  [ -z "${SERVER_TLS:-}" ] || printf '  tls:\n    certificate: %s\n    key: %s\n' "$TLS_CERT" "$TLS_KEY"
}

# alive PID: running, i.e. neither gone nor a zombie waiting to be reaped.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ ${stat##*) } != Z* ]]
}

# stop_server SLOT: TERM, then KILL after 10 s; removes the data dir.
stop_server() {
  local slot=$1 pid=${PID[$1]:-} i
  [ -n "$pid" ] || return 0
  if building; then DISTURBED=1; fi
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  unset "PID[$slot]"
  rm -rf "${DATA[$slot]}"
}

# settle SLOT: waits (up to 15 s) until the server has used no CPU for 300 ms, so that work it
# does after answering (a mirror verifying and syncing what it cached) does not land in the next
# measurement.
settle() {
  local stat=/proc/${PID[$1]}/stat before now i
  now=$(awk '{ print $14 + $15 }' "$stat")
  for ((i = 0; i < 50; i++)); do
    sleep 0.3
    before=$now
    now=$(awk '{ print $14 + $15 }' "$stat")
    [ "$now" != "$before" ] || break
  done
  sync
}

# proc_kib SLOT FIELD: VmRSS / VmHWM of the running server, in KiB.
proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/${PID[$1]}/status"; }

# --- registry client (curl) ----------------------------------------------------------------------------

# push_blob BASE REPO FILE DIGEST: POST an upload, then one streamed PUT of the whole file. Fails unless 201.
push_blob() {
  local base=$1 repo=$2 file=$3 digest=$4 out code loc sep
  out=$(curl -sS -o /dev/null -X POST -w '%{http_code} %header{location}' "$base/v2/$repo/blobs/uploads/")
  code=${out%% *} loc=${out#* }
  [ "$code" = 202 ] && [ -n "$loc" ] || { log "POST upload: $out"; return 1; }
  case $loc in /*) loc=$base$loc ;; esac
  case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
  # 'Expect:' off: curl would otherwise wait for "100 Continue" before a large body.
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Expect:' -H 'Content-Type: application/octet-stream' \
    -T "$file" "$loc${sep}digest=$digest")
  [ "$code" = 201 ] || { log "PUT upload: HTTP $code"; return 1; }
}

# ensure_blob: the random test blob (BENCH_BLOB_MIB MiB), generated once; sets BLOB, BLOB_DIGEST, BLOB_BYTES.
ensure_blob() {
  local mibs=${BENCH_BLOB_MIB:-512}
  BLOB=$CACHE/blob-${mibs}M.bin
  if [ ! -s "$BLOB.sha256" ]; then
    log "  generating $BLOB from /dev/urandom"
    dd if=/dev/urandom of="$BLOB.tmp" bs=1M count="$mibs" iflag=fullblock status=none
    openssl dgst -sha256 -r "$BLOB.tmp" | cut -d' ' -f1 >"$BLOB.sha256.tmp"
    mv "$BLOB.tmp" "$BLOB" && mv "$BLOB.sha256.tmp" "$BLOB.sha256"
  fi
  BLOB_DIGEST=sha256:$(cat "$BLOB.sha256")
  BLOB_BYTES=$(stat -c %s "$BLOB")
  BLOB_MIB=$mibs
}

# ensure_layout NAME LAYER_MIBS: an OCI layout under the cache (tag "latest"), built once by mkoci.py.
ensure_layout() {
  local dir=$CACHE/oci-$1-${2//,/-}
  [ -f "$dir/index.json" ] || { log "  building OCI layout $dir (layers MiB: $2)"; "$PY" "$BENCH_SRC/mkoci.py" "$dir" "$2" >&2; }
  echo "$dir"
}

# skopeo_copy SRC DEST: no TLS, no blob-info cache left over from an earlier copy.
skopeo_copy() {
  rm -f "$SKOPEO_CACHE"
  skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "$1" "$2" >/dev/null
}

# --- results -----------------------------------------------------------------------------------------

# record METRIC SLOT VALUE: one measurement of this round (see round_end); median METRIC SLOT.
# Keys are per scenario ($SCENARIO, set by run.sh).
record() { ROUND_VALS+=("$SCENARIO/$1/$2 $3"); }
median() {
  # shellcheck disable=SC2086
  printf '%s\n' ${VALS[$SCENARIO/$1/$2]} | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# say: a line of the result tables, shown live on stderr and kept for the summary run.sh prints on stdout.
say() { printf '%s\n' "$*" | tee -a "$RESULTS" >&2; }

table_head() {
  say ""
  say "== $1 =="
  say "$(printf '%-30s %12s %12s %8s  %-17s %s' metric dockyard distribution ratio target result)"
}

# row LABEL METRIC [RULE]: medians of both slots, ratio dockyard/distribution, and the target check.
# RULE: ratio<=X | ratio>=X (on the ratio) or dockyard<=X | dockyard>=X (on dockyard's median).
row() {
  local a b
  a=$(median "$2" dockyard) b=$(median "$2" distribution)
  row_values "$1" "$a" "$b" "${3:-}"
}

row_values() {
  local label=$1 a=$2 b=$3 rule=$4 ratio verdict='' subject
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')
  if [[ $rule =~ ^(ratio|dockyard)(<=|>=)([0-9.]+)$ ]]; then
    subject=$a
    [ "${BASH_REMATCH[1]}" = ratio ] && subject=$ratio
    verdict=$(awk -v x="$subject" -v op="${BASH_REMATCH[2]}" -v lim="${BASH_REMATCH[3]}" \
      'BEGIN { ok = (op == "<=") ? (x + 0 <= lim + 0) : (x + 0 >= lim + 0); print (x == "nan") ? "MISS" : ok ? "PASS" : "MISS" }')
    rule="${BASH_REMATCH[1]} ${BASH_REMATCH[2]} ${BASH_REMATCH[3]}"
  fi
  say "$(printf '%-30s %12s %12s %7sx  %-17s %s' "$label" "$(fmt "$a")" "$(fmt "$b")" "$ratio" "$rule" "$verdict")"
}

# fmt X: about four significant digits.
fmt() { awk -v x="$1" 'BEGIN { if (x == "nan") print x; else printf (x >= 100 ? "%.0f" : x >= 10 ? "%.1f" : "%.3f"), x }'; }

# timed CMD...: run CMD (stdout discarded), print its wall time in seconds; fails if CMD fails.
timed() {
  local t0=$EPOCHREALTIME
  "$@" >/dev/null || return 1
  secs "$t0" "$EPOCHREALTIME"
}

# wrk_summary FILE: "rps p50_ms p99_ms errors" from the output of `wrk --latency`, where errors
# counts non-2xx responses and socket errors.
wrk_summary() {
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v * 60000 }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { bad += $NF }
    /Socket errors:/ { gsub(/,/, ""); bad += $4 + $6 + $8 + $10 }
    END { printf "%.1f %.3f %.3f %d\n", rps, p50, p99, bad }' "$1"
}

# layout_digest DIR: the manifest digest an OCI layout's index.json points at.
layout_digest() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$1/index.json"; }
