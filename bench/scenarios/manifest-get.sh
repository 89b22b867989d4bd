# shellcheck shell=bash
# manifest-get: wrk against GET /v2/bench/small/manifests/latest (OCI Accept header) on a small image.

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
WRK_ARGS=(-t"${BENCH_WRK_THREADS:-2}" -c"${BENCH_WRK_CONNS:-32}" -d"${BENCH_WRK_DURATION:-10s}" --latency)

scenario_manifest_get() {
  SMALL_LAYOUT=$(ensure_layout small 0,0)
  rounds manifest_get_once
  table_head "manifest-get: wrk ${WRK_ARGS[*]} GET manifest by tag (wrk shares the 2 cores)"
  row "requests/s" rps "ratio>=3"
  row "latency p50 (ms)" p50
  row "latency p99 (ms)" p99
}

manifest_get_once() {
  local slot=$1 want url out rps p50 p99 bad
  want=$(layout_digest "$SMALL_LAYOUT")
  start_server "$slot"
  skopeo_copy "oci:$SMALL_LAYOUT:latest" "docker://${BASE[$slot]#http://}/bench/small:latest" || die "$slot: skopeo push failed"
  url=${BASE[$slot]}/v2/bench/small/manifests/latest
  out=$(curl -sS -o /dev/null -H "Accept: $OCI_MANIFEST" -w '%{http_code} %header{docker-content-digest}' "$url")
  [ "$out" = "200 $want" ] || die "$slot: GET manifest: $out (want 200 $want)"
  wrk "${WRK_ARGS[@]}" -H "Accept: $OCI_MANIFEST" "$url" >"$RUN_DIR/wrk.txt"
  stop_server "$slot"
  read -r rps p50 p99 bad < <(wrk_summary "$RUN_DIR/wrk.txt")
  [ "$bad" = 0 ] || { cat "$RUN_DIR/wrk.txt" >&2; die "$slot: wrk saw $bad errors or non-2xx responses"; }
  record rps "$slot" "$rps"
  record p50 "$slot" "$p50"
  record p99 "$slot" "$p99"
  log "  round $2/$ROUNDS $slot: $rps req/s, p50 $p50 ms, p99 $p99 ms"
}
