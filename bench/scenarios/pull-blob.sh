# shellcheck shell=bash
# pull-blob: GET the 512 MiB blob to /dev/null (curl time_total), after an untimed push to a fresh server.

scenario_pull_blob() {
  ensure_blob
  local r slot url out code size t sum
  for ((r = 1; r <= ROUNDS; r++)); do
    wait_quiet
    for slot in $(round_order "$r"); do
      start_server "$slot"
      push_blob "${BASE[$slot]}" bench/blob "$BLOB" "$BLOB_DIGEST" || die "$slot: blob push failed"
      url=${BASE[$slot]}/v2/bench/blob/blobs/$BLOB_DIGEST
      out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$url")
      read -r code size t <<<"$out"
      [ "$code" = 200 ] && [ "$size" = "$BLOB_BYTES" ] || die "$slot: GET blob: $out"
      if [ "$r" = 1 ]; then # once per server: the bytes, not just the length
        sum=$(curl -sS "$url" | openssl dgst -sha256 -r | cut -d' ' -f1)
        [ "sha256:$sum" = "$BLOB_DIGEST" ] || die "$slot: GET blob returned other bytes"
      fi
      stop_server "$slot"
      record pull "$slot" "$t"
      log "  round $r/$ROUNDS $slot: pull $t s"
    done
  done
  table_head "pull-blob: GET ${BLOB_MIB} MiB blob to /dev/null (curl)"
  row "pull time (s)" pull "ratio<=1.0"
}
