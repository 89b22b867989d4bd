# shellcheck shell=bash
# push-blob: POST an upload, then one streamed PUT of the 512 MiB blob; time from POST to the 201.
# Each round also measures the one-pass hashwrite baseline, so the baseline ratio is paired per round.

scenario_push_blob() {
  ensure_blob
  rounds push_blob_once push_blob_baseline
  table_head "push-blob: ${BLOB_MIB} MiB random blob, curl POST + one streamed PUT"
  row "push time (s)" push "ratio<=0.7"
  row "push / hashwrite, paired (x)" push_hw "dockyard<=1.5"
  say "(one-pass hashwrite baseline in these rounds: median $(median hashwrite machine) s)"
}

push_blob_baseline() {
  ROUND_HASHWRITE=$(hash_write_onepass)
  record hashwrite machine "$ROUND_HASHWRITE"
}

push_blob_once() {
  local slot=$1 t0 push
  start_server "$slot"
  t0=$EPOCHREALTIME
  push_blob "${BASE[$slot]}" bench/blob "$BLOB" "$BLOB_DIGEST" || die "$slot: blob push failed"
  push=$(secs "$t0" "$EPOCHREALTIME")
  [ "$(curl -s -o /dev/null -I -w '%{http_code}' "${BASE[$slot]}/v2/bench/blob/blobs/$BLOB_DIGEST")" = 200 ] ||
    die "$slot: pushed blob not found"
  stop_server "$slot"
  record push "$slot" "$push"
  record push_hw "$slot" "$(awk -v a="$push" -v b="$ROUND_HASHWRITE" 'BEGIN { printf "%.3f", a / b }')"
  log "  round $2/$ROUNDS $slot: push $push s (hashwrite $ROUND_HASHWRITE s)"
}
