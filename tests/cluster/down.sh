#!/usr/bin/env bash
# Stops a cluster started by up.sh and undoes its host changes:
#   bash down.sh [MC_DIR]     # default: $MC_DIR, else ${TMPDIR:-/tmp}/dockyard-cluster.last
# Every process is stopped by the PID recorded in $MC_DIR/pids (after checking
# that PID still runs the recorded program); containerd's shims, which are not
# children of anything up.sh started, are found by their -address argument
# (this cluster's private socket) and stopped by PID. Then: mounts under MC_DIR
# are unmounted, kube-proxy's iptables chains and the FORWARD rule removed, the
# bridge deleted, the kubelet's cgroups removed, sysctls restored, and MC_DIR
# deleted (MC_KEEP=1 keeps it, logs included).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

D=${1:-${MC_DIR:-$(readlink -f "${TMPDIR:-/tmp}/dockyard-cluster.last" 2>/dev/null || true)}}
[[ -n $D && -f $D/pids ]] || mc_die "no MC_DIR with a pids file (got '${D:-}')"
D=$(cd "$D" && pwd)
[[ -f $D/env ]] && source <(grep -E '^(MC_BRIDGE|MC_CONTAINERD_SOCK)=' "$D/env")
SOCK=${MC_CONTAINERD_SOCK:-$D/containerd/containerd.sock}

pid_of() { awk -v n="$1" '$1 == n { print $2 }' "$D/pids" | tail -n1; }
# alive PID: running and not a zombie (nothing reaps up.sh's orphans but PID 1, which
# here takes a second or two).
alive() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
# stop NAME: SIGTERM the recorded PID if it still runs NAME; SIGKILL after 10 s.
stop() {
  local name=$1 pid
  pid=$(pid_of "$name")
  [[ -n $pid ]] || return 0
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name" || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do alive "$pid" || return 0; sleep 0.1; done
  mc_log "$name ($pid) ignored SIGTERM; SIGKILL"
  kill -KILL "$pid" 2>/dev/null
  sleep 0.2
}

began=$SECONDS
# The watchdog up.sh may have left (unless it is what runs this).
[[ $(pid_of watchdog) == "$$" ]] || stop watchdog   # the watchdog execs this script
stop kubelet
stop kube-proxy
stop kube-scheduler
stop kube-controller-manager

# Pod containers: kill their tasks through this containerd, so the shims exit.
if [[ -S $SOCK ]]; then
  CTR=(ctr --address "$SOCK" --namespace k8s.io)
  for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1
  done
  sleep 1
  for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$id" >/dev/null 2>&1; done
  for id in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$id" >/dev/null 2>&1; done
fi
stop containerd
# Leftover shims of this containerd (their command line names our private socket).
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
  [[ $cmd == *containerd-shim* && $cmd == *"-address $SOCK "* ]] || continue
  mc_log "stopping leftover shim $pid"
  kill -KILL "$pid" 2>/dev/null
done
stop kube-apiserver
stop etcd

# Mounts under MC_DIR (volumes, rootfs overlays, netns and shm bind mounts), deepest first.
for _ in 1 2 3; do
  mapfile -t mnts < <(awk -v d="$D/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  ((${#mnts[@]})) || break
  for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done

# iptables: kube-proxy's chains, then our FORWARD rule.
if grep -q '^iptables kube-proxy' "$D/host-changes" 2>/dev/null; then
  kp=$(mc_bin kube-proxy) && "$kp" --cleanup >/dev/null 2>&1
fi
while iptables -w -D FORWARD -i "$MC_BRIDGE" ! -o "$MC_BRIDGE" -m comment --comment dockyard-cluster -j DROP 2>/dev/null; do :; done
# What the kubelet itself adds and kube-proxy --cleanup leaves (IPv4 and IPv6):
# KUBE-FIREWALL (jumped to from INPUT/OUTPUT), KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT.
if grep -q '^iptables kube-proxy' "$D/host-changes" 2>/dev/null; then
  for ipt in iptables ip6tables; do
    for t in filter nat mangle; do
      "$ipt" -w -t "$t" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-(FIREWALL|KUBELET-CANARY|IPTABLES-HINT)$' |
        while read -r _ chain rest; do eval "'$ipt' -w -t '$t' -D '$chain' $rest" 2>/dev/null; done
      for c in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        "$ipt" -w -t "$t" -F "$c" 2>/dev/null && "$ipt" -w -t "$t" -X "$c" 2>/dev/null
      done
    done
  done
fi
if grep -q "^bridge $MC_BRIDGE\$" "$D/host-changes" 2>/dev/null; then
  ip link del "$MC_BRIDGE" 2>/dev/null
fi

# The kubelet's cgroup tree (cgroupfs driver: kubepods/ in every hierarchy), leaves first,
# after killing what still runs in it (containers whose shim went without them).
for h in /sys/fs/cgroup /sys/fs/cgroup/*/; do
  [[ -d $h/kubepods ]] || continue
  find "$h/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | while read -r pid; do
    mc_log "killing pod process $pid left in $h/kubepods"
    kill -KILL "$pid" 2>/dev/null
  done
done
sleep 0.2
for h in /sys/fs/cgroup /sys/fs/cgroup/*/; do
  [[ -d $h/kubepods ]] || continue
  find "$h/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
  [[ -d $h/kubepods ]] && mc_log "warning: $h/kubepods could not be removed"
done

# sysctls the kubelet (or up.sh) changed.
if [[ -f $D/sysctl.orig ]]; then
  while IFS='=' read -r k v; do
    [[ -n $v && $(sysctl -n "$k" 2>/dev/null) != "$v" ]] && sysctl -qw "$k=$v"
  done <"$D/sysctl.orig"
fi

# The kubelet's /var/log/containers symlinks into this cluster's pod logs.
for l in /var/log/containers/*.log; do
  [[ -L $l && $(readlink "$l") == "$D/"* ]] && rm -f "$l"
done
grep -q '^dir /var/log/containers$' "$D/host-changes" 2>/dev/null && rmdir /var/log/containers 2>/dev/null

[[ $(readlink -f "${TMPDIR:-/tmp}/dockyard-cluster.last" 2>/dev/null) == "$D" ]] && rm -f "${TMPDIR:-/tmp}/dockyard-cluster.last"
if [[ ${MC_KEEP:-0} == 1 ]]; then
  mc_log "stopped in $((SECONDS - began)) s; kept $D"
else
  rm -rf --one-file-system "$D"
  mc_log "stopped in $((SECONDS - began)) s; removed $D"
fi
