# shellcheck shell=bash
# mirror: each server as a pull-through cache (registry:2's proxy.remoteurl) of the same
# distribution 2.8.2 upstream, started once for the scenario. Every round starts fresh,
# empty mirrors: a cold skopeo pull of the ~1 GiB e2e image through the mirror, paired with
# a pull of it straight from the upstream; the same pull again (warm), paired with a pull from
# a plain Dockyard holding the image; time to first byte of a cold 1 GiB blob, next to the
# upstream's own; and, on another fresh mirror, 20 concurrent cold curl pulls of a 2-layer
# 256 MiB image: the bytes the upstream sent (its /proc/PID/io wchar) and the mirror's peak RSS.
# For scale, the same pull through a bare TCP relay (socat, 512 KiB buffers: no disk, no hash),
# paired with a direct pull: the least any mirror adds on this machine.

MIRROR_CONCURRENT=${BENCH_MIRROR_CONCURRENT:-20}

scenario_mirror() {
  E2E_LAYOUT=$(ensure_layout e2e "$E2E_LAYERS_MIB")
  MIRROR_SMALL=$(ensure_layout mirror-small 128,128)
  BENCH_BLOB_MIB=${BENCH_MIRROR_BLOB_MIB:-1024} ensure_blob
  mirror_upstream_start
  rounds mirror_once
  stop_server upstream
  stop_server plain
  kill "$RELAY_PID" 2>/dev/null || true
  wait "$RELAY_PID" 2>/dev/null || true
  RELAY_PID=
  table_head "mirror: pull-through cache of one distribution 2.8.2 upstream (proxy.remoteurl)"
  row "cold pull via mirror (s)" cold
  row "direct pull from upstream (s)" direct
  row "cold / direct, paired" cold_ratio "dockyard<=1.1"
  row "bare TCP relay / direct, paired" relay_ratio
  row "warm pull via mirror (s)" warm
  row "warm / plain dockyard, paired" warm_ratio "dockyard<=1.0"
  row "cold blob TTFB (ms)" ttfb
  row "TTFB over upstream's (ms)" ttfb_extra "dockyard<=50"
  row "upstream bytes / image, ${MIRROR_CONCURRENT} pulls" fanout "dockyard<=1.05"
  row "peak RSS, ${MIRROR_CONCURRENT} pulls (MiB)" rss "dockyard<=64"
  say "# image $E2E_LAYERS_MIB MiB layers; cold blob $BLOB_MIB MiB; concurrent image 2 x 128 MiB"
}

# The upstream (distribution, plain) with all three images, and a plain Dockyard with the e2e image.
mirror_upstream_start() {
  local up
  # start_server picks the binary by slot name: anything but "dockyard" is distribution.
  start_server upstream
  up=${BASE[upstream]}
  skopeo_copy "oci:$E2E_LAYOUT:latest" "docker://${up#http://}/library/e2e:latest" || die "upstream: push e2e"
  skopeo_copy "oci:$MIRROR_SMALL:latest" "docker://${up#http://}/library/small:latest" || die "upstream: push small"
  push_blob "$up" library/blob "$BLOB" "$BLOB_DIGEST" || die "upstream: push blob"
  UPSTREAM_PORT=${up##*:}
  RELAY_PORT=$(free_port)
  socat -b 524288 "TCP-LISTEN:$RELAY_PORT,bind=127.0.0.1,fork,reuseaddr" "TCP:127.0.0.1:$UPSTREAM_PORT" &
  RELAY_PID=$!
  # A plain Dockyard with the same image, for the warm comparison.
  start_server dockyard
  PID[plain]=${PID[dockyard]} BASE[plain]=${BASE[dockyard]} DATA[plain]=${DATA[dockyard]}
  unset "PID[dockyard]"
  skopeo_copy "oci:$E2E_LAYOUT:latest" "docker://${BASE[plain]#http://}/library/e2e:latest" || die "plain: push e2e"
}

mirror_once() {
  local slot=$1 r=$2 up=${BASE[upstream]} ref out=$RUN_DIR/mirror-pulled cold direct warm plain t
  local before after wchar_before wchar_after i d relay direct2
  MIRROR_OF=$up start_server "$slot"
  ref=docker://${BASE[$slot]#http://}/library/e2e:latest
  direct=$(timed skopeo_copy "docker://${up#http://}/library/e2e:latest" "oci:$out:latest") || die "direct pull"
  rm -rf "$out"
  cold=$(timed skopeo_copy "$ref" "oci:$out:latest") || die "$slot: cold pull through the mirror failed"
  [ "$(layout_digest "$out")" = "$(layout_digest "$E2E_LAYOUT")" ] || die "$slot: pulled manifest differs"
  rm -rf "$out"
  settle "$slot"
  direct2=$(timed skopeo_copy "docker://${up#http://}/library/e2e:latest" "oci:$out:latest") || die "direct pull"
  rm -rf "$out"
  relay=$(timed skopeo_copy "docker://127.0.0.1:$RELAY_PORT/library/e2e:latest" "oci:$out:latest") || die "relay pull"
  rm -rf "$out"
  warm=$(timed skopeo_copy "$ref" "oci:$out:latest") || die "$slot: warm pull failed"
  rm -rf "$out"
  plain=$(timed skopeo_copy "docker://${BASE[plain]#http://}/library/e2e:latest" "oci:$out:latest") || die "plain pull"
  rm -rf "$out"
  # Time to first byte of a cold 1 GiB blob, and the upstream's own.
  before=$(curl -sS -o /dev/null -w '%{time_starttransfer}' "$up/v2/library/blob/blobs/$BLOB_DIGEST")
  t=$(curl -sS -o /dev/null -w '%{time_starttransfer}' "${BASE[$slot]}/v2/library/blob/blobs/$BLOB_DIGEST")
  stop_server "$slot"
  # 20 concurrent cold pulls of the small image on a fresh mirror.
  MIRROR_OF=$up start_server "$slot"
  wchar_before=$(awk '$1 == "wchar:" { print $2 }' "/proc/${PID[upstream]}/io")
  local blobs
  blobs=$("$PY" -c 'import json,sys; d=sys.argv[1]; i=json.load(open(d+"/index.json")); m=json.load(open(d+"/blobs/"+i["manifests"][0]["digest"].replace(":","/"))); print(" ".join([m["config"]["digest"]]+[l["digest"] for l in m["layers"]]))' "$MIRROR_SMALL")
  curl -sS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "${BASE[$slot]}/v2/library/small/manifests/latest"
  local pulls=() p
  for ((i = 0; i < MIRROR_CONCURRENT; i++)); do
    (for d in $blobs; do curl -sS -o /dev/null "${BASE[$slot]}/v2/library/small/blobs/$d" || exit 1; done) &
    pulls+=($!)
  done
  # Only these: a bare `wait` would also wait for the servers.
  for p in "${pulls[@]}"; do wait "$p" || die "$slot: a concurrent pull failed"; done
  wchar_after=$(awk '$1 == "wchar:" { print $2 }' "/proc/${PID[upstream]}/io")
  local rss small_bytes
  rss=$(mib "$(proc_kib "$slot" VmHWM)")
  small_bytes=$(du -sb "$MIRROR_SMALL/blobs" | cut -f1)
  stop_server "$slot"
  record cold "$slot" "$cold"
  record direct "$slot" "$direct"
  record cold_ratio "$slot" "$(awk -v a="$cold" -v b="$direct" 'BEGIN { printf "%.3f", a / b }')"
  record relay_ratio "$slot" "$(awk -v a="$relay" -v b="$direct2" 'BEGIN { printf "%.3f", a / b }')"
  record warm "$slot" "$warm"
  record warm_ratio "$slot" "$(awk -v a="$warm" -v b="$plain" 'BEGIN { printf "%.3f", a / b }')"
  record ttfb "$slot" "$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }')"
  record ttfb_extra "$slot" "$(awk -v t="$t" -v u="$before" 'BEGIN { printf "%.1f", (t - u) * 1000 }')"
  record fanout "$slot" "$(awk -v a="$wchar_before" -v b="$wchar_after" -v s="$small_bytes" 'BEGIN { printf "%.3f", (b - a) / s }')"
  record rss "$slot" "$rss"
  log "  round $r/$ROUNDS $slot: cold $cold s (direct $direct), warm $warm s (plain $plain), ttfb $t s (upstream $before), upstream bytes $((wchar_after - wchar_before)) for $small_bytes x $MIRROR_CONCURRENT, rss $rss MiB"
}
