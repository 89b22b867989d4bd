//! The node agent's DaemonSet as rendered: confined to the host directories it needs, no
//! capabilities, no host network, its own RBAC objects, and every value reaching it.

use super::*;

/// The node path mounted at `mount_path` in the agent's container: (hostPath, type, readOnly).
fn host_mount(pod: &Value, mount_path: &str) -> (String, String, bool) {
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .and_then(|mounts| mounts.iter().find(|m| m["mountPath"] == mount_path))
        .unwrap_or_else(|| panic!("nothing mounted at {mount_path}: {pod:?}"));
    let volume = pod["volumes"]
        .as_sequence()
        .and_then(|volumes| volumes.iter().find(|v| v["name"] == mount["name"]))
        .unwrap_or_else(|| panic!("no volume for {mount:?}"));
    let host = &volume["hostPath"];
    (
        host["path"].as_str().expect("a hostPath volume").to_owned(),
        host["type"].as_str().expect("a hostPath type").to_owned(),
        mount["readOnly"] == true,
    )
}

#[test]
fn chart_renders_a_confined_node_agent() {
    let docs = documents(&render(&[]));
    // The Lease policy needs ValidatingAdmissionPolicy (Kubernetes 1.30): rendered where the
    // cluster serves it, left out where it does not (so the install still works there).
    let policies = |docs: &[Value]| {
        docs.iter()
            .filter(|d| d["kind"] == "ValidatingAdmissionPolicy")
            .count()
    };
    assert_eq!(policies(&docs), 1);
    let older = documents(&helm(&[
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
    ]));
    assert_eq!(policies(&older), 0, "no policy on clusters before 1.30");
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ] {
        let object = find_named(&docs, kind, AGENT);
        if kind.ends_with("Binding") {
            assert_eq!(object["subjects"][0]["name"], AGENT, "{kind}");
            assert_eq!(object["roleRef"]["name"], AGENT, "{kind}");
        }
    }
    let daemon_set = find_named(&docs, "DaemonSet", AGENT);
    assert_eq!(daemon_set["metadata"]["namespace"], NAMESPACE);
    let pod = &daemon_set["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], AGENT);
    assert_eq!(pod["hostPID"], false, "hostPID only with nodeAgent.reload");
    assert_eq!(pod["hostNetwork"], Value::Null);
    let everything: Value = serde_yaml::from_str("[{operator: Exists}]").expect("yaml");
    assert_eq!(
        pod["tolerations"], everything,
        "every node, tainted ones too"
    );
    assert_eq!(
        pod["nodeSelector"]["kubernetes.io/os"], "linux",
        "Linux nodes only"
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"],
        "the operator's image"
    );
    let node_agent: Value = serde_yaml::from_str("[node-agent]").expect("yaml");
    assert_eq!(container["args"], node_agent);
    for (name, field) in [
        ("NODE_NAME", "spec.nodeName"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            env_value(container, name)["valueFrom"]["fieldRef"]["fieldPath"],
            field
        );
    }
    for (name, value) in [
        ("DOCKYARD_HOST_ROOT", "/host"),
        ("DOCKYARD_CONTAINERD_CONFIG", "/etc/containerd/config.toml"),
        ("DOCKYARD_STATE_DIR", "/var/lib/dockyard/node-agent"),
        ("DOCKYARD_RELOAD_DOCKER", "false"),
        ("DOCKYARD_RELOAD_CRIO", "false"),
        ("DOCKYARD_RESYNC_SECONDS", "30"),
        ("DOCKYARD_METRICS_ADDR", "0.0.0.0:8081"),
    ] {
        assert_eq!(env_value(container, name)["value"], value, "{name}");
    }
    assert_eq!(container["ports"][0]["containerPort"], 8081);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["privileged"], Value::Null);
    let drop_all: Value = serde_yaml::from_str("[ALL]").expect("yaml");
    assert_eq!(security["capabilities"]["drop"], drop_all);
    assert_eq!(security["capabilities"]["add"], Value::Null);
    // The node's /etc, the state dir and /run (read-only, for pid files and the socket):
    // nothing else of the host.
    assert_eq!(
        host_mount(pod, "/host/etc"),
        ("/etc".into(), "Directory".into(), false)
    );
    assert_eq!(
        host_mount(pod, "/host/var/lib/dockyard/node-agent"),
        (
            "/var/lib/dockyard/node-agent".into(),
            "DirectoryOrCreate".into(),
            false
        )
    );
    assert_eq!(
        host_mount(pod, "/host/run"),
        ("/run".into(), "Directory".into(), true)
    );
    assert_eq!(pod["volumes"].as_sequence().map(Vec::len), Some(3));

    // Values reach the DaemonSet: host paths, containerd's config, state dir, resync, port, reload.
    let docs = documents(&render(&[
        "nodeAgent.hostPaths={/etc,/var/lib/rancher}",
        "nodeAgent.containerdConfig=/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
        "nodeAgent.stateDir=/var/lib/dockyard-agent",
        "nodeAgent.resyncSeconds=120",
        "nodeAgent.metricsPort=9091",
        "nodeAgent.reload=true",
    ]));
    let pod = &find_named(&docs, "DaemonSet", AGENT)["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true, "signals to dockerd and CRI-O");
    let container = &pod["containers"][0];
    for (name, value) in [
        (
            "DOCKYARD_CONTAINERD_CONFIG",
            "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
        ),
        ("DOCKYARD_STATE_DIR", "/var/lib/dockyard-agent"),
        ("DOCKYARD_RELOAD_DOCKER", "true"),
        ("DOCKYARD_RELOAD_CRIO", "true"),
        ("DOCKYARD_RESYNC_SECONDS", "120"),
        ("DOCKYARD_METRICS_ADDR", "0.0.0.0:9091"),
    ] {
        assert_eq!(env_value(container, name)["value"], value, "{name}");
    }
    assert_eq!(container["ports"][0]["containerPort"], 9091);
    for path in ["/etc", "/var/lib/rancher"] {
        assert_eq!(
            host_mount(pod, &format!("/host{path}")),
            (path.into(), "Directory".into(), false)
        );
    }
    assert_eq!(
        host_mount(pod, "/host/var/lib/dockyard-agent"),
        (
            "/var/lib/dockyard-agent".into(),
            "DirectoryOrCreate".into(),
            false
        )
    );
    assert_eq!(pod["volumes"].as_sequence().map(Vec::len), Some(4));

    // Off: no DaemonSet and none of the agent's RBAC; the operator is unchanged.
    let docs = documents(&render(&["nodeAgent.enabled=false"]));
    let agent_objects: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "DaemonSet" || d["metadata"]["name"] == AGENT)
        .collect();
    assert!(agent_objects.is_empty(), "{agent_objects:?}");
    find(&docs, "Deployment");
}
