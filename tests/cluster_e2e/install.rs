//! The chart: `helm install` runs the operator, which takes the leader Lease; `helm upgrade` to a
//! new image rolls the registries without losing images; `helm uninstall` keeps the CRDs, the
//! Registries' data and their CAs.

use std::time::Duration;

use crate::fixture::{IMAGE, OPERATOR_NS, RELEASE, TAG, cluster, is_true};
use crate::registry::{Deployed, deploy};

#[test]
fn helm_install_runs_the_operator_and_it_takes_the_lease() {
    let (_turn, c) = cluster();
    let pod = c.wait_for("a Ready operator pod", Duration::from_secs(60), || {
        let pods = c.get(&[
            "pods",
            "-n",
            OPERATOR_NS,
            "-l",
            "app.kubernetes.io/name=dockyard,app.kubernetes.io/component=operator",
        ])?;
        pods["items"]
            .as_array()?
            .iter()
            .find(|p| is_true(p, "Ready"))
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
    });
    let holder = c.wait_for(
        "the Lease held by the operator pod",
        Duration::from_secs(30),
        || {
            let lease = c.get(&["lease", "-n", OPERATOR_NS, "dockyard-operator"])?;
            lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
        },
    );
    assert_eq!(holder, pod, "the Ready operator pod holds the Lease");
    // The node agent runs on the node and reports there, with nothing to configure yet.
    let node = &c.env["MC_NODE"];
    let report = c.wait_for("the node agent's report", Duration::from_secs(60), || {
        c.get(&["lease", "-n", OPERATOR_NS, &format!("dockyard-node-{node}")])
    });
    assert_eq!(report["spec"]["holderIdentity"], node.as_str());
    assert!(
        report["metadata"]["annotations"]["dockyard.dev/report"].is_string(),
        "{report}"
    );
}

#[test]
fn helm_upgrade_rolls_the_registry_and_uninstall_keeps_crds_and_data() {
    let (_turn, c) = cluster();
    let ns = "e2e-upgrade";
    let reg: Deployed = deploy(c, ns, "up");
    reg.push_small("keep/me:1");

    // A new image tag (the same bytes under another name) rolls the registry pod.
    c.import_image(&format!("{IMAGE}:upgraded"));
    let out = c.install("upgraded");
    assert!(out.status.success(), "helm upgrade: {}", out.stderr);
    c.wait_for(
        "the registry on the new image",
        Duration::from_secs(120),
        || {
            let d = c.get(&["deployment", "-n", ns, "up"])?;
            let image = d["spec"]["template"]["spec"]["containers"][0]["image"].as_str()?;
            let s = &d["status"];
            let rolled = s["observedGeneration"] == d["metadata"]["generation"]
                && s["updatedReplicas"] == 1
                && s["readyReplicas"] == 1
                && s["replicas"] == 1;
            (image.ends_with(":upgraded") && rolled).then_some(())
        },
    );
    reg.wait_ready();
    reg.pull("keep/me:1");

    // Uninstall: the operator goes, quietly; the CRDs, the Registry, its claim and its CA stay.
    let log_path = c.path("operator-uninstall.log");
    let mut logs = c.kubectl_command(&[
        "logs",
        "-f",
        "-n",
        OPERATOR_NS,
        &format!("deployment/{RELEASE}-operator"),
    ]);
    let mut follower = logs
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    c.wait_for("kubectl logs -f to attach", Duration::from_secs(30), || {
        (std::fs::metadata(&log_path).ok()?.len() > 0).then_some(())
    });
    let out = c.helm(&["uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait"]);
    assert!(out.status.success(), "helm uninstall: {}", out.stderr);
    assert!(
        c.get(&["crd", "registries.dockyard.dev"]).is_some(),
        "the CRD stays"
    );
    assert!(
        c.get(&["registry", "-n", ns, "up"]).is_some(),
        "the Registry stays"
    );
    assert!(
        c.get(&["pvc", "-n", ns, "up-data"]).is_some(),
        "the data stays"
    );
    assert!(
        c.get(&["secret", "-n", ns, "up-ca"]).is_some(),
        "the CA stays"
    );
    let _ = c.wait_for("the operator's log to end", Duration::from_secs(30), || {
        follower.try_wait().ok().flatten()
    });
    // Dockyard's own lines only: kube-lease-manager may log a refused renewal if one falls
    // between Helm deleting the Role and the pod's SIGTERM.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" dockyard::"))
        .filter(|l| l.contains("ERROR") || l.to_ascii_lowercase().contains("forbidden"))
        .collect();
    assert!(
        bad.is_empty(),
        "the operator's shutdown on uninstall:\n{log}"
    );
    assert!(log.contains("shutdown requested"), "no shutdown in:\n{log}");
    // Back to the suite's release for the other tests.
    let out = c.install(TAG);
    assert!(out.status.success(), "helm install: {}", out.stderr);
    reg.pull("keep/me:1");
}
