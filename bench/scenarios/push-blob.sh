# shellcheck shell=bash
# push-blob: POST an upload, then one streamed PUT of the 512 MiB blob; time from POST to the 201.
# Each round also measures the one-pass hashwrite baseline, so the baseline ratio is paired per round.

scenario_push_blob() {
  ensure_blob
  local r slot t0 t push hw
  for ((r = 1; r <= ROUNDS; r++)); do
    wait_quiet
    hw=$(hash_write_onepass)
    record hashwrite machine "$hw"
    for slot in $(round_order "$r"); do
      start_server "$slot"
      t0=$EPOCHREALTIME
      push_blob "${BASE[$slot]}" bench/blob "$BLOB" "$BLOB_DIGEST" || die "$slot: blob push failed"
      push=$(secs "$t0" "$EPOCHREALTIME")
      [ "$(curl -s -o /dev/null -I -w '%{http_code}' "${BASE[$slot]}/v2/bench/blob/blobs/$BLOB_DIGEST")" = 200 ] ||
        die "$slot: pushed blob not found"
      stop_server "$slot"
      record push "$slot" "$push"
      record push_hw "$slot" "$(awk -v a="$push" -v b="$hw" 'BEGIN { printf "%.3f", a / b }')"
      log "  round $r/$ROUNDS $slot: push $push s (hashwrite $hw s)"
    done
  done
  table_head "push-blob: ${BLOB_MIB} MiB random blob, curl POST + one streamed PUT"
  row "push time (s)" push "ratio<=0.7"
  row "push / hashwrite, paired (x)" push_hw "dockyard<=1.5"
  say "(hashwrite one-pass baseline in these rounds: median $(median hashwrite machine) s)"
}
