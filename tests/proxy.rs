//! Dockyard behind nginx, the classic registry:2 setup: nginx terminates TLS and forwards
//! `X-Forwarded-Proto` and `X-Forwarded-Host`. Upload `Location`s must send clients back
//! through nginx over https, and every request of a push must pass through it.

use dockyard_testkit as common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::oci::{assert_same_image, write_oci_layout};
use common::{Server, cmd, run, tool};

/// nginx in the foreground, stopped by PID when dropped: SIGTERM first, so the master
/// stops its workers (a SIGKILL would orphan them).
struct Nginx {
    child: Option<Child>,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            common::server::stop_child(child, Duration::from_secs(5));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and a server certificate for 127.0.0.1, made with openssl; `dir/ca.crt` is what
/// clients trust (skopeo's `--dest-cert-dir` layout).
fn make_certs(dir: &Path) {
    let d = |f: &str| dir.join(f).display().to_string();
    run(Command::new(tool("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
        ])
        .args(["-keyout", &d("ca.key"), "-out", &d("ca.crt")]));
    run(Command::new(tool("openssl"))
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-keyout", &d("server.key"), "-out", &d("server.csr")]));
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(Command::new(tool("openssl"))
        .args(["x509", "-req", "-days", "1", "-in", &d("server.csr")])
        .args([
            "-CA",
            &d("ca.crt"),
            "-CAkey",
            &d("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &d("san.ext"),
            "-out",
            &d("server.crt"),
        ]));
}

fn start_nginx(dir: &Path, upstream: &str) -> Nginx {
    let port = free_port();
    let p = |f: &str| dir.join(f).display().to_string();
    let conf = format!(
        r#"user root;
worker_processes 1;
pid {pid};
error_log {err} warn;
events {{ worker_connections 64; }}
http {{
  access_log {access};
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location /v2/ {{
      proxy_pass http://{upstream};
      proxy_set_header Host $proxy_host;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_request_buffering off;
      proxy_read_timeout 900;
    }}
  }}
}}
"#,
        pid = p("nginx.pid"),
        err = p("error.log"),
        access = p("access.log"),
        tmp = dir.display(),
        crt = p("server.crt"),
        key = p("server.key"),
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(tool("nginx"))
        .args([
            "-e",
            &p("error.log"),
            "-p",
            &dir.display().to_string(),
            "-c",
            &p("nginx.conf"),
            "-g",
            "daemon off;",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx {
        child: Some(child),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx
}

#[test]
fn push_and_pull_through_nginx_terminating_tls() {
    let server = Server::builder().start();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let nginx = start_nginx(dir.path(), &server.addr);
    let front = format!("127.0.0.1:{}", nginx.port);
    // skopeo treats any *.key in a cert dir as a client key: give it only the CA.
    let trust = dir.path().join("trust");
    std::fs::create_dir(&trust).unwrap();
    std::fs::copy(dir.path().join("ca.crt"), trust.join("ca.crt")).unwrap();
    let certs = trust.display().to_string();

    // The Location of a new upload points back at nginx, over https.
    let out = run(Command::new(tool("curl"))
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "--cacert",
        ])
        .arg(dir.path().join("ca.crt"))
        .arg(format!("https://{front}/v2/proxied/probe/blobs/uploads/")));
    let location = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or("");
    assert!(
        location.starts_with(&format!("https://{front}/v2/proxied/probe/blobs/uploads/")),
        "Location {location:?} in:\n{out}"
    );

    let layout = dir.path().join("layout");
    let image = write_oci_layout(&layout, "v1", &[300_000, 1_200_000]);
    let remote = format!("docker://{front}/proxied/app:v1");
    run(cmd("skopeo", ["copy", "--dest-cert-dir", &certs])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(&remote));
    let pulled = dir.path().join("pulled");
    run(cmd("skopeo", ["copy", "--src-cert-dir", &certs])
        .arg(&remote)
        .arg(format!("oci:{}:v1", pulled.display())));
    assert_same_image(&layout, &pulled, &image.manifest_digest);

    // Every upload request dockyard saw came through nginx.
    let through_nginx = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    let count = |log: &str, method: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("{method} /v2/proxied/app/")))
            .count()
    };
    for method in ["POST", "PUT"] {
        let at_nginx = count(&through_nginx, method);
        let at_dockyard = server.access_lines(method, "/v2/proxied/app/").len();
        assert!(at_nginx > 0, "no {method} through nginx:\n{through_nginx}");
        assert_eq!(at_nginx, at_dockyard, "{method} requests bypassed nginx");
    }
}
