# shellcheck shell=bash
# e2e-skopeo: skopeo copy of a ~1 GiB, 6-layer OCI layout to the registry and back into a new layout.

scenario_e2e_skopeo() {
  local layout want r slot ref out push pull
  layout=$(ensure_layout e2e "$E2E_LAYERS_MIB")
  want=$(layout_digest "$layout")
  out=$RUN_DIR/pulled
  for ((r = 1; r <= ROUNDS; r++)); do
    wait_quiet
    for slot in $(round_order "$r"); do
      start_server "$slot"
      ref=docker://${BASE[$slot]#http://}/bench/e2e:latest
      push=$(timed skopeo_copy "oci:$layout:latest" "$ref") || die "$slot: skopeo push failed"
      pull=$(timed skopeo_copy "$ref" "oci:$out:latest") || die "$slot: skopeo pull failed"
      [ "$(layout_digest "$out")" = "$want" ] || die "$slot: pulled manifest differs from the pushed one"
      rm -rf "$out"
      stop_server "$slot"
      record push "$slot" "$push"
      record pull "$slot" "$pull"
      log "  round $r/$ROUNDS $slot: push $push s, pull $pull s"
    done
  done
  table_head "e2e-skopeo: skopeo copy oci: <-> docker://, layers $E2E_LAYERS_MIB MiB (gzip, random)"
  row "push time (s)" push
  row "pull time (s)" pull
}
