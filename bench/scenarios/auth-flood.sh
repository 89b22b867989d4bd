# shellcheck shell=bash
# auth-flood: latency of authenticated manifest GETs (a signed-in client, credentials on every
# request) at rest, then while bench/flood.py sends bad logins from 200 loopback addresses.
# Both servers run from the same config.yml with one bcrypt cost-10 htpasswd entry.
. "$(dirname "${BASH_SOURCE[0]}")/../lib-auth.sh"

FLOOD_WRK_ARGS=(-t1 -c"${BENCH_FLOOD_WRK_CONNS:-4}" -d"${BENCH_FLOOD_DURATION:-10s}" --latency)
FLOOD_ADDRESSES=${BENCH_FLOOD_ADDRESSES:-200}
FLOOD_CONNS=${BENCH_FLOOD_CONNS:-32}

scenario_auth_flood() {
  FLOOD_LAYOUT=$(ensure_layout flood 0,0)
  ensure_htpasswd
  rounds auth_flood_once
  table_head "auth-flood: wrk ${FLOOD_WRK_ARGS[*]} authenticated GET manifest, at rest and under $FLOOD_CONNS x bad logins from $FLOOD_ADDRESSES addresses"
  row "at rest p50 (ms)" rest_p50
  row "at rest p99 (ms)" rest_p99
  row "flood p50 (ms)" flood_p50
  row "flood p99 (ms)" flood_p99 "ratio<=1"
  row "flood/rest p99, paired" p99_ratio
  row "authenticated req/s in flood" flood_rps
  row "bad logins answered in flood" flood_bad
}

# wrk_auth SLOT OUT: the authenticated manifest GET load; prints "rps p50 p99".
wrk_auth() {
  local url=${BASE[$1-on]}/v2/bench/flood/manifests/latest creds rps p50 p99 bad
  creds=$(printf '%s:%s' "$AUTH_USER" "$AUTH_PASSWORD" | base64 -w0)
  wrk "${FLOOD_WRK_ARGS[@]}" -H "Accept: $OCI_MANIFEST" -H "Authorization: Basic $creds" "$url" >"$2"
  read -r rps p50 p99 bad < <(wrk_summary "$2")
  [ "$bad" = 0 ] || { cat "$2" >&2; die "$1: wrk saw $bad errors or non-2xx responses"; }
  echo "$rps $p50 $p99"
}

auth_flood_once() {
  local slot=$1 r=$2 ref flood_pid sent rps rest_p50 rest_p99 flood_p50 flood_p99
  start_auth_server "$slot" on
  ref=docker://${BASE[$slot-on]#http://}/bench/flood:latest
  auth_skopeo --dest-creds "oci:$FLOOD_LAYOUT:latest" "$ref" || die "$slot: skopeo push failed"
  read -r _ rest_p50 rest_p99 < <(wrk_auth "$slot" "$RUN_DIR/wrk-rest.txt")
  "$PY" "$BENCH_SRC/flood.py" "${BASE[$slot-on]}" "$(( ${FLOOD_WRK_ARGS[2]//[!0-9]/} + 2 ))" \
    "$FLOOD_ADDRESSES" "$FLOOD_CONNS" >"$RUN_DIR/flood.txt" &
  flood_pid=$!
  sleep 1
  read -r rps flood_p50 flood_p99 < <(wrk_auth "$slot" "$RUN_DIR/wrk-flood.txt")
  wait "$flood_pid" || die "$slot: the flood generator failed"
  sent=$(awk '{ print $1 }' "$RUN_DIR/flood.txt")
  stop_server "$slot-on"
  record rest_p50 "$slot" "$rest_p50"
  record rest_p99 "$slot" "$rest_p99"
  record flood_p50 "$slot" "$flood_p50"
  record flood_p99 "$slot" "$flood_p99"
  record flood_rps "$slot" "$rps"
  record flood_bad "$slot" "$sent"
  record p99_ratio "$slot" "$(awk -v a="$flood_p99" -v b="$rest_p99" 'BEGIN { printf "%.3f", a / b }')"
  log "  round $r/$ROUNDS $slot: rest p50 $rest_p50 p99 $rest_p99 ms; flood p50 $flood_p50 p99 $flood_p99 ms, $rps req/s; flood: $(cat "$RUN_DIR/flood.txt")"
}
