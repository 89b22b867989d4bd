# shellcheck shell=bash
# pull-blob: GET the 512 MiB blob to /dev/null (curl time_total), after an untimed push to a fresh server.

scenario_pull_blob() {
  ensure_blob
  rounds pull_blob_once
  table_head "pull-blob: GET ${BLOB_MIB} MiB blob to /dev/null (curl)"
  row "pull time (s)" pull "ratio<=1.0"
}

pull_blob_once() {
  local slot=$1 url out code size t sum
  start_server "$slot"
  push_blob "${BASE[$slot]}" bench/blob "$BLOB" "$BLOB_DIGEST" || die "$slot: blob push failed"
  url=${BASE[$slot]}/v2/bench/blob/blobs/$BLOB_DIGEST
  out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$url")
  read -r code size t <<<"$out"
  [ "$code" = 200 ] && [ "$size" = "$BLOB_BYTES" ] || die "$slot: GET blob: $out"
  if [ "$2" = 1 ]; then # once per server: the bytes, not just the length
    sum=$(curl -sS "$url" | openssl dgst -sha256 -r | cut -d' ' -f1)
    [ "sha256:$sum" = "$BLOB_DIGEST" ] || die "$slot: GET blob returned other bytes"
  fi
  stop_server "$slot"
  record pull "$slot" "$t"
  log "  round $2/$ROUNDS $slot: pull $t s"
}
