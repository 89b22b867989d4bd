//! The `dockyard` command line as a user meets it: where it says it listens and stores,
//! JSON logs, warnings for unknown configuration, and clear refusals of bad configuration.

use dockyard_testkit as common;

use std::process::Command;

use common::http::http_get;
use common::server::Server;

fn dockyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dockyard"))
}

#[test]
fn json_logs_say_where_it_listens_and_stores() {
    let server = Server::builder().env("DOCKYARD_LOG_FORMAT", "json").start();
    let (status, _, _) = http_get(&server.addr, "/v2/?ns=docker.io");
    assert_eq!(status, 200);
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "no JSON log lines in:\n{log}");
    let start = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("listening"))
        })
        .expect("start line");
    assert_eq!(start["listen"], server.addr.to_string());
    assert!(
        start["location"].as_str().is_some_and(|l| !l.is_empty()),
        "{start}"
    );
    let access = lines
        .iter()
        .find(|l| {
            l["span"]["uri"]
                .as_str()
                .is_some_and(|u| u.contains("ns=docker.io"))
        })
        .expect("access line with the query");
    assert_eq!(access["status"], 200);
}

#[test]
fn unknown_config_keys_warn_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /unused\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: :5000\n  bogus: 1\nnotifications: {}\n",
    )
    .unwrap();
    // REGISTRY_* from the test harness override the file's address and directory.
    let server = Server::builder()
        .env("DOCKYARD_CONFIG", config.to_str().unwrap())
        .start();
    let log = server.log();
    for key in ["http.bogus", "notifications", "storage.cache"] {
        assert!(log.contains(key), "no warning naming {key} in:\n{log}");
    }
    assert_eq!(http_get(&server.addr, "/v2/").0, 200);
}

fn refuses(config_text: &str, expect: &str) {
    refuses_with(config_text, expect, true)
}

fn refuses_with(config_text: &str, expect: &str, set_root: bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, config_text).unwrap();
    let mut cmd = dockyard();
    cmd.arg("serve")
        .arg(&config)
        .env("REGISTRY_HTTP_ADDR", "127.0.0.1:0");
    if set_root {
        cmd.env(
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            dir.path().join("data"),
        );
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with {config_text:?}");
    assert!(
        stderr.contains(expect),
        "stderr lacks {expect:?}:\n{stderr}"
    );
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    refuses(
        "storage:\n  delete:\n    enabled: maybe\n",
        "expected true or false",
    );
    refuses("storage: [unclosed\n", "invalid configuration");
    refuses_with(
        "storage:\n  azure:\n    accountname: x\n",
        "not supported",
        false,
    );
    refuses(
        "auth:\n  htpasswd:\n    realm: r\n    path: /nonexistent/htpasswd\n",
        "cannot read htpasswd file /nonexistent/htpasswd",
    );
    refuses("auth:\n  token:\n    realm: r\n", "auth.token");
    refuses_with(
        "storage:\n  s3:\n    region: x\n",
        "storage.s3.bucket is required",
        false,
    );
    refuses_with(
        "storage:\n  s3:\n    bucket: b\n    chunksize: 1024\n",
        "storage.s3.chunksize must be between",
        false,
    );
    refuses(
        "storage:\n  maintenance:\n    gc:\n      enabled: true\n      grace: soon\n",
        "storage.maintenance.gc.grace",
    );
    let out = dockyard()
        .args(["serve", "/nonexistent/config.yml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.yml"));
}

#[test]
fn occupied_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dockyard()
        .arg("serve")
        .env("REGISTRY_HTTP_ADDR", &addr)
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on {addr}")));
}

/// A directory the server's user cannot write (a root-owned bind mount under the image's user
/// 65532, say) is refused at startup with what to do, not answered with a 500 on every push;
/// read-only mode still serves it.
#[test]
fn a_storage_directory_it_cannot_write_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    // The temp dir itself must be traversable by the unprivileged user.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_user = |extra: &[(&str, &str)]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65532", "--regid=65532", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_dockyard"))
            .arg("serve")
            .env("REGISTRY_HTTP_ADDR", "127.0.0.1:0")
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &data);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    };
    let out = as_user(&[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on an unwritable directory");
    assert!(
        stderr.contains("is not writable by this process (uid 65532)")
            && stderr.contains("chown -R 65532:65532"),
        "{stderr}"
    );
    // Read-only mode starts on it.
    let mut child = as_user(&[("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on"), "{line}");
}

/// `dockyard garbage-collect` on a filesystem registry: what it prints, that it deletes only
/// unreferenced blobs past the grace window, and that it refuses to run while another
/// collector holds the lock.
#[test]
fn garbage_collect_deletes_unreferenced_blobs_and_respects_the_lock() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::builder().data_dir(data.path()).start();
    let orphan = b"an orphaned layer";
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(orphan))
    );
    let post = common::http::request(
        &server.addr,
        "POST",
        &format!("/v2/app/blobs/uploads/?digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        orphan,
    )
    .unwrap();
    assert_eq!(post.status, 201, "{}", post.text());
    drop(server);
    let blob = data.path().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}/data",
        &digest[7..9],
        &digest[7..]
    ));
    assert!(blob.exists());
    let gc = |args: &[&str]| {
        dockyard()
            .arg("garbage-collect")
            .args(args)
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", data.path())
            .output()
            .unwrap()
    };
    // Just pushed: inside the default one-hour grace window, kept.
    let out = gc(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("0 blobs and 0 manifests eligible for deletion"),
        "{text}"
    );
    assert!(text.contains("1 unreferenced blobs kept"), "{text}");
    // Another collector holds the lock: refused, nothing deleted.
    let lock = data.path().join("dockyard/gc.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, r#"{"holder":"other/1/x","expires":99999999999}"#).unwrap();
    let out = gc(&["--grace", "0s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another garbage collection is running (other/1/x"),
        "{err}"
    );
    assert!(blob.exists());
    std::fs::remove_file(&lock).unwrap();
    let out = gc(&["--dry-run", "--grace", "0s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("blob eligible for deletion: {digest}")),
        "{text}"
    );
    assert!(blob.exists(), "a dry run deleted the blob");
    let out = gc(&["--grace", "0s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains(&format!("deleted blob: {digest}")), "{text}");
    assert!(!blob.exists());
    assert!(!lock.exists(), "the lock was left behind");
    let bad = gc(&["--grace", "soon"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--grace \"soon\""));
}
