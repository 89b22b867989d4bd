# shellcheck shell=bash
# hashwrite: what this machine needs to SHA-256 the test blob and write it to the bench filesystem.

# hash_write_onepass: BASELINE. The blob read once in 1 MiB chunks, each hashed and written, then fsync
# (hashwrite.py). Prints seconds.
hash_write_onepass() {
  local dst=$RUN_DIR/hashwrite.out sum t
  sync
  read -r sum t < <("$PY" "$BENCH_SRC/hashwrite.py" "$BLOB" "$dst")
  rm -f "$dst"
  [ "sha256:$sum" = "$BLOB_DIGEST" ] || die "hashwrite: digest mismatch"
  echo "$t"
}

# hash_write_tee: the shell pipeline, bytes streamed once: tee into openssl dgst and into dd (fsync).
# Prints seconds. tee moves 8 KiB per call through two pipes, so this is slower than the loop above.
hash_write_tee() {
  local dst=$RUN_DIR/hashwrite.out fifo=$RUN_DIR/hashwrite.fifo t0 t1 sum dd_pid
  mkfifo "$fifo"
  sync
  t0=$EPOCHREALTIME
  dd of="$dst" bs=1M conv=fsync status=none <"$fifo" &
  dd_pid=$!
  sum=$(tee "$fifo" <"$BLOB" | openssl dgst -sha256 -r | cut -d' ' -f1)
  wait "$dd_pid"
  t1=$EPOCHREALTIME
  rm -f "$fifo" "$dst"
  [ "sha256:$sum" = "$BLOB_DIGEST" ] || die "hashwrite: digest mismatch"
  secs "$t0" "$t1"
}

scenario_hashwrite() {
  ensure_blob
  local r hash write tee once dst=$RUN_DIR/hashwrite.out
  RETRIES=${BENCH_RETRIES:-5}
  for ((r = 1; r <= ROUNDS; r++)); do
    round_begin
    once=$(hash_write_onepass)
    tee=$(hash_write_tee)
    hash=$(timed openssl dgst -sha256 "$BLOB")
    sync
    write=$(timed dd if="$BLOB" of="$dst" bs=1M conv=fsync status=none)
    rm -f "$dst"
    record hash machine "$hash"
    record write machine "$write"
    record seq machine "$(awk -v a="$hash" -v b="$write" 'BEGIN { printf "%.3f", a + b }')"
    record tee machine "$tee"
    record once machine "$once"
    log "  round $r/$ROUNDS: hash $hash s, write+fsync $write s, tee pipeline $tee s, one-pass $once s"
    round_end || r=$((r - 1))
  done
  say ""
  say "== hashwrite: SHA-256 and write+fsync of the ${BLOB_MIB} MiB blob (source file hot in page cache) =="
  local label metric m
  for metric in hash write seq tee once; do
    case $metric in
      hash) label="hash only (openssl dgst)" ;;
      write) label="write+fsync only (dd bs=1M)" ;;
      seq) label="sequential: hash, then write" ;;
      tee) label="one pass, tee|openssl + dd" ;;
      once) label="one pass, 1 MiB loop  BASELINE" ;;
    esac
    m=$(median "$metric" machine)
    say "$(printf '%-32s %8s s %8.0f MiB/s' "$label" "$m" "$(awk -v s="$m" -v n="$BLOB_MIB" 'BEGIN { print n / s }')")"
  done
}
