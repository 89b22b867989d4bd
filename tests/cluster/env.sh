# Defaults shared by up.sh and down.sh (sourced, not run). Every path and address is only a
# default: override it in the environment.

MC_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
MAIN=$(cd "$MC_HERE/../.." && pwd)
# tests/setup.sh puts etcd, kube-apiserver, kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy and kubectl here.
DOCKYARD_TOOLS=${DOCKYARD_TOOLS:-$MAIN/.tools}
MC_BIN=${MC_BIN:-$DOCKYARD_TOOLS/bin}
# The pod sandbox image, built by up.sh from pause.c when missing.
MC_IMAGES=${MC_IMAGES:-$DOCKYARD_TOOLS/cluster-images}
MC_PAUSE_IMAGE=${MC_PAUSE_IMAGE:-dockyard-test.local/pause:1}

# Node and networking. The node IP lives on the pod bridge, which up.sh creates before
# anything starts: every component talks over it or over 127.0.0.1, never eth0.
MC_NODE=${MC_NODE:-dockyard-node}
MC_BRIDGE=${MC_BRIDGE:-dybr0}
MC_POD_CIDR=${MC_POD_CIDR:-10.244.0.0/24}
MC_NODE_IP=${MC_NODE_IP:-10.244.0.1}
MC_SERVICE_CIDR=${MC_SERVICE_CIDR:-10.96.0.0/24}
MC_KUBERNETES_SVC_IP=${MC_KUBERNETES_SVC_IP:-10.96.0.1}
# Local PersistentVolumes up.sh creates for the default StorageClass "local".
MC_VOLUMES=${MC_VOLUMES:-24}

# CNI plugin binaries (Debian containernetworking-plugins).
MC_CNI_BIN=${MC_CNI_BIN:-/usr/lib/cni}

mc_log() { printf 'cluster: %s\n' "$*" >&2; }
mc_die() { mc_log "error: $*"; exit 1; }

# mc_bin NAME: NAME from $MC_BIN (never PATH: /usr/bin/kubectl may be something else).
mc_bin() { [[ -x $MC_BIN/$1 ]] && echo "$MC_BIN/$1"; }

mc_free_port() { # mc_free_port [ADDR]
  python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1]); s.close()' "${1:-127.0.0.1}"
}
