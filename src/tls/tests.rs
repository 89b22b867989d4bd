//! Tests of the TLS layer: `http.tls` validation, startup errors naming the file, and real
//! handshakes against [`crate::server::serve`] on loopback (rustls client) to see which certificate is
//! served across reloads, ALPN, `ConnectInfo`, and client-certificate verification.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::server::{Limits, serve};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::*;
use crate::config::TlsConfig;

mod timeouts;

// --- test PKI ------------------------------------------------------------------------------

/// A CA that issues server and client certificates.
struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: CertificateDer<'static>,
}

/// One issued certificate with its key.
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        }
    }

    fn issue(&self, sans: &[&str], serial: u64) -> Issued {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.serial_number = Some(serial.into());
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    fn server(&self, serial: u64) -> Issued {
        self.issue(&["localhost", "127.0.0.1"], serial)
    }
}

/// Writes `files` into `dir` atomically (temp file + rename), as cert-manager's kubelet does.
fn replace(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

fn install(dir: &Path, issued: &Issued) {
    replace(
        dir,
        &[("tls.crt", &issued.cert_pem), ("tls.key", &issued.key_pem)],
    );
}

fn settings(dir: &Path, client_cas: Vec<PathBuf>) -> TlsSettings {
    TlsSettings {
        certificate: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        client_cas,
        minimum: MinimumVersion::Tls12,
    }
}

// --- server and client -----------------------------------------------------------------------

/// Serves a router answering `/` with the client address it was given, until dropped.
struct TestServer {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve_tls(tls: Arc<Tls>) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/",
        get(|ConnectInfo(client): ConnectInfo<SocketAddr>| async move { client.to_string() }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        Some(tls),
        app,
        Limits::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    TestServer { addr, _stop: stop }
}

struct Client<'a> {
    roots: Vec<CertificateDer<'static>>,
    identity: Option<&'a Issued>,
    alpn: Vec<Vec<u8>>,
}

impl<'a> Client<'a> {
    fn trusting(ca: &TestCa) -> Client<'a> {
        Client {
            roots: vec![ca.der.clone()],
            identity: None,
            alpn: vec![b"http/1.1".to_vec()],
        }
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for root in &self.roots {
            roots.add(root.clone()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match self.identity {
            Some(id) => {
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone()));
                builder
                    .with_client_auth_cert(vec![id.der.clone()], key)
                    .unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await
    }

    /// The end-entity certificate the server presents to a new connection.
    async fn served_cert(&self, addr: SocketAddr) -> CertificateDer<'static> {
        let stream = self.connect(addr).await.unwrap();
        let certs = stream.get_ref().1.peer_certificates().unwrap();
        certs[0].clone().into_owned()
    }

    /// `GET /` over a new connection; the response body.
    async fn get(&self, addr: SocketAddr) -> std::io::Result<String> {
        let mut stream = self.connect(addr).await?;
        request(&mut stream).await
    }
}

async fn request(stream: &mut TlsStream<TcpStream>) -> std::io::Result<String> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    Ok(text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

// --- settings --------------------------------------------------------------------------------

fn http(tls: TlsConfig) -> HttpConfig {
    HttpConfig {
        tls: Some(tls),
        ..HttpConfig::default()
    }
}

fn tls_config(minimum: Option<&str>) -> TlsConfig {
    TlsConfig {
        certificate: Some("/certs/tls.crt".into()),
        key: Some("/certs/tls.key".into()),
        minimumtls: minimum.map(str::to_owned),
        ..TlsConfig::default()
    }
}

fn config_error(http: &HttpConfig) -> String {
    match TlsSettings::from_config(http) {
        Err(TlsError::Config(msg)) => msg,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn settings_from_distribution_keys() {
    assert_eq!(
        TlsSettings::from_config(&HttpConfig::default()).unwrap(),
        None
    );
    assert_eq!(
        TlsSettings::from_config(&http(TlsConfig::default())).unwrap(),
        None
    );
    let s = TlsSettings::from_config(&http(tls_config(None)))
        .unwrap()
        .unwrap();
    assert_eq!(s.certificate, PathBuf::from("/certs/tls.crt"));
    assert_eq!(s.key, PathBuf::from("/certs/tls.key"));
    assert_eq!(s.minimum, MinimumVersion::Tls12);
    assert!(s.client_cas.is_empty());
    for (text, want) in [
        ("tls1.2", MinimumVersion::Tls12),
        ("tls1.3", MinimumVersion::Tls13),
        ("TLS1.3", MinimumVersion::Tls13),
        ("", MinimumVersion::Tls12),
    ] {
        let s = TlsSettings::from_config(&http(tls_config(Some(text))));
        assert_eq!(s.unwrap().unwrap().minimum, want, "{text}");
    }
}

#[test]
fn old_tls_versions_and_incomplete_settings_are_refused() {
    for old in ["tls1.0", "tls1.1"] {
        let msg = config_error(&http(tls_config(Some(old))));
        assert!(msg.contains(old) && msg.contains("rustls"), "{msg}");
        assert!(msg.contains("tls1.2") && msg.contains("tls1.3"), "{msg}");
    }
    let msg = config_error(&http(tls_config(Some("ssl3"))));
    assert!(msg.contains("not a TLS version"), "{msg}");

    let no_key = TlsConfig {
        key: None,
        ..tls_config(None)
    };
    assert!(config_error(&http(no_key)).contains("http.tls.key is not"));
    let no_cert = TlsConfig {
        certificate: None,
        ..tls_config(None)
    };
    assert!(config_error(&http(no_cert)).contains("http.tls.certificate is not"));
    let cas_only = TlsConfig {
        clientcas: vec!["/certs/ca.crt".into()],
        ..TlsConfig::default()
    };
    assert!(config_error(&http(cas_only)).contains("clientcas needs"));
    let acme = TlsConfig {
        letsencrypt: Some(serde_yaml::from_str("{email: a@b.c}").unwrap()),
        ..TlsConfig::default()
    };
    assert!(config_error(&http(acme)).contains("letsencrypt"));
}

#[test]
fn startup_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let err = |s: &TlsSettings| Tls::load(s.clone()).unwrap_err().to_string();
    let s = settings(dir.path(), vec![]);

    let msg = err(&s);
    assert!(
        msg.contains("certificate") && msg.contains("tls.crt"),
        "{msg}"
    );

    let one = ca.server(1);
    let two = ca.server(2);
    replace(dir.path(), &[("tls.crt", "not a certificate\n")]);
    let msg = err(&s);
    assert!(msg.contains("tls.crt") && msg.contains("no"), "{msg}");

    replace(
        dir.path(),
        &[("tls.crt", &one.cert_pem), ("tls.key", &two.key_pem)],
    );
    let msg = err(&s);
    assert!(msg.contains("tls.key") && msg.contains("tls.crt"), "{msg}");

    replace(dir.path(), &[("tls.key", "")]);
    let msg = err(&s);
    assert!(
        msg.contains("tls.key") && msg.contains("PRIVATE KEY"),
        "{msg}"
    );

    install(dir.path(), &one);
    let bad_ca = dir.path().join("ca.crt");
    std::fs::write(&bad_ca, "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
    let msg = err(&settings(dir.path(), vec![bad_ca]));
    assert!(msg.contains("client CA") && msg.contains("ca.crt"), "{msg}");

    assert!(Tls::load(s).is_ok());
}

// --- serving and reloads ---------------------------------------------------------------------

#[tokio::test]
async fn serves_http1_and_offers_h2_with_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    install(dir.path(), &ca.server(1));
    let server = serve_tls(Arc::new(Tls::load(settings(dir.path(), vec![])).unwrap())).await;

    let client = Client::trusting(&ca);
    let body = client.get(server.addr).await.unwrap();
    assert!(body.contains("127.0.0.1:"), "no client address: {body}");

    let h2 = Client {
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..Client::trusting(&ca)
    };
    let stream = h2.connect(server.addr).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    // A client that does not trust the CA fails; the server keeps accepting.
    let stranger = Client::trusting(&TestCa::new("other CA"));
    assert!(stranger.connect(server.addr).await.is_err());
    assert!(client.get(server.addr).await.is_ok());
}

#[tokio::test]
async fn reload_swaps_the_certificate_and_keeps_it_on_bad_replacements() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (first, second, third) = (ca.server(1), ca.server(2), ca.server(3));
    install(dir.path(), &first);
    let tls = Arc::new(Tls::load(settings(dir.path(), vec![])).unwrap());
    let server = serve_tls(tls.clone()).await;
    let client = Client::trusting(&ca);
    assert_eq!(client.served_cert(server.addr).await, first.der);

    // A connection made before the swap keeps working after it.
    let mut old = client.connect(server.addr).await.unwrap();
    install(dir.path(), &second);
    tls.reload().unwrap();
    assert_eq!(client.served_cert(server.addr).await, second.der);
    assert!(request(&mut old).await.unwrap().contains("127.0.0.1"));

    // Broken replacements: unparsable, key of another certificate, empty. All keep `second`.
    replace(dir.path(), &[("tls.crt", "garbage")]);
    assert!(tls.reload().is_err());
    replace(
        dir.path(),
        &[("tls.crt", &third.cert_pem), ("tls.key", &first.key_pem)],
    );
    assert!(tls.reload().is_err());
    replace(dir.path(), &[("tls.crt", ""), ("tls.key", "")]);
    assert!(tls.reload().is_err());
    std::fs::remove_file(dir.path().join("tls.key")).unwrap();
    assert!(tls.reload().is_err());
    assert_eq!(client.served_cert(server.addr).await, second.der);

    install(dir.path(), &third);
    tls.reload().unwrap();
    assert_eq!(client.served_cert(server.addr).await, third.der);
}

/// Waits until new connections get `want` (the reload task runs on file events).
async fn wait_for_cert(client: &Client<'_>, addr: SocketAddr, want: &CertificateDer<'_>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while client.served_cert(addr).await != *want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "certificate not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn file_changes_reload_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (first, second) = (ca.server(1), ca.server(2));
    install(dir.path(), &first);
    let tls = Tls::start(settings(dir.path(), vec![])).unwrap();
    let server = serve_tls(tls).await;
    let client = Client::trusting(&ca);
    assert_eq!(client.served_cert(server.addr).await, first.der);
    install(dir.path(), &second);
    wait_for_cert(&client, server.addr, &second.der).await;
}

#[tokio::test]
async fn client_certificates_are_required_and_their_cas_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("server CA");
    let (client_ca, other_ca) = (TestCa::new("client CA"), TestCa::new("other client CA"));
    let (alice, bob) = (
        client_ca.issue(&["alice"], 10),
        other_ca.issue(&["bob"], 11),
    );
    install(dir.path(), &ca.server(1));
    replace(dir.path(), &[("client-ca.crt", &client_ca.pem)]);
    let cas = vec![dir.path().join("client-ca.crt")];
    let tls = Arc::new(Tls::load(settings(dir.path(), cas)).unwrap());
    let server = serve_tls(tls.clone()).await;

    let anonymous = Client::trusting(&ca);
    let as_alice = Client {
        identity: Some(&alice),
        ..Client::trusting(&ca)
    };
    let as_bob = Client {
        identity: Some(&bob),
        ..Client::trusting(&ca)
    };
    // With TLS 1.3 the client learns of the rejection on its first read.
    assert!(anonymous.get(server.addr).await.is_err());
    assert!(as_bob.get(server.addr).await.is_err());
    assert!(
        as_alice
            .get(server.addr)
            .await
            .unwrap()
            .contains("127.0.0.1")
    );

    replace(dir.path(), &[("client-ca.crt", &other_ca.pem)]);
    tls.reload().unwrap();
    assert!(as_alice.get(server.addr).await.is_err());
    assert!(as_bob.get(server.addr).await.is_ok());

    // A broken CA file keeps the CAs in use.
    replace(dir.path(), &[("client-ca.crt", "junk")]);
    assert!(tls.reload().is_err());
    assert!(as_bob.get(server.addr).await.is_ok());
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_stops_accepting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    install(dir.path(), &ca.server(1));
    let tls = Arc::new(Tls::load(settings(dir.path(), vec![])).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        "done"
    };
    let app = Router::new().route("/", get(slow));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Some(tls),
        app,
        Limits::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    let mut stream = Client::trusting(&ca).connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
        "{text}"
    );
    let finished = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(matches!(finished, Ok(Ok(Ok(())))), "{finished:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}
