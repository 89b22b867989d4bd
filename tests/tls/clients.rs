//! Clients over HTTPS: skopeo pushing and pulling with a CA directory (and refusing without
//! it), curl negotiating HTTP/2 by ALPN with absolute `https://` upload Locations, the TLS
//! versions `openssl s_client` can and cannot use, and client certificates with `clientcas`.

use std::fs;

use tempfile::TempDir;

use super::common::oci;
use super::common::{Server, Target, cmd, run, run_capture, run_fail};
use super::pki::{Ca, CertFiles, Layout, https_builder};

/// A CA, certificate files with a server certificate from it, and `ca.crt` beside them.
fn certificates() -> (Ca, CertFiles) {
    let ca = Ca::new("Dockyard test CA");
    let mut files = CertFiles::new(Layout::Renames);
    files.install(&ca.server(0x1001));
    fs::write(files.path("ca.crt"), &ca.pem).unwrap();
    (ca, files)
}

/// `curl --cacert ca.crt -sS <args>`.
fn curl(files: &CertFiles, args: &[&str]) -> std::process::Command {
    let ca = files.path("ca.crt").display().to_string();
    let mut command = cmd("curl", ["--cacert", ca.as_str(), "-sS"]);
    command.args(args);
    command
}

#[test]
fn skopeo_pushes_and_pulls_over_https_with_a_ca_directory() {
    let (ca, files) = certificates();
    let server = https_builder(&files).start();
    let tmp = TempDir::new().unwrap();
    let cert_dir = tmp.path().join("certs.d");
    fs::create_dir(&cert_dir).unwrap();
    fs::write(cert_dir.join("ca.crt"), &ca.pem).unwrap();
    let cert_dir = cert_dir.display().to_string();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "v1", &[1 << 20, 200 << 10, 10]);
    let local = format!("oci:{}:v1", src.display());
    let remote = format!("docker://{}/tls/image:v1", server.addr);

    // Verification is on: without the CA, skopeo refuses the server.
    let refused = run_fail(&mut cmd("skopeo", ["copy", &local, &remote]));
    assert!(
        refused.stderr.contains("certificate"),
        "unexpected failure: {}",
        refused.stderr
    );

    run(&mut cmd(
        "skopeo",
        ["copy", "--dest-cert-dir", &cert_dir, &local, &remote],
    ));
    let out = tmp.path().join("out");
    let pulled = format!("oci:{}:v1", out.display());
    run(&mut cmd(
        "skopeo",
        ["copy", "--src-cert-dir", &cert_dir, &remote, &pulled],
    ));
    assert_eq!(oci::layout_ref(&out, "v1"), image.manifest_digest);
    oci::assert_same_image(&src, &out, &image.manifest_digest);
}

#[test]
fn curl_gets_http2_by_alpn_and_https_locations() {
    let (_ca, files) = certificates();
    let server = https_builder(&files).start();
    let base = format!("https://{}", server.addr);
    let version = |flag: &str| {
        let url = format!("{base}/v2/");
        run(&mut curl(
            &files,
            &[flag, "-o", "/dev/null", "-w", "%{http_version}", &url],
        ))
    };
    assert_eq!(version("--http1.1"), "1.1");
    assert_eq!(version("--http2"), "2");

    // An upload's Location is absolute and https, over HTTP/2 (no Host header) as well.
    let url = format!("{base}/v2/tls/upload/blobs/uploads/");
    let head = run(&mut curl(
        &files,
        &["--http2", "-X", "POST", "-D", "-", "-o", "/dev/null", &url],
    ));
    let location = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location in:\n{head}"));
    let want = format!("{base}/v2/tls/upload/blobs/uploads/");
    assert!(location.starts_with(&want), "Location {location}");
}

/// `openssl s_client` with only `version` (`-tls1_1`, ...) allowed; the combined output.
/// `@SECLEVEL=0` lets OpenSSL itself offer TLS 1.1, so a refusal comes from the server.
fn s_client(addr: &str, version: &str) -> (bool, String) {
    let outcome = run_capture(&mut cmd(
        "openssl",
        [
            "s_client",
            "-connect",
            addr,
            "-servername",
            "localhost",
            version,
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ],
    ));
    let text = format!("{}{}", outcome.stdout, outcome.stderr);
    (outcome.status.success(), text)
}

#[test]
fn tls_1_2_and_1_3_are_served_and_older_versions_refused() {
    let (_ca, files) = certificates();
    let server = https_builder(&files).start();
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, text) = s_client(&server.addr, flag);
        assert!(
            ok && text.contains(&format!("New, {name}")),
            "{flag}:\n{text}"
        );
    }
    for flag in ["-tls1_1", "-tls1"] {
        let (ok, text) = s_client(&server.addr, flag);
        assert!(!ok, "{flag} was accepted:\n{text}");
        // The client offered the old version and the server answered with an alert (when
        // OpenSSL refuses by itself it says "no protocols available" and sends nothing).
        assert!(
            text.contains("SSL alert number") && !text.contains("no protocols available"),
            "{flag} failed for another reason:\n{text}"
        );
    }

    let strict = https_builder(&files)
        .env("REGISTRY_HTTP_TLS_MINIMUMTLS", "tls1.3")
        .start();
    assert!(s_client(&strict.addr, "-tls1_3").0);
    let (ok, text) = s_client(&strict.addr, "-tls1_2");
    assert!(!ok, "TLS 1.2 accepted with minimumtls tls1.3:\n{text}");
}

#[test]
fn client_certificates_are_required_with_clientcas() {
    let (_ca, files) = certificates();
    let client_ca = Ca::new("Dockyard test client CA");
    let stranger_ca = Ca::new("someone else's CA");
    fs::write(files.path("client-ca.crt"), &client_ca.pem).unwrap();
    let client_ca_path = files.path("client-ca.crt").display().to_string();
    let write_identity = |name: &str, ca: &Ca, serial| {
        let issued = ca.issue(&[name], serial);
        fs::write(files.path(&format!("{name}.crt")), &issued.cert_pem).unwrap();
        fs::write(files.path(&format!("{name}.key")), &issued.key_pem).unwrap();
    };
    write_identity("alice", &client_ca, 0x2001);
    write_identity("mallory", &stranger_ca, 0x2002);

    let mut builder = https_builder(&files);
    builder = match Target::from_env() {
        // distribution parses an environment value as YAML for list settings.
        Target::Distribution => builder.env(
            "REGISTRY_HTTP_TLS_CLIENTCAS",
            &format!("[{client_ca_path}]"),
        ),
        Target::Dockyard => {
            let config = files.path("config.yml");
            let yaml =
                format!("version: 0.1\nhttp:\n  tls:\n    clientcas:\n      - {client_ca_path}\n");
            fs::write(&config, yaml).unwrap();
            builder.env("DOCKYARD_CONFIG", &config.display().to_string())
        }
    };
    let server: Server = builder.start();
    let url = format!("https://{}/v2/", server.addr);

    run_fail(&mut curl(&files, &[&url]));
    let as_identity = |name: &str| {
        let (cert, key) = (
            files.path(&format!("{name}.crt")).display().to_string(),
            files.path(&format!("{name}.key")).display().to_string(),
        );
        curl(&files, &["--cert", &cert, "--key", &key, &url])
    };
    run_fail(&mut as_identity("mallory"));
    assert_eq!(run(&mut as_identity("alice")), "{}");
}
