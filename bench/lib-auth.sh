# shellcheck shell=bash
# Helpers for the auth-pull scenario: an htpasswd file and servers started with or without
# `auth.htpasswd`. Sourced by scenarios/auth-pull.sh after lib.sh (it uses PID, BASE, DATA,
# RUN_DIR, distribution_config, alive, stop_server, log and die from there).
#
# Both servers get the SAME config.yml (distribution_config from lib.sh, plus the auth section
# when auth is on): `dockyard serve FILE` and `docker-registry serve FILE`. Server keys are
# "<slot>-on" / "<slot>-off", so stop_server and cleanup handle them like any other server.

AUTH_USER=${BENCH_AUTH_USER:-bench}
AUTH_PASSWORD=${BENCH_AUTH_PASSWORD:-bench-password}
AUTH_COST=${BENCH_AUTH_COST:-10}

# ensure_htpasswd: one bcrypt entry (htpasswd -Bbn -C AUTH_COST), made once per run; sets HTPASSWD.
ensure_htpasswd() {
  HTPASSWD=$RUN_DIR/auth/htpasswd
  [ -s "$HTPASSWD" ] && return
  mkdir -p "$RUN_DIR/auth"
  htpasswd -Bbn -C "$AUTH_COST" "$AUTH_USER" "$AUTH_PASSWORD" | sed '/^$/d' >"$HTPASSWD" ||
    die "htpasswd could not make the bcrypt entry"
  grep -q "^$AUTH_USER:\$2y\$$(printf '%02d' "$AUTH_COST")\\$" "$HTPASSWD" || die "unexpected htpasswd entry: $(cat "$HTPASSWD")"
}

# auth_config PORT DIR AUTH: lib.sh's distribution config, plus auth.htpasswd when AUTH is "on".
auth_config() {
  distribution_config "$1" "$2"
  [ "$3" = on ] || return 0
  printf 'auth:\n  htpasswd:\n    realm: dockyard-bench\n    path: %s\n' "$HTPASSWD"
}

# start_auth_server SLOT AUTH: SLOT (dockyard|distribution) with auth "on" or "off", under the key
# SLOT-AUTH, on a fresh port and data dir, from the same config.yml for both servers. Ready when
# GET /v2/ answers 200 (off) or 401 with a Basic challenge (on); polled every 10 ms, at most 60 s.
start_auth_server() {
  local slot=$1 auth=$2 key=$1-$2 port dir cfg log i out code want=200
  [ "$auth" = on ] && want=401
  port=$(free_port)
  dir=$(mktemp -d "$RUN_DIR/$key-XXXX")
  cfg=$dir.yml log=$dir.log
  auth_config "$port" "$dir" "$auth" >"$cfg"
  if [ "$slot" = dockyard ] && [ -n "$DOCKYARD_BIN" ]; then
    "$DOCKYARD_BIN" serve "$cfg" >"$log" 2>&1 &
  else
    docker-registry serve "$cfg" >"$log" 2>&1 &
  fi
  PID[$key]=$!
  DATA[$key]=$dir
  BASE[$key]=http://127.0.0.1:$port
  for ((i = 0; i < 6000; i++)); do
    out=$(curl -s -o /dev/null -w '%{http_code} %header{www-authenticate}' "${BASE[$key]}/v2/" 2>/dev/null) || out=000
    code=${out%% *}
    [ "$code" = "$want" ] && break
    alive "${PID[$key]}" || break
    sleep 0.01
  done
  if [ "$code" != "$want" ]; then
    tail -n 20 "$log" >&2
    die "$key: GET /v2/ answered $code, not $want (log: $log)"
  fi
  if [ "$auth" = on ] && [[ ${out#* } != Basic\ realm=* ]]; then
    die "$key: 401 without a Basic challenge: '${out#* }'"
  fi
}

# auth_skopeo CREDS_FLAG SRC DEST: skopeo copy with credentials, no TLS, no blob-info cache left over.
auth_skopeo() {
  rm -f "$SKOPEO_CACHE"
  skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "$1" "$AUTH_USER:$AUTH_PASSWORD" "$2" "$3" >/dev/null
}
