#!/usr/bin/env bash
# Starts Dockyard's test cluster: a single-node Kubernetes (the version tools/k8s pins) on this
# machine, with etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a private
# containerd (CRI, runc, cgroupfs, overlayfs), a kubelet and kube-proxy (iptables). Pods get IPs
# from a CNI bridge ($MC_BRIDGE, $MC_POD_CIDR); the node IP is the bridge's own address, so the
# API server, the kubelet and Services are reached without touching eth0, and pod traffic
# leaving the bridge for any other interface is dropped. A default StorageClass "local" has
# $MC_VOLUMES PersistentVolumes in directories under MC_DIR, so claims bind.
#
#   sudo bash tests/cluster/up.sh          # prints MC_DIR=... and KUBECONFIG=...
#   bash tests/cluster/down.sh "$MC_DIR"   # stops everything by PID, undoes host changes
#
# Needs root, writable cgroups, and tests/setup.sh run first. Writes $MC_DIR/pids ("NAME PID"
# lines), $MC_DIR/env (ports, paths) and logs in $MC_DIR/logs. One cluster per machine with
# the default bridge and CIDRs. The settings this VM needs (cgroup v1, no CAP_SYS_RESOURCE,
# offline pause image) are explained where they are made.
set -Eeuo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# containerd's hosts.toml root (CRI registry.config_path). Private by default; set
# MC_CERTS_D=/etc/containerd/certs.d to use the host's real one.
MC_READY_TIMEOUT=${MC_READY_TIMEOUT:-180}
MC_V=${MC_V:-2}
began=$SECONDS

[[ $(id -u) == 0 ]] || mc_die "run as root"
for c in containerd containerd-shim-runc-v2 runc ip iptables openssl curl python3 ctr; do
  command -v "$c" >/dev/null || mc_die "$c not found (run tests/setup.sh)"
done
declare -A B
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  B[$c]=$(mc_bin "$c") || mc_die "$c not found in $MC_BIN (run tests/setup.sh)"
done
ip link show "$MC_BRIDGE" >/dev/null 2>&1 && mc_die "bridge $MC_BRIDGE exists: another test cluster is up (down.sh it, or set MC_BRIDGE/MC_POD_CIDR/MC_NODE_IP)"

# The pod sandbox image: registry.k8s.io/pause cannot be reached offline.
mkdir -p "$MC_IMAGES"
pause_want="$(cat "$MC_HERE/pause.c" "$MC_HERE/mkimage.py" "$MAIN/image/build.py" | sha256sum | cut -c1-16) $MC_PAUSE_IMAGE"
if [[ ! -f $MC_IMAGES/pause.tar || $(cat "$MC_IMAGES/.pause.stamp" 2>/dev/null) != "$pause_want" ]]; then
  command -v gcc >/dev/null || mc_die "gcc not found (run tests/setup.sh)"
  gcc -static -Os -s -o "$MC_IMAGES/pause" "$MC_HERE/pause.c"
  python3 "$MC_HERE/mkimage.py" "$MC_IMAGES/pause" /pause "$MC_PAUSE_IMAGE" "$MC_IMAGES/pause.tar"
  echo "$pause_want" >"$MC_IMAGES/.pause.stamp"
fi

MC_DIR=${MC_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/dockyard-cluster.XXXXXX")}
MC_CERTS_D=${MC_CERTS_D:-$MC_DIR/certs.d}
D=$MC_DIR
mkdir -p "$D"/{pki,logs,etcd,kubelet,pod-logs,cni/net.d,cni/ipam,containerd,volumes} "$MC_CERTS_D"
PIDS=$D/pids
: >"$PIDS"
ln -sfn "$D" "${TMPDIR:-/tmp}/dockyard-cluster.last"
on_fail() {
  mc_log "start-up failed; logs in $D/logs. Stopping what was started: bash $MC_HERE/down.sh $D"
  MC_KEEP=1 bash "$MC_HERE/down.sh" "$D" || true
  exit 1
}
trap on_fail ERR INT TERM

# spawn NAME CMD...: starts CMD in the background (own session), logs to logs/NAME.log.
spawn() {
  local name=$1; shift
  setsid "$@" </dev/null >"$D/logs/$name.log" 2>&1 &
  echo "$name $!" >>"$PIDS"
}
# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local what=$1 t=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { mc_log "timed out waiting for $what"; return 1; }
    sleep 0.5
  done
  mc_log "$what ready ($((SECONDS - began)) s)"
}

# ---- host state that down.sh restores --------------------------------------------
# The kubelet sets these sysctls itself (vm.overcommit_memory=1, kernel.panic=10,
# kernel.panic_on_oops=1, ...); record the old values.
for s in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward \
  net.bridge.bridge-nf-call-iptables; do
  echo "$s=$(sysctl -n "$s" 2>/dev/null)"
done >"$D/sysctl.orig"
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1

# The bridge carries the node IP from the start (the kubelet refuses a loopback node IP).
ip link add "$MC_BRIDGE" type bridge
echo "bridge $MC_BRIDGE" >>"$D/host-changes"
ip addr add "$MC_NODE_IP/${MC_POD_CIDR#*/}" dev "$MC_BRIDGE"
ip link set "$MC_BRIDGE" up
# Pods may talk to each other, to the node and to Services, but nothing leaves the bridge.
iptables -w -I FORWARD -i "$MC_BRIDGE" ! -o "$MC_BRIDGE" -m comment --comment dockyard-cluster -j DROP
echo "iptables FORWARD -i $MC_BRIDGE ! -o $MC_BRIDGE -m comment --comment dockyard-cluster -j DROP" >>"$D/host-changes"

# ---- PKI (EC P-256, 7 days) ------------------------------------------------------
P=$D/pki
cat >"$P/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = dockyard-test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[apiserver]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:$MC_NODE_IP,IP:$MC_KUBERNETES_SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[kubelet]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:$MC_NODE_IP,IP:127.0.0.1,DNS:$MC_NODE
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
EOF
ossl() { (cd "$P" && openssl "$@" 2>/dev/null); }
EC=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc)
ossl req -x509 -config openssl.cnf -extensions ca "${EC[@]}" -keyout ca.key -out ca.crt -days 7 -subj /CN=dockyard-test-ca
cert() { # cert NAME SECTION SUBJECT
  ossl req -new -config openssl.cnf "${EC[@]}" -keyout "$1.key" -out "$1.csr" -subj "$3"
  ossl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
    -extfile openssl.cnf -extensions "$2" -out "$1.crt"
}
cert apiserver apiserver /CN=kube-apiserver
cert kubelet-serving kubelet "/CN=$MC_NODE"
cert admin client /O=system:masters/CN=admin
cert apiserver-kubelet-client client /O=system:masters/CN=kube-apiserver-kubelet-client
cert kube-controller-manager client /CN=system:kube-controller-manager
cert kube-scheduler client /CN=system:kube-scheduler
cert kube-proxy client /CN=system:kube-proxy
cert kubelet client "/O=system:nodes/CN=system:node:$MC_NODE"
ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key
ossl pkey -in sa.key -pubout -out sa.pub

# ---- etcd --------------------------------------------------------------------------
ETCD_PORT=$(mc_free_port) ETCD_PEER_PORT=$(mc_free_port)
spawn etcd "${B[etcd]}" --name=dockyard-test --data-dir="$D/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="dockyard-test=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync=true --log-level=warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

# ---- kube-apiserver (on the node IP: pods reach it through the kubernetes Service) ---
API_PORT=$(mc_free_port "$MC_NODE_IP")
SERVER=https://$MC_NODE_IP:$API_PORT
spawn kube-apiserver "${B[kube-apiserver]}" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address="$MC_NODE_IP" --advertise-address="$MC_NODE_IP" --secure-port="$API_PORT" \
  --cert-dir="$D/apiserver-certs" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range="$MC_SERVICE_CIDR" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true --profiling=false --v=0
kubeconfig() { # kubeconfig NAME CERTNAME
  cat >"$D/$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dockyard-test
  cluster:
    server: $SERVER
    certificate-authority: $P/ca.crt
users:
- name: $2
  user:
    client-certificate: $P/$2.crt
    client-key: $P/$2.key
contexts:
- name: dockyard-test
  context:
    cluster: dockyard-test
    user: $2
    namespace: default
current-context: dockyard-test
EOF
}
kubeconfig kubeconfig admin
for c in kube-controller-manager kube-scheduler kube-proxy kubelet; do kubeconfig "$c.kubeconfig" "$c"; done
KUBECTL=("${B[kubectl]}" --kubeconfig "$D/kubeconfig" --cache-dir "$D/kubectl-cache")
api_ready() { [[ $(curl -sS --max-time 2 --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "$SERVER/readyz") == ok ]]; }
wait_for kube-apiserver 120 api_ready

# ---- controller-manager and scheduler ------------------------------------------------
KCM_PORT=$(mc_free_port) SCHED_PORT=$(mc_free_port)
spawn kube-controller-manager "${B[kube-controller-manager]}" \
  --kubeconfig="$D/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$D/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$D/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
  --use-service-account-credentials=true --service-account-private-key-file="$P/sa.key" \
  --root-ca-file="$P/ca.crt" --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --service-cluster-ip-range="$MC_SERVICE_CIDR" --profiling=false --v=1
spawn kube-scheduler "${B[kube-scheduler]}" \
  --kubeconfig="$D/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$D/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$D/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --leader-elect=false --profiling=false --v=1

# ---- containerd (private root/state/socket; CRI with runc + cgroupfs) ------------------
C=$D/containerd
SOCK=$C/containerd.sock
cat >"$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$SOCK"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$MC_PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # This VM's bounding set lacks CAP_SYS_RESOURCE: nobody may lower oom_score_adj, and
  # runc fails the pause container on oom_score_adj=-998 ("can't get final child's PID
  # from pipe: EOF"). Clamp every container's score to containerd's own (0).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$C/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$MC_CNI_BIN"
    conf_dir = "$D/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$MC_CERTS_D"
EOF
cat >"$D/cni/net.d/10-dockyard-test.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "dockyard-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$MC_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$D/cni/ipam",
        "ranges": [[{ "subnet": "$MC_POD_CIDR", "gateway": "$MC_NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "loopback" }
  ]
}
EOF
spawn containerd containerd --config "$C/config.toml" --log-level info
CTR=(ctr --address "$SOCK" --namespace k8s.io)
wait_for containerd 30 "${CTR[@]}" version
"${CTR[@]}" images import "$MC_IMAGES/pause.tar" >/dev/null

# ---- kubelet ---------------------------------------------------------------------------
# It symlinks every container log into /var/log/containers (a fixed path).
[[ -d /var/log/containers ]] || echo "dir /var/log/containers" >>"$D/host-changes"
KUBELET_PORT=$(mc_free_port "$MC_NODE_IP") KUBELET_HEALTHZ_PORT=$(mc_free_port)
cat >"$D/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $MC_NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podLogsDir: $D/pod-logs
clusterDomain: cluster.local
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
# 1.35's KubeletEnsureSecretPulledImages: once the kubelet has pulled an image ID under
# one name (say example.test/busybox:1 through a mirror), an imported image with the same
# ID under another name counts as "not preloaded" and imagePullPolicy: Never fails with
# ErrImageNeverPull. A test bed wants no credential re-verification at all.
imagePullCredentialsVerificationPolicy: NeverVerify
# kubelet default -999 for itself fails without CAP_SYS_RESOURCE (logged, not fatal).
oomScoreAdj: 0
EOF
spawn kubelet "${B[kubelet]}" --config="$D/kubelet.yaml" --kubeconfig="$D/kubelet.kubeconfig" \
  --root-dir="$D/kubelet" --cert-dir="$D/kubelet/pki" --hostname-override="$MC_NODE" --node-ip="$MC_NODE_IP" --v="$MC_V"

# ---- kube-proxy (iptables; NodePorts only on the node IP; no conntrack sysctls) ---------
spawn kube-proxy "${B[kube-proxy]}" --kubeconfig="$D/kube-proxy.kubeconfig" --hostname-override="$MC_NODE" \
  --proxy-mode=iptables --cluster-cidr="$MC_POD_CIDR" --nodeport-addresses="$MC_NODE_IP/32" \
  --iptables-localhost-nodeports=false --conntrack-max-per-core=0 \
  --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
  --healthz-bind-address="127.0.0.1:$(mc_free_port)" --metrics-bind-address="127.0.0.1:$(mc_free_port)" --v=1
echo "iptables kube-proxy" >>"$D/host-changes"

cat >"$D/env" <<EOF
MC_DIR=$D
KUBECONFIG=$D/kubeconfig
MC_SERVER=$SERVER
MC_NODE=$MC_NODE
MC_NODE_IP=$MC_NODE_IP
MC_BRIDGE=$MC_BRIDGE
MC_CERTS_D=$MC_CERTS_D
MC_CONTAINERD_SOCK=$SOCK
ETCD_PORT=$ETCD_PORT
KUBELET_PORT=$KUBELET_PORT
EOF

node_ready() { [[ $("${KUBECTL[@]}" get node "$MC_NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]; }
wait_for "node $MC_NODE Ready" "$MC_READY_TIMEOUT" node_ready
sa_ready() { "${KUBECTL[@]}" -n default get serviceaccount default; }
wait_for "default ServiceAccount" 60 sa_ready

# ---- storage: a default StorageClass with local volumes (no provisioner needed) -------------
{
  cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
  for ((i = 0; i < MC_VOLUMES; i++)); do
    mkdir -p "$D/volumes/pv$i"
    cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-pv$i
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  local: {path: $D/volumes/pv$i}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$MC_NODE]}]
EOF
  done
} | "${KUBECTL[@]}" apply -f - >/dev/null
# Pods write their volumes as any user (the registry runs as 65532).
chmod 0777 "$D"/volumes/pv*
trap - ERR INT TERM
# MC_WATCH_PID: stop the cluster when that process ends, however it ends (a test run killed
# by a timeout or ^C leaves no kubelet behind, nor the sysctls it set).
if [[ -n ${MC_WATCH_PID:-} ]]; then
  setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done; exec bash "$2" "$3"' watchdog \
    "$MC_WATCH_PID" "$MC_HERE/down.sh" "$D" </dev/null >>"$D/logs/watchdog.log" 2>&1 &
  echo "watchdog $!" >>"$PIDS"
fi
mc_log "up in $((SECONDS - began)) s"
echo "MC_DIR=$D"
echo "KUBECONFIG=$D/kubeconfig"
echo "stop with: bash $MC_HERE/down.sh $D"
