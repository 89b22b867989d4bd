# shellcheck shell=bash
# tls-pull: GET a 1 GiB blob to /dev/null over HTTPS and over plain HTTP (curl time_total). Both servers
# get the same certificate through http.tls.certificate/key (Dockyard: REGISTRY_HTTP_TLS_*, distribution:
# its config.yml). Over HTTPS, curl pulls twice: with the protocol ALPN picks, and forced to HTTP/1.1.
# curl offers only TLS_AES_128_GCM_SHA256, the suite Go clients (docker, containerd, skopeo) prefer on
# AES-NI machines: each server then encrypts alike (curl's own first choice, AES-256, would be followed by
# Dockyard, which honours the client's order, and overridden by Go's server preference).
TLS_SUITE=TLS_AES_128_GCM_SHA256

# ensure_tls_cert: a self-signed P-256 certificate for 127.0.0.1, made once per run; sets TLS_CERT, TLS_KEY.
ensure_tls_cert() {
  local dir=$RUN_DIR/tls
  TLS_CERT=$dir/tls.crt TLS_KEY=$dir/tls.key
  [ -s "$TLS_CERT" ] && return
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null ||
    die "openssl could not make the benchmark certificate"
}

scenario_tls_pull() {
  local BENCH_BLOB_MIB=${BENCH_TLS_BLOB_MIB:-1024}
  ensure_blob
  ensure_tls_cert
  declare -gA TLS_PROTO=() TLS_CIPHER=()
  rounds tls_pull_once
  table_head "tls-pull: GET ${BLOB_MIB} MiB blob to /dev/null, HTTPS vs plain HTTP (curl)"
  row "https, ALPN choice (s)" alpn "ratio<=1.0"
  row "https, HTTP/1.1 (s)" h1 "ratio<=1.0"
  row "plain http (s)" plain
  row "https, ALPN choice (MiB/s)" alpn_mibs
  row "https, HTTP/1.1 (MiB/s)" h1_mibs
  row "plain http (MiB/s)" plain_mibs
  row "https/plain time, paired" cost
  say "# ALPN chose HTTP/${TLS_PROTO[dockyard]:-?} (dockyard), HTTP/${TLS_PROTO[distribution]:-?} (distribution); TLS: ${TLS_CIPHER[dockyard]:-?} (dockyard), ${TLS_CIPHER[distribution]:-?} (distribution)"
}

# tls_get URL [CURL_ARGS...]: GET to /dev/null, prints "code size seconds http_version".
tls_get() {
  local url=$1
  shift
  curl --cacert "$TLS_CERT" --tls13-ciphers "$TLS_SUITE" -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total} %{http_version}' "$@" "$url"
}

# tls_pull_timed SLOT URL [CURL_ARGS...]: one checked pull; prints "seconds http_version".
tls_pull_timed() {
  local slot=$1 url=$2 out code size t proto
  shift 2
  out=$(tls_get "$url" "$@")
  read -r code size t proto <<<"$out"
  [ "$code" = 200 ] && [ "$size" = "$BLOB_BYTES" ] || die "$slot: GET blob: $out"
  echo "$t $proto"
}

tls_pull_once() {
  local slot=$1 r=$2 url out code size t_alpn proto t_h1 t_plain sum
  SERVER_TLS=1 start_server "$slot"
  CURL_CA_BUNDLE=$TLS_CERT push_blob "${BASE[$slot]}" bench/blob "$BLOB" "$BLOB_DIGEST" || die "$slot: blob push over https failed"
  url=${BASE[$slot]}/v2/bench/blob/blobs/$BLOB_DIGEST
  read -r t_alpn proto <<<"$(tls_pull_timed "$slot" "$url")"
  read -r t_h1 _ <<<"$(tls_pull_timed "$slot" "$url" --http1.1)"
  if [ "$r" = 1 ]; then # once per server: the bytes, the protocol and the cipher suite
    sum=$(curl --cacert "$TLS_CERT" --tls13-ciphers "$TLS_SUITE" -sS "$url" | openssl dgst -sha256 -r | cut -d' ' -f1)
    [ "sha256:$sum" = "$BLOB_DIGEST" ] || die "$slot: GET blob over https returned other bytes"
    TLS_PROTO[$slot]=$proto
    TLS_CIPHER[$slot]=$(openssl s_client -connect "${BASE[$slot]#https://}" -ciphersuites "$TLS_SUITE" </dev/null 2>/dev/null |
      awk '/^New, / { print $2 $5 }' | tr ',' ' ')
  fi
  stop_server "$slot"

  start_server "$slot"
  push_blob "${BASE[$slot]}" bench/blob "$BLOB" "$BLOB_DIGEST" || die "$slot: blob push failed"
  out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "${BASE[$slot]}/v2/bench/blob/blobs/$BLOB_DIGEST")
  read -r code size t_plain <<<"$out"
  [ "$code" = 200 ] && [ "$size" = "$BLOB_BYTES" ] || die "$slot: GET blob: $out"
  stop_server "$slot"

  record alpn "$slot" "$t_alpn"
  record h1 "$slot" "$t_h1"
  record plain "$slot" "$t_plain"
  record alpn_mibs "$slot" "$(awk -v m="$BLOB_MIB" -v t="$t_alpn" 'BEGIN { printf "%.1f", m / t }')"
  record h1_mibs "$slot" "$(awk -v m="$BLOB_MIB" -v t="$t_h1" 'BEGIN { printf "%.1f", m / t }')"
  record plain_mibs "$slot" "$(awk -v m="$BLOB_MIB" -v t="$t_plain" 'BEGIN { printf "%.1f", m / t }')"
  record cost "$slot" "$(awk -v a="$t_alpn" -v b="$t_plain" 'BEGIN { printf "%.3f", a / b }')"
  log "  round $r/$ROUNDS $slot: https $t_alpn s (HTTP/$proto), https HTTP/1.1 $t_h1 s, plain $t_plain s"
}
