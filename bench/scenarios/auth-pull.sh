# shellcheck shell=bash
# auth-pull: skopeo copy --src-creds of a 30-layer image (30 x 1 MiB random gzip layers) from a server
# with htpasswd auth ON (one bcrypt cost-10 entry) and from the same server with auth OFF, for both
# Dockyard and distribution, from the same config.yml. What the ratio on/off shows is the cost of
# checking credentials on every request: skopeo sends Basic credentials with each of its ~33 requests.
. "$(dirname "${BASH_SOURCE[0]}")/../lib-auth.sh"

AUTH_LAYERS=${BENCH_AUTH_LAYERS:-30}
AUTH_LAYER_MIB=${BENCH_AUTH_LAYER_MIB:-1}
AUTH_PULLS=${BENCH_AUTH_PULLS:-3}

scenario_auth_pull() {
  local sizes
  sizes=$(printf "$AUTH_LAYER_MIB,%.0s" $(seq "$AUTH_LAYERS"))
  AUTH_LAYOUT=$(ensure_layout auth "${sizes%,}")
  AUTH_DIGEST=$(layout_digest "$AUTH_LAYOUT")
  ensure_htpasswd
  rounds auth_pull_once
  local a_off a_on b_off b_on ratio
  table_head "auth-pull: skopeo copy --src-creds, $AUTH_LAYERS x $AUTH_LAYER_MIB MiB gzip layers, htpasswd bcrypt cost $AUTH_COST on vs off"
  row "pull, auth off (s)" off
  row "pull, auth on (s)" on
  a_off=$(median off dockyard) a_on=$(median on dockyard)
  b_off=$(median off distribution) b_on=$(median on distribution)
  ratio='BEGIN { if (off > 0) printf "%.3f", on / off; else print "nan" }'
  row_values "auth on/off (medians)" "$(awk -v on="$a_on" -v off="$a_off" "$ratio")" \
    "$(awk -v on="$b_on" -v off="$b_off" "$ratio")" "dockyard<=1.05"
  row "auth on/off, paired per round" paired
  say "# $AUTH_PULLS pulls per server per round, auth off/on alternating; every pull starts without skopeo's blob-info cache"
}

# auth_pull_once SLOT ROUND: two servers (auth off, auth on) with the image pushed to each (untimed), then
# AUTH_PULLS timed pulls from each, alternating off/on (on/off on even rounds).
auth_pull_once() {
  local slot=$1 r=$2 order=(off on) auth ref t out=$RUN_DIR/auth-pulled i code
  local -A total=([off]=0 [on]=0) ref_of=()
  ((r % 2)) || order=(on off)
  for auth in "${order[@]}"; do
    start_auth_server "$slot" "$auth"
    ref_of[$auth]=docker://${BASE[$slot-$auth]#http://}/bench/auth:latest
    auth_skopeo --dest-creds "oci:$AUTH_LAYOUT:latest" "${ref_of[$auth]}" || die "$slot-$auth: skopeo push failed"
  done
  # Auth is really on: an anonymous manifest GET is refused.
  code=$(curl -s -o /dev/null -w '%{http_code}' "${BASE[$slot-on]}/v2/bench/auth/manifests/latest")
  [ "$code" = 401 ] || die "$slot-on: anonymous manifest GET answered $code, not 401"
  for ((i = 1; i <= AUTH_PULLS; i++)); do
    for auth in "${order[@]}"; do
      rm -rf "$out"
      t=$(timed auth_skopeo --src-creds "${ref_of[$auth]}" "oci:$out:latest") || die "$slot-$auth: skopeo pull failed"
      [ "$(layout_digest "$out")" = "$AUTH_DIGEST" ] || die "$slot-$auth: pulled manifest differs from the pushed one"
      record "$auth" "$slot" "$t"
      total[$auth]=$(awk -v a="${total[$auth]}" -v b="$t" 'BEGIN { print a + b }')
    done
  done
  rm -rf "$out"
  for auth in "${order[@]}"; do stop_server "$slot-$auth"; done
  record paired "$slot" "$(awk -v on="${total[on]}" -v off="${total[off]}" 'BEGIN { printf "%.3f", on / off }')"
  log "  round $r/$ROUNDS $slot: $AUTH_PULLS pulls, auth off total ${total[off]} s, auth on total ${total[on]} s"
}
