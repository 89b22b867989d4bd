# shellcheck shell=bash
# memory: start-up time to the first 200 on /v2/, idle RSS, and peak RSS (VmHWM) over the e2e skopeo push.

scenario_memory() {
  E2E_LAYOUT=$(ensure_layout e2e "$E2E_LAYERS_MIB")
  rounds memory_once
  table_head "memory: fresh server; peak RSS over a skopeo push of layers $E2E_LAYERS_MIB MiB"
  row "start-up to first 200 (ms)" startup
  row "idle RSS after start (MiB)" idle
  row "peak RSS, VmHWM (MiB)" peak "dockyard<=64"
}

memory_once() {
  local slot=$1 idle peak
  start_server "$slot"
  idle=$(mib "$(proc_kib "$slot" VmRSS)")
  skopeo_copy "oci:$E2E_LAYOUT:latest" "docker://${BASE[$slot]#http://}/bench/mem:latest" || die "$slot: skopeo push failed"
  peak=$(mib "$(proc_kib "$slot" VmHWM)")
  stop_server "$slot"
  record startup "$slot" "${STARTUP_MS[$slot]}"
  record idle "$slot" "$idle"
  record peak "$slot" "$peak"
  log "  round $2/$ROUNDS $slot: start-up ${STARTUP_MS[$slot]} ms, RSS idle $idle MiB, peak $peak MiB"
}
