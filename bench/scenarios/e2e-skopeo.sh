# shellcheck shell=bash
# e2e-skopeo: skopeo copy of a ~1 GiB, 6-layer OCI layout to the registry and back into a new layout.

scenario_e2e_skopeo() {
  E2E_LAYOUT=$(ensure_layout e2e "$E2E_LAYERS_MIB")
  rounds e2e_skopeo_once
  table_head "e2e-skopeo: skopeo copy oci: <-> docker://, layers $E2E_LAYERS_MIB MiB (gzip, random)"
  row "push time (s)" push
  row "pull time (s)" pull
}

e2e_skopeo_once() {
  local slot=$1 ref out=$RUN_DIR/pulled push pull
  start_server "$slot"
  ref=docker://${BASE[$slot]#http://}/bench/e2e:latest
  push=$(timed skopeo_copy "oci:$E2E_LAYOUT:latest" "$ref") || die "$slot: skopeo push failed"
  pull=$(timed skopeo_copy "$ref" "oci:$out:latest") || die "$slot: skopeo pull failed"
  [ "$(layout_digest "$out")" = "$(layout_digest "$E2E_LAYOUT")" ] || die "$slot: pulled manifest differs from the pushed one"
  rm -rf "$out"
  stop_server "$slot"
  record push "$slot" "$push"
  record pull "$slot" "$pull"
  log "  round $2/$ROUNDS $slot: push $push s, pull $pull s"
}
