//! End to end: the operator's objects for a Registry, started the way a kubelet would start
//! its pod (the container's args, its ConfigMap and Secret volumes at their mount paths in a
//! private mount namespace), then skopeo pushes as a user from the spec and pulls with the
//! generated pull Secret, over TLS verified with the operator-generated CA.

use dockyard_testkit as common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kube::KubeApi;
use common::oci::{assert_same_image, write_oci_layout};
use common::run;
use dockyard::operator::crd::Registry;
use dockyard::operator::metrics::Metrics;
use dockyard::operator::registry::reconcile;
use dockyard::operator::{Context, MANAGER};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::runtime::events::Reporter;

/// The registry process in its own mount namespace, killed (with its namespace) on drop.
struct Pod(Child);

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_secret(dir: &Path, secret: &Secret) {
    std::fs::create_dir_all(dir).unwrap();
    for (key, value) in secret.data.iter().flatten() {
        std::fs::write(dir.join(key), &value.0).unwrap();
    }
}

/// A shell that runs `inner` in a new mount namespace where `/etc/hosts` says `host` is 127.0.0.1.
fn with_hosts(hosts: &Path, inner: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /etc/hosts && {inner}",
            hosts.display()
        ));
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn the_generated_pod_serves_pushes_and_pulls_over_tls() {
    let kube = KubeApi::start();
    assert!(
        kube.apply("crds.yaml", include_str!("../crds/dockyard.dev.yaml"))
            .status
            .success()
    );
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/registries.dockyard.dev",
        "--timeout=30s",
    ]);
    kube.kubectl(&["create", "namespace", "team"]);
    kube.kubectl(&[
        "-n",
        "team",
        "create",
        "secret",
        "generic",
        "pw",
        "--from-literal=alice=s3cret-pass",
    ]);
    // The Service port doubles as the pod's loopback port: the pod has no network namespace here.
    let port = free_port();
    let spec = format!(
        "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {{name: reg, namespace: team}}\nspec:\n  service: {{port: {port}}}\n  storage: {{deleteEnabled: true}}\n  auth:\n    users: [{{username: alice, passwordSecretRef: {{name: pw, key: alice}}}}]\n  pullSecrets: {{namespaces: [team]}}\n"
    );
    assert!(kube.apply("reg.yaml", &spec).status.success());

    let kubeconfig = kube::config::Kubeconfig::read_from(kube.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let ctx = Arc::new(Context::new(
        client.clone(),
        "example.test/dockyard:dev".into(),
        Arc::new(Metrics::new(
            &mut prometheus_client::registry::Registry::default(),
        )),
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
        "dockyard-system".into(),
    ));
    let registries: Api<Registry> = Api::namespaced(client.clone(), "team");
    for _ in 0..2 {
        reconcile(Arc::new(registries.get("reg").await.unwrap()), ctx.clone())
            .await
            .unwrap();
    }

    // Materialise the pod's volumes from the API server, at the paths its mounts name.
    let deployment: Deployment = Api::namespaced(client.clone(), "team")
        .get("reg")
        .await
        .unwrap();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    // Not under /tmp: the pod mounts its own emptyDir there.
    let root = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut binds = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        let src = root.path().join(&mount.name);
        std::fs::create_dir_all(&src).unwrap();
        if let Some(cm) = &volume.config_map {
            let map: ConfigMap = Api::namespaced(client.clone(), "team")
                .get(&cm.name)
                .await
                .unwrap();
            for (key, value) in map.data.iter().flatten() {
                std::fs::write(src.join(key), value).unwrap();
            }
        } else if let Some(s) = &volume.secret {
            write_secret(
                &src,
                &secrets
                    .get(s.secret_name.as_deref().unwrap())
                    .await
                    .unwrap(),
            );
        }
        binds.push(format!(
            "mkdir -p {dst} && mount --bind {src} {dst}",
            src = src.display(),
            dst = mount.mount_path
        ));
    }
    let args = container.args.clone().unwrap().join(" ");
    // Fresh tmpfs over /etc and /var/lib inside the namespace, so the mount points the pod
    // needs are created there and nothing is left on the host.
    let script = format!(
        "mount -t tmpfs tmpfs /etc && mount -t tmpfs tmpfs /var/lib && {} && exec {} {args}",
        binds.join(" && "),
        env!("CARGO_BIN_EXE_dockyard")
    );
    let log = root.path().join("pod.log");
    let _pod = Pod(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "pod did not listen: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The client trusts only the operator's CA and reaches the Service's DNS name.
    let host = format!("reg.team.svc:{port}");
    let hosts = root.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost reg.team.svc\n").unwrap();
    let certs = root.path().join("trust");
    std::fs::create_dir(&certs).unwrap();
    let ca: Secret = secrets.get("reg-ca").await.unwrap();
    std::fs::write(certs.join("ca.crt"), &ca.data.unwrap()["ca.crt"].0).unwrap();
    let pull: Secret = secrets.get("reg-pull").await.unwrap();
    let authfile = root.path().join("auth.json");
    std::fs::write(&authfile, &pull.data.unwrap()[".dockerconfigjson"].0).unwrap();

    let layout = root.path().join("layout");
    let image = write_oci_layout(&layout, "v1", &[200_000, 50_000]);
    let skopeo = |inner: String| run(&mut with_hosts(&hosts, &inner));
    skopeo(format!(
        "skopeo copy --dest-cert-dir {} --dest-creds alice:s3cret-pass oci:{}:v1 docker://{host}/team/app:v1",
        certs.display(),
        layout.display()
    ));
    let pulled = root.path().join("pulled");
    skopeo(format!(
        "skopeo copy --src-cert-dir {} --authfile {} docker://{host}/team/app:v1 oci:{}:v1",
        certs.display(),
        authfile.display(),
        pulled.display()
    ));
    assert_same_image(&layout, &pulled, &image.manifest_digest);

    // The pull Secret's user may pull and nothing else, though deleting is enabled and the
    // spec has no access rules (which would let every other user do everything).
    let refused = |inner: String| {
        let out = with_hosts(&hosts, &inner).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && stderr.contains("denied"),
            "{inner}: {stderr}"
        );
    };
    refused(format!(
        "skopeo copy --dest-cert-dir {} --dest-authfile {} oci:{}:v1 docker://{host}/team/other:v1",
        certs.display(),
        authfile.display(),
        layout.display()
    ));
    refused(format!(
        "skopeo delete --cert-dir {} --authfile {} docker://{host}/team/app:v1",
        certs.display(),
        authfile.display()
    ));
    skopeo(format!(
        "skopeo inspect --cert-dir {} --authfile {} docker://{host}/team/app:v1",
        certs.display(),
        authfile.display()
    ));

    // Without credentials the registry refuses, and a client without the CA does not connect.
    let anonymous = with_hosts(
        &hosts,
        &format!(
            "skopeo inspect --cert-dir {} docker://{host}/team/app:v1",
            certs.display()
        ),
    )
    .output()
    .unwrap();
    assert!(!anonymous.status.success());
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("unauthorized"),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    let untrusted = with_hosts(
        &hosts,
        &format!(
            "skopeo inspect --authfile {} docker://{host}/team/app:v1",
            authfile.display()
        ),
    )
    .output()
    .unwrap();
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
}
