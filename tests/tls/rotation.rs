//! Certificate rotation under load, as cert-manager renews a Secret in place: while client
//! threads pull a manifest and a blob over many short-lived HTTPS connections, the
//! certificate and key are replaced (file renames, or a Secret volume's `..data` swap). New
//! connections must get the new certificate (checked with `openssl s_client`), a broken
//! replacement must leave the current one in place, and no request may fail at any point.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;

use super::common::{Server, Target, cmd, oci, run};
use super::pki::{Ca, CertFiles, Issued, Layout, https_builder, served_serial};

const CLIENT_THREADS: usize = 3;
const WAIT: Duration = Duration::from_secs(30);

/// What the client threads saw: successful requests per server certificate, and failures.
#[derive(Default)]
struct Tally {
    by_cert: HashMap<Vec<u8>, usize>,
    failures: Vec<String>,
}

/// Client threads pulling `paths` (each with its expected body) until dropped or stopped.
struct Load {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(ca: &Ca, addr: &str, paths: Vec<(String, Vec<u8>)>) -> Load {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let ca_der = CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap();
        roots.add(ca_der).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Thread 0 resumes TLS sessions (no certificate is sent then, and rustls reports the
        // one of the first handshake); the others make full handshakes that show the
        // certificate served at that moment.
        let resuming = Arc::new(config.clone());
        let mut config = config;
        config.resumption = rustls::client::Resumption::disabled();
        let config = Arc::new(config);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let paths = Arc::new(paths);
        let threads = (0..CLIENT_THREADS)
            .map(|i| {
                let config = if i == 0 { &resuming } else { &config }.clone();
                let (tally, stop, paths) = (tally.clone(), stop.clone(), paths.clone());
                let addr = addr.to_string();
                thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let (path, want) = &paths[n % paths.len()];
                        n += 1;
                        let outcome = fetch(&config, &addr, path);
                        let mut tally = tally.lock().unwrap();
                        match outcome {
                            Ok((cert, 200, body)) if body == *want => {
                                *tally.by_cert.entry(cert).or_default() += 1;
                            }
                            Ok((_, status, body)) => tally
                                .failures
                                .push(format!("GET {path}: {status}, {} bytes", body.len())),
                            Err(e) => tally.failures.push(format!("GET {path}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            tally,
            stop,
            threads,
        }
    }

    /// Waits until `count` more requests succeeded over connections presenting `cert`.
    fn wait_for_requests_with(&self, cert: &Issued, count: usize) {
        let start = self.count_with(cert);
        let deadline = Instant::now() + WAIT;
        while self.count_with(cert) < start + count {
            if Instant::now() > deadline {
                let tally = self.tally.lock().unwrap();
                panic!(
                    "clients got no new connections with {}; {} failures, first: {:?}",
                    cert.serial,
                    tally.failures.len(),
                    tally.failures.first()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn count_with(&self, cert: &Issued) -> usize {
        let tally = self.tally.lock().unwrap();
        tally.by_cert.get(&cert.der).copied().unwrap_or(0)
    }

    fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

/// One `GET` on a new TLS connection: the server's certificate, the status and the body.
fn fetch(
    config: &Arc<rustls::ClientConfig>,
    addr: &str,
    path: &str,
) -> Result<(Vec<u8>, u16, Vec<u8>), String> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw)
        .map_err(|e| format!("receive: {e}"))?;
    let cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or("no server certificate")?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let status = String::from_utf8_lossy(&raw[..split])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((cert, status, raw[split + 4..].to_vec()))
}

/// Waits until `openssl s_client` is served the certificate with `serial`.
fn wait_for_serial(addr: &str, serial: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = served_serial(addr);
        if seen == serial {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still served {seen:?}, want {serial}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn reload_failures(server: &Server) -> usize {
    server.log().matches("TLS reload failed").count()
}

fn rotation_under_load(layout: Layout) {
    if Target::from_env() == Target::Distribution {
        eprintln!("note: distribution 2.8.2 reads its certificate once; rotation needs a restart");
        return;
    }
    let ca = Ca::new("Dockyard rotation CA");
    let (first, second, third) = (ca.server(0x5E01), ca.server(0x5E02), ca.server(0x5E03));
    let mut files = CertFiles::new(layout);
    files.install(&first);
    let server = https_builder(&files).start();

    let tmp = TempDir::new().unwrap();
    let cert_dir = tmp.path().join("certs.d");
    std::fs::create_dir(&cert_dir).unwrap();
    std::fs::write(cert_dir.join("ca.crt"), &ca.pem).unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "v1", &[256 << 10]);
    let cert_dir = cert_dir.display().to_string();
    let remote = format!("docker://{}/tls/rotate:v1", server.addr);
    let local = format!("oci:{}:v1", src.display());
    run(&mut cmd(
        "skopeo",
        ["copy", "--dest-cert-dir", &cert_dir, &local, &remote],
    ));
    let layer = &image.layer_digests[0];
    let paths = vec![
        (
            format!("/v2/tls/rotate/manifests/{}", image.manifest_digest),
            image.manifest.clone(),
        ),
        (
            format!("/v2/tls/rotate/blobs/{layer}"),
            oci::layout_blob(&src, layer),
        ),
    ];

    assert_eq!(served_serial(&server.addr), first.serial);
    let load = Load::start(&ca, &server.addr, paths);
    load.wait_for_requests_with(&first, 30);

    files.install(&second);
    wait_for_serial(&server.addr, &second.serial);
    load.wait_for_requests_with(&second, 30);

    // A broken replacement (the certificate is not PEM) keeps the current certificate.
    let failures_before = reload_failures(&server);
    files.install_pem("-----BEGIN CERTIFICATE-----\nbroken\n", &third.key_pem);
    let deadline = Instant::now() + WAIT;
    while reload_failures(&server) == failures_before {
        assert!(Instant::now() < deadline, "no reload error logged");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(served_serial(&server.addr), second.serial);
    load.wait_for_requests_with(&second, 30);
    // One error for one bad replacement (two if the renames fell into two reloads), not a
    // stream of them: the reload's own reads of the files are no change.
    thread::sleep(Duration::from_secs(1));
    let errors = reload_failures(&server) - failures_before;
    assert!(
        (1..=2).contains(&errors),
        "{errors} errors:\n{}",
        server.log()
    );

    files.install(&third);
    wait_for_serial(&server.addr, &third.serial);
    load.wait_for_requests_with(&third, 30);

    let tally = load.finish();
    assert!(
        tally.failures.is_empty(),
        "{} requests failed during rotation, first: {:?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(5)]
    );
    let total: usize = tally.by_cert.values().sum();
    eprintln!(
        "{total} requests over {} certificates, none failed",
        tally.by_cert.len()
    );
    let log = server.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS reload failed"))
        .collect();
    assert!(
        !errors.is_empty() && errors.iter().all(|l| l.contains("tls.crt")),
        "reload errors should name the file: {errors:?}"
    );
}

#[test]
fn rotation_under_load_with_file_renames() {
    rotation_under_load(Layout::Renames);
}

#[test]
fn rotation_under_load_with_a_secret_volume_swap() {
    rotation_under_load(Layout::SecretVolume);
}
