//! Without Kubernetes: the image runs the registry:2 way on a real Docker engine (Debian's
//! dockerd), with the README's `docker run` line and the settings of `compose.yaml` (checked
//! with `docker-compose config`): TLS, htpasswd users made with the image itself, a named data
//! volume that survives the container, and a read-only root filesystem.

use std::process::Command;

use serde_json::Value;

use crate::common::cmd::{Outcome, run, run_capture, tool};
use crate::common::dockerd::Dockerd;
use crate::common::oci::write_oci_layout;
use crate::fixture::{IMAGE, TAG, image_archive, repo};

/// The engine has no bridge here (`--bridge=none`): containers use the host's network, and the
/// published port of compose.yaml becomes REGISTRY_HTTP_ADDR on loopback.
fn run_registry(d: &Dockerd, name: &str, env: &[(String, String)], volumes: &[String], addr: &str) {
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
    ]
    .map(String::from)
    .to_vec();
    for (k, v) in env {
        args.extend(["-e".into(), format!("{k}={v}")]);
    }
    args.extend(["-e".into(), format!("REGISTRY_HTTP_ADDR={addr}")]);
    for v in volumes {
        args.extend(["-v".into(), v.clone()]);
    }
    args.push(format!("{IMAGE}:{TAG}"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&mut d.docker(&refs));
}

fn skopeo(args: &[&str]) -> Outcome {
    run_capture(Command::new(tool("skopeo")).args(args))
}

#[test]
fn the_image_runs_the_registry2_way_with_compose_settings_tls_and_htpasswd() {
    // Not alongside the cluster tests: both are heavy for a 2-core machine.
    let _turn = crate::fixture::turn();
    let dir = tempfile::tempdir().unwrap();
    let d = Dockerd::start(&dir.path().join("docker"), r#""debug": false"#);
    let sock = format!("unix://{}", dir.path().join("docker/docker.sock").display());
    run(Command::new(tool("skopeo")).args([
        "copy",
        "--dest-daemon-host",
        &sock,
        &format!("oci-archive:{}", image_archive().display()),
        &format!("docker-daemon:{IMAGE}:{TAG}"),
    ]));

    // compose.yaml is valid, and its settings are the ones this test runs with.
    let config = run(Command::new("docker-compose")
        .args([
            "-f",
            &repo().join("compose.yaml").to_string_lossy(),
            "config",
        ])
        .current_dir(dir.path()));
    let compose: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
    let service = &compose["services"]["registry"];
    assert_eq!(
        service["read_only"],
        serde_yaml::Value::Bool(true),
        "{config}"
    );
    let env: Vec<(String, String)> = service["environment"]
        .as_mapping()
        .expect("compose environment")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        env.iter()
            .any(|(k, v)| k == "REGISTRY_AUTH" && v == "htpasswd"),
        "{config}"
    );

    // The files compose.yaml's comment says to make: a certificate, and an htpasswd file made
    // by the image itself.
    let certs = dir.path().join("certs");
    let auth = dir.path().join("auth");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&auth).unwrap();
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        &certs.join("domain.key").to_string_lossy(),
        "-out",
        &certs.join("domain.crt").to_string_lossy(),
    ]));
    // As compose.yaml's comment says: the key belongs to the server's user, and no one else.
    std::os::unix::fs::chown(certs.join("domain.key"), Some(65532), Some(65532)).unwrap();
    let mut htpasswd = d.docker(&[
        "run",
        "--rm",
        "-i",
        &format!("{IMAGE}:{TAG}"),
        "htpasswd",
        "--password-stdin",
        "alice",
    ]);
    htpasswd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = htpasswd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a-long-password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "docker run ... htpasswd");
    std::fs::write(auth.join("htpasswd"), &out.stdout).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let volumes = [
        "dockyard-data:/var/lib/registry".to_owned(),
        format!("{}:/certs:ro", certs.display()),
        format!("{}:/auth:ro", auth.display()),
    ];
    run_registry(&d, "registry", &env, &volumes, &addr);
    let trust = dir.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(certs.join("domain.crt"), trust.join("ca.crt")).unwrap();
    let trust = trust.to_string_lossy().into_owned();
    wait_for_tls(&addr, &d);

    let layout = dir.path().join("layout");
    write_oci_layout(&layout, "v1", &[300_000]);
    let src = format!("oci:{}:v1", layout.display());
    let dest = format!("docker://{addr}/team/app:v1");
    // Without credentials: refused.
    let anonymous = skopeo(&["copy", "--dest-cert-dir", &trust, &src, &dest]);
    assert!(!anonymous.status.success(), "pushed without credentials");
    assert!(
        anonymous.stderr.contains("authentication required"),
        "{}",
        anonymous.stderr
    );
    let pushed = skopeo(&[
        "copy",
        "--dest-cert-dir",
        &trust,
        "--dest-creds",
        "alice:a-long-password",
        &src,
        &dest,
    ]);
    assert!(pushed.status.success(), "push: {}", pushed.stderr);

    // A new container on the same volume still has the image.
    run(&mut d.docker(&["rm", "-f", "registry"]));
    run_registry(&d, "registry2", &env, &volumes, &addr);
    wait_for_tls(&addr, &d);
    let inspect = skopeo(&[
        "inspect",
        "--cert-dir",
        &trust,
        "--creds",
        "alice:a-long-password",
        &dest,
    ]);
    assert!(
        inspect.status.success(),
        "after a new container: {}",
        inspect.stderr
    );
    let manifest: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(manifest["Layers"].as_array().map(Vec::len), Some(1));
    run(&mut d.docker(&["rm", "-f", "registry2"]));
    run(&mut d.docker(&["volume", "rm", "dockyard-data"]));
}

fn wait_for_tls(addr: &str, d: &Dockerd) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let url = format!("https://{addr}/v2/");
    loop {
        let out = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout) == "401" {
            return;
        }
        if std::time::Instant::now() > deadline {
            let logs = d.docker(&["ps", "-a"]).output().unwrap();
            panic!(
                "the registry did not answer 401 on {url}: {}",
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
