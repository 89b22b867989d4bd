//! What the Registry's status says on a real cluster, where pods roll and claims bind for
//! real: a spec change is never reported Ready before the new pod is, and a claim that cannot
//! bind or a pod that cannot be placed is named in the Ready condition and in an Event.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{Cluster, cluster, condition, is_true};
use crate::registry::deploy;

#[test]
fn after_a_spec_change_ready_waits_for_the_new_pod() {
    let (_turn, c) = cluster();
    let ns = "e2e-rollout";
    let _reg = deploy(c, ns, "roll");
    let generation_of = || {
        c.get(&["registry", "-n", ns, "roll"]).unwrap()["metadata"]["generation"]
            .as_i64()
            .unwrap()
    };
    let before = generation_of();
    // A value of its own each run, so that a reused cluster still sees a change.
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let patch = format!(r#"{{"spec":{{"podAnnotations":{{"e2e/rollout":"{stamp}"}}}}}}"#);
    c.kubectl(&[
        "patch",
        "registry",
        "roll",
        "-n",
        ns,
        "--type=merge",
        "-p",
        &patch,
    ]);
    let generation = generation_of();
    assert!(generation > before, "the patch did not change the spec");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut saw_not_ready = false;
    loop {
        let r = c.get(&["registry", "-n", ns, "roll"]).unwrap();
        let observed = r["status"]["observedGeneration"].as_i64().unwrap_or(0);
        if observed == generation {
            if is_true(&r, "Ready") {
                // Ready for this generation: the Deployment must have finished rolling.
                let d = c.get(&["deployment", "-n", ns, "roll"]).unwrap();
                let s = &d["status"];
                assert!(
                    s["observedGeneration"] == d["metadata"]["generation"]
                        && s["updatedReplicas"] == 1
                        && s["readyReplicas"] == 1
                        && s["replicas"] == 1,
                    "Ready for generation {generation} while the Deployment is at {s}"
                );
                break;
            }
            saw_not_ready = true;
        }
        assert!(
            Instant::now() < deadline,
            "never Ready again: {}",
            r["status"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        saw_not_ready,
        "the rollout was never reported (Ready stayed True throughout)"
    );
}

fn ready_reason(c: &Cluster, ns: &str, name: &str) -> Option<(String, String)> {
    let r = c.get(&["registry", "-n", ns, name])?;
    let ready = condition(&r, "Ready")?;
    (ready["status"] == "False").then(|| {
        (
            ready["reason"].as_str().unwrap_or("").to_owned(),
            ready["message"].as_str().unwrap_or("").to_owned(),
        )
    })
}

fn events_for(c: &Cluster, ns: &str, name: &str) -> Vec<Value> {
    let events = c.get(&["events", "-n", ns]).unwrap();
    events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["involvedObject"]["kind"] == "Registry" && e["involvedObject"]["name"] == name
        })
        .cloned()
        .collect()
}

#[test]
fn a_claim_that_cannot_bind_and_a_pod_that_cannot_be_placed_are_reported() {
    let (_turn, c) = cluster();
    let ns = "e2e-waiting";
    c.apply(
        "e2e-waiting.yaml",
        &format!(
            r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata: {{name: noclass, namespace: {ns}}}
spec:
  storage:
    filesystem: {{size: 1Gi, storageClassName: no-such-class}}
---
apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata: {{name: nowhere, namespace: {ns}}}
spec:
  nodeSelector: {{e2e/no-such-label: "true"}}
"#
        ),
    );
    // The claim may be reported pending for a moment, before the scheduler has spoken.
    for (name, needle) in [("noclass", "noclass-data"), ("nowhere", "node")] {
        let (reason, message) = c.wait_for(
            &format!("Registry {name} to say why it is not ready"),
            Duration::from_secs(60),
            || {
                let (reason, message) = ready_reason(c, ns, name)?;
                (reason == "Unschedulable").then_some((reason, message))
            },
        );
        assert!(message.contains(needle), "{name}: {reason}: {message}");
        let event = c.wait_for(
            &format!("an Event on {name}"),
            Duration::from_secs(30),
            || {
                events_for(c, ns, name)
                    .into_iter()
                    .find(|e| e["reason"] == reason)
            },
        );
        assert!(
            event["message"].as_str().unwrap_or("").contains(needle),
            "{event}"
        );
    }
    c.kubectl(&["delete", "namespace", ns, "--wait=false"]);
}
