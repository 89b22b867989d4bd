# shellcheck shell=bash
# memory: start-up time to the first 200 on /v2/, idle RSS, and peak RSS (VmHWM) over the e2e skopeo push.

scenario_memory() {
  local layout r slot
  layout=$(ensure_layout e2e "$E2E_LAYERS_MIB")
  for ((r = 1; r <= ROUNDS; r++)); do
    wait_quiet
    for slot in $(round_order "$r"); do
      start_server "$slot"
      record startup "$slot" "${STARTUP_MS[$slot]}"
      record idle "$slot" "$(mib "$(proc_kib "$slot" VmRSS)")"
      skopeo_copy "oci:$layout:latest" "docker://${BASE[$slot]#http://}/bench/mem:latest" || die "$slot: skopeo push failed"
      record peak "$slot" "$(mib "$(proc_kib "$slot" VmHWM)")"
      stop_server "$slot"
      log "  round $r/$ROUNDS $slot: start-up ${STARTUP_MS[$slot]} ms, RSS idle $(values idle "$slot" | awk '{print $NF}') MiB, peak $(values peak "$slot" | awk '{print $NF}') MiB"
    done
  done
  table_head "memory: fresh server; peak RSS over a skopeo push of layers $E2E_LAYERS_MIB MiB"
  row "start-up to first 200 (ms)" startup
  row "idle RSS after start (MiB)" idle
  row "peak RSS, VmHWM (MiB)" peak "dockyard<=64"
}
