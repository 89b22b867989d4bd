//! `dockyard serve` as a pull-through cache, with real upstreams on loopback: distribution
//! 2.8.2 with htpasswd (the mirror's own credentials, as registry:2's `proxy.username`) and
//! Dockyard itself. Clients pull through the mirror with skopeo and containerd (a hosts.toml
//! mirror whose `server` is dead, so only the mirror can answer). Checked: identical images,
//! one upstream GET per blob for 20 concurrent cold pulls (on the upstream's access log),
//! routing by `?ns=` and by a host prefix with two upstreams, an unknown host refused, a warm
//! cache served with the upstream down, pushes refused, and Docker Hub's token flow against
//! distribution with `auth.token` and a token issuer of the test's own.

#[allow(
    dead_code,
    unused_imports,
    reason = "each test crate uses a subset of the shared helpers"
)]
mod common;

#[path = "mirror/dockerd.rs"]
mod dockerd;
#[path = "mirror/token_issuer.rs"]
mod token_issuer;

use std::process::Command;
use std::thread;

use common::containerd::{Containerd, assert_pulled};
use common::oci::{assert_same_image, write_oci_layout};
use common::registry::skopeo_copy;
use common::{Server, Target, http, run};
use tempfile::TempDir;

/// A distribution 2.8.2 upstream that requires `mirror:mirror-pass`.
fn distribution_with_auth(dir: &TempDir) -> Server {
    let htpasswd = dir.path().join("htpasswd");
    let line = run(Command::new("htpasswd").args(["-Bbn", "-C", "5", "mirror", "mirror-pass"]));
    std::fs::write(&htpasswd, line.trim()).unwrap();
    Server::builder()
        .target(Target::Distribution)
        .env("REGISTRY_AUTH", "htpasswd")
        .env("REGISTRY_AUTH_HTPASSWD_REALM", "upstream")
        .env(
            "REGISTRY_AUTH_HTPASSWD_PATH",
            &htpasswd.display().to_string(),
        )
        .start()
}

/// A Dockyard mirror started with `env` (its proxy settings).
fn mirror(env: &[(&str, &str)]) -> Server {
    let mut builder = Server::builder().target(Target::Dockyard);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    builder.start()
}

/// A loopback address with a free port.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Upstream GETs of blobs, from distribution's combined access log.
fn blob_gets(upstream: &Server) -> Vec<String> {
    upstream
        .log()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_registry2_style_mirror_pulls_through_with_its_own_credentials_once_per_blob() {
    let dir = TempDir::new().unwrap();
    let upstream = distribution_with_auth(&dir);
    let layout = dir.path().join("layout");
    let image = write_oci_layout(&layout, "v1", &[3 << 20, 200_000, 1000]);
    skopeo_copy(
        &["--dest-creds", "mirror:mirror-pass"],
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/library/app:v1", upstream.addr),
    );
    let remote = format!("http://{}", upstream.addr);
    let debug = free_addr();
    let mirror = mirror(&[
        ("REGISTRY_PROXY_REMOTEURL", &remote),
        ("REGISTRY_PROXY_USERNAME", "mirror"),
        ("REGISTRY_PROXY_PASSWORD", "mirror-pass"),
        ("REGISTRY_HTTP_DEBUG_ADDR", &debug),
        ("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true"),
    ]);
    let before = blob_gets(&upstream).len();
    // 20 clients pull the cold image at once, without credentials of their own.
    let pulls: Vec<_> = (0..20)
        .map(|i| {
            let src = format!("docker://{}/library/app:v1", mirror.addr);
            let out = dir.path().join(format!("pulled-{i}"));
            thread::spawn(move || {
                skopeo_copy(&[], &src, &format!("oci:{}:v1", out.display()));
                out
            })
        })
        .collect();
    for pull in pulls {
        let out = pull.join().unwrap();
        assert_same_image(&layout, &out, &image.manifest_digest);
    }
    let gets = blob_gets(&upstream).len() - before;
    assert_eq!(
        gets,
        image.layer_digests.len() + 1,
        "one upstream GET per blob (layers and config) for 20 concurrent pulls:\n{}",
        blob_gets(&upstream).join("\n")
    );
    // The metrics say the same: every blob byte fetched once, the other requests coalesced.
    let (status, _, body) = http::http_get(&debug, "/metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&body).into_owned();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    let blob_bytes: u64 = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let d = format!("sha256:{}", p.file_name().unwrap().to_string_lossy());
            image.layer_digests.contains(&d) || d == image.config_digest
        })
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let host = upstream.addr.clone();
    assert_eq!(
        value(&format!(
            "registry_proxy_pulled_bytes_total{{upstream=\"{host}\",type=\"blob\"}}"
        )),
        blob_bytes
    );
    assert!(
        value(&format!(
            "dockyard_proxy_coalesced_total{{upstream=\"{host}\",type=\"blob\"}}"
        )) > 0
    );
    assert_eq!(
        value(&format!(
            "registry_proxy_requests_total{{upstream=\"{host}\",type=\"blob\"}}"
        )),
        20 * (image.layer_digests.len() as u64 + 1)
    );
    // Pushes to a mirror are refused, as registry:2 does.
    let resp = http::request(
        &mirror.addr,
        "POST",
        "/v2/library/app/blobs/uploads/",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(resp.status, 405);
    assert!(resp.text().contains("UNSUPPORTED"), "{}", resp.text());
}

#[test]
fn two_upstreams_route_by_ns_and_by_host_prefix_and_unknown_hosts_are_refused() {
    let dir = TempDir::new().unwrap();
    let a = Server::builder().target(Target::Dockyard).start();
    let b = Server::builder().target(Target::Dockyard).start();
    let (la, lb) = (dir.path().join("a"), dir.path().join("b"));
    let image_a = write_oci_layout(&la, "v1", &[100_000]);
    let image_b = write_oci_layout(&lb, "v1", &[120_000]);
    skopeo_copy(
        &[],
        &format!("oci:{}:v1", la.display()),
        &format!("docker://{}/team/app:v1", a.addr),
    );
    skopeo_copy(
        &[],
        &format!("oci:{}:v1", lb.display()),
        &format!("docker://{}/team/app:v1", b.addr),
    );
    let config = dir.path().join("mirror.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nproxy:\n  upstreams:\n  - host: a.example\n    urls: [http://{}]\n    default: true\n  - host: b.example\n    urls: [http://{}]\n",
            a.addr, b.addr
        ),
    )
    .unwrap();
    let mirror = mirror(&[("DOCKYARD_CONFIG", &config.display().to_string())]);

    // containerd sends ?ns=<host>; its server is dead, so only the mirror can answer.
    let containerd = Containerd::start();
    for (host, image) in [("a.example", &image_a), ("b.example", &image_b)] {
        let hosts = containerd.hosts_dir(host, &mirror.addr);
        let name = format!("{host}/team/app:v1");
        run(&mut containerd.ctr(&[
            "images",
            "pull",
            "--hosts-dir",
            &hosts.display().to_string(),
            &name,
        ]));
        assert_pulled(&containerd, &name, image);
    }
    let ns = mirror.access_lines("GET", "ns=b.example");
    assert!(!ns.is_empty(), "containerd's requests carry ?ns=");
    let resp = http::request(
        &mirror.addr,
        "HEAD",
        "/v2/team/app/manifests/v1?ns=b.example",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(resp.header("oci-namespace"), Some("b.example"));

    // A host prefix in the name (CRI-O mirror locations), and the default upstream.
    let out = dir.path().join("by-prefix");
    skopeo_copy(
        &[],
        &format!("docker://{}/b.example/team/app:v1", mirror.addr),
        &format!("oci:{}:v1", out.display()),
    );
    assert_same_image(&lb, &out, &image_b.manifest_digest);
    let out = dir.path().join("by-default");
    skopeo_copy(
        &[],
        &format!("docker://{}/team/app:v1", mirror.addr),
        &format!("oci:{}:v1", out.display()),
    );
    assert_same_image(&la, &out, &image_a.manifest_digest);

    // Hosts the mirror was not configured for get a clear error, and no request leaves.
    for path in [
        "/v2/team/app/manifests/v1?ns=evil.example",
        "/v2/evil.example/team/app/manifests/v1",
    ] {
        let resp = http::request(&mirror.addr, "GET", path, &[], &[]).unwrap();
        assert_eq!(resp.status, 404, "{path}");
        assert!(
            resp.text().contains("no upstream"),
            "{path}: {}",
            resp.text()
        );
    }
}

#[test]
fn a_warm_cache_serves_with_the_upstream_down_and_cold_content_gets_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let mut upstream = Server::builder().target(Target::Dockyard).start();
    let layout = dir.path().join("layout");
    let image = write_oci_layout(&layout, "v1", &[500_000]);
    skopeo_copy(
        &[],
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/library/app:v1", upstream.addr),
    );
    let remote = format!("http://{}", upstream.addr);
    let mirror = mirror(&[
        ("REGISTRY_PROXY_REMOTEURL", &remote),
        ("REGISTRY_PROXY_FRESHNESS", "0s"),
    ]);
    let src = format!("docker://{}/library/app:v1", mirror.addr);
    skopeo_copy(
        &[],
        &src,
        &format!("oci:{}:v1", dir.path().join("warm").display()),
    );
    upstream.stop();
    // Freshness 0: the tag is checked upstream on every pull, fails, and the cache answers.
    let out = dir.path().join("stale");
    skopeo_copy(&[], &src, &format!("oci:{}:v1", out.display()));
    assert_same_image(&layout, &out, &image.manifest_digest);
    assert!(
        mirror.log().contains("serving the cached tag"),
        "a stale answer is logged"
    );
    let resp = http::request(
        &mirror.addr,
        "GET",
        "/v2/library/other/manifests/v1",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(resp.status, 502);
    assert!(resp.text().contains("unreachable"), "{}", resp.text());
}

#[test]
fn an_upstream_killed_mid_blob_fails_the_client_caches_nothing_and_the_next_pull_works() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("upstream-data");
    std::fs::create_dir_all(&data).unwrap();
    let mut upstream = Server::builder()
        .target(Target::Dockyard)
        .data_dir(&data)
        .start();
    let layout = dir.path().join("layout");
    let image = write_oci_layout(&layout, "v1", &[256 << 20]);
    skopeo_copy(
        &[],
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/library/big:v1", upstream.addr),
    );
    let remote = format!("http://{}", upstream.addr);
    let mirror_data = dir.path().join("mirror-data");
    std::fs::create_dir_all(&mirror_data).unwrap();
    let mirror = Server::builder()
        .target(Target::Dockyard)
        .data_dir(&mirror_data)
        .env("REGISTRY_PROXY_REMOTEURL", &remote)
        .start();
    let layer = image.layer_digests[0].clone();
    let path = format!("/v2/library/big/blobs/{layer}");
    // Start reading the cold blob slowly, kill the upstream once bytes flow, then read on.
    let mut stream = http::connect(&mirror.addr).unwrap();
    http::write_head(&mut stream, &mirror.addr, "GET", &path, &[], None).unwrap();
    let mut first = vec![0u8; 64 << 10];
    std::io::Read::read_exact(&mut stream, &mut first).unwrap();
    upstream.kill9();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    let received = first.len() + rest.len();
    assert!(
        received < (256 << 20) + 1024,
        "the client must not get a whole blob: {received} bytes"
    );
    // Nothing partial is stored under the digest, and no session is left behind.
    let hex = layer.trim_start_matches("sha256:");
    let blob = mirror_data.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}",
        &hex[..2]
    ));
    thread::sleep(std::time::Duration::from_millis(500));
    assert!(!blob.exists(), "a partial blob was cached");
    let uploads = mirror_data.join("docker/registry/v2/repositories/library/big/_uploads");
    let left = std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the failed fetch's session is removed");
    // The upstream comes back: the next pull works and is identical.
    upstream.restart_on_same_port();
    let out = dir.path().join("pulled");
    skopeo_copy(
        &[],
        &format!("docker://{}/library/big:v1", mirror.addr),
        &format!("oci:{}:v1", out.display()),
    );
    assert_same_image(&layout, &out, &image.manifest_digest);
}

#[test]
fn the_docker_token_flow_gets_one_token_per_scope_with_the_mirrors_own_credentials() {
    let dir = TempDir::new().unwrap();
    let issuer = token_issuer::TokenIssuer::start(dir.path());
    let mut builder = Server::builder().target(Target::Distribution);
    for (k, v) in issuer.registry_env() {
        builder = builder.env(k, &v);
    }
    let upstream = builder.start();
    let layout = dir.path().join("layout");
    let image = write_oci_layout(&layout, "v1", &[300_000, 2000]);
    skopeo_copy(
        &[],
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/library/app:v1", upstream.addr),
    );
    let anonymous = issuer.requests.lock().unwrap().len();
    assert!(anonymous > 0, "the upstream really asks for tokens");
    let remote = format!("http://{}", upstream.addr);
    // Who may pull through the mirror is its own htpasswd's business.
    let htpasswd = dir.path().join("mirror-htpasswd");
    let line = run(Command::new("htpasswd").args(["-Bbn", "-C", "5", "client", "client-secret"]));
    std::fs::write(&htpasswd, line.trim()).unwrap();
    let htpasswd = htpasswd.display().to_string();
    let mirror = mirror(&[
        ("REGISTRY_PROXY_REMOTEURL", &remote),
        ("REGISTRY_PROXY_USERNAME", "robot"),
        ("REGISTRY_PROXY_PASSWORD", "robot-pass"),
        ("REGISTRY_AUTH", "htpasswd"),
        ("REGISTRY_AUTH_HTPASSWD_REALM", "mirror"),
        ("REGISTRY_AUTH_HTPASSWD_PATH", &htpasswd),
    ]);
    let anonymous_pull = http::request(
        &mirror.addr,
        "GET",
        "/v2/library/app/manifests/v1",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(anonymous_pull.status, 401, "the mirror's own auth applies");
    // The client signs in to the mirror with credentials of its own: they never go upstream.
    for i in 0..3 {
        let out = dir.path().join(format!("pulled-{i}"));
        skopeo_copy(
            &["--src-creds", "client:client-secret"],
            &format!("docker://{}/library/app:v1", mirror.addr),
            &format!("oci:{}:v1", out.display()),
        );
        assert_same_image(&layout, &out, &image.manifest_digest);
    }
    let requests = issuer.requests.lock().unwrap()[anonymous..].to_vec();
    let robot = format!(
        "basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "robot:robot-pass"
        )
    );
    assert!(
        requests.iter().all(|a| a.eq_ignore_ascii_case(&robot)),
        "token requests carry the mirror's credentials only: {requests:?}"
    );
    assert_eq!(
        requests.len(),
        1,
        "one token for the scope, cached: {requests:?}"
    );
    assert!(!upstream.log().contains("client-secret"));
}

/// An upstream that answers every request with `status` (and `Retry-After: 120` on 429):
/// what Docker Hub's rate limit and a broken registry do, which no real registry here can
/// be made to do. Returns its address.
fn failing_upstream(status: u16) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
            let _ = std::io::Write::write_all(
                &mut stream,
                format!(
                    "HTTP/1.1 {status} Upstream Says No\r\nRetry-After: 120\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    addr
}

#[test]
fn an_upstream_that_rate_limits_or_fails_gives_clear_errors_and_is_not_hammered() {
    for (status, want, code) in [(429, 429, "TOOMANYREQUESTS"), (500, 502, "UNKNOWN")] {
        let upstream = failing_upstream(status);
        let remote = format!("http://{upstream}");
        let mirror = mirror(&[("REGISTRY_PROXY_REMOTEURL", &remote)]);
        for attempt in 0..3 {
            let resp = http::request(
                &mirror.addr,
                "GET",
                "/v2/library/app/manifests/v1",
                &[],
                &[],
            )
            .unwrap();
            assert_eq!(
                resp.status,
                want,
                "upstream {status}, attempt {attempt}: {}",
                resp.text()
            );
            assert!(resp.text().contains(code), "{}", resp.text());
            if status == 429 {
                let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
                assert!(
                    (100..=120).contains(&retry),
                    "Retry-After passed on: {retry}"
                );
            }
        }
        // After the first failure the mirror waits out the upstream instead of asking again.
        let warned = mirror.log().matches("upstream endpoint failed").count();
        assert_eq!(warned, 1, "the upstream was asked once:\n{}", mirror.log());
    }
}

/// Bytes under the mirror's blob store, and whether `digest`'s bytes are there.
fn stored(data: &std::path::Path, digest: &str) -> (u64, bool) {
    fn walk(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
    }
    let blobs = data.join("docker/registry/v2/blobs");
    let hex = digest.trim_start_matches("sha256:");
    let there = blobs
        .join(format!("sha256/{}/{hex}/data", &hex[..2]))
        .exists();
    (walk(&blobs), there)
}

/// Polls `check` every 200 ms for up to 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_cache_stays_within_maxsize_and_ttl_frees_storage() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let (la, lb) = (dir.path().join("a"), dir.path().join("b"));
    let image_a = write_oci_layout(&la, "a", &[2 << 20]);
    let image_b = write_oci_layout(&lb, "b", &[2 << 20]);
    for (layout, name) in [(&la, "a"), (&lb, "b")] {
        skopeo_copy(
            &[],
            &format!("oci:{}:{name}", layout.display()),
            &format!("docker://{}/library/{name}:v1", upstream.addr),
        );
    }
    let remote = format!("http://{}", upstream.addr);
    let pull = |mirror: &Server, name: &str, out: &str| {
        let out = dir.path().join(out);
        let tag = name.trim_start_matches("library/");
        skopeo_copy(
            &[],
            &format!("docker://{}/{name}:v1", mirror.addr),
            &format!("oci:{}:{tag}", out.display()),
        );
        out
    };

    // Room for one image: pulling the second evicts the first, least recently used.
    let data = dir.path().join("sized");
    std::fs::create_dir_all(&data).unwrap();
    let sized = Server::builder()
        .target(Target::Dockyard)
        .data_dir(&data)
        .env("REGISTRY_PROXY_REMOTEURL", &remote)
        .env("REGISTRY_PROXY_MAXSIZE", "3MiB")
        .start();
    pull(&sized, "library/a", "a1");
    assert!(stored(&data, &image_a.layer_digests[0]).1);
    pull(&sized, "library/b", "b1");
    eventually("image a is evicted to keep the cache under 3 MiB", || {
        let (bytes, a_there) = stored(&data, &image_a.layer_digests[0]);
        !a_there && bytes <= 3 << 20
    });
    assert!(
        stored(&data, &image_b.layer_digests[0]).1,
        "the recently used image stays"
    );
    assert!(sized.log().contains("evicted cached content"));
    // An evicted image is fetched again on demand.
    let again = pull(&sized, "library/a", "a2");
    assert_same_image(&la, &again, &image_a.manifest_digest);

    // proxy.ttl: content unused for that long is removed and its storage freed.
    let data = dir.path().join("ttl");
    std::fs::create_dir_all(&data).unwrap();
    let expiring = Server::builder()
        .target(Target::Dockyard)
        .data_dir(&data)
        .env("REGISTRY_PROXY_REMOTEURL", &remote)
        .env("REGISTRY_PROXY_TTL", "2s")
        .start();
    pull(&expiring, "library/b", "b2");
    assert!(stored(&data, &image_b.layer_digests[0]).1);
    eventually("unused content expires after proxy.ttl", || {
        stored(&data, &image_b.layer_digests[0]).0 == 0
    });
    let again = pull(&expiring, "library/b", "b3");
    assert_same_image(&lb, &again, &image_b.manifest_digest);
}

#[test]
fn podman_pulls_through_a_registries_conf_mirror_with_a_path_prefix_location() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let layout = dir.path().join("layout");
    let image = write_oci_layout(&layout, "podman", &[400_000, 3000]);
    skopeo_copy(
        &[],
        &format!("oci:{}:podman", layout.display()),
        &format!("docker://{}/team/app:v1", upstream.addr),
    );
    let config = dir.path().join("mirror.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nproxy:\n  upstreams:\n  - host: upstream.test\n    urls: [http://{}]\n",
            upstream.addr
        ),
    )
    .unwrap();
    let mirror = mirror(&[("DOCKYARD_CONFIG", &config.display().to_string())]);
    // CRI-O's library reads this: the mirror is tried first, under a path prefix; the
    // registry's own location is dead, so only the mirror can answer.
    let registries = dir.path().join("registries.conf");
    std::fs::write(
        &registries,
        format!(
            "unqualified-search-registries = []\n\n[[registry]]\nprefix = \"upstream.test\"\nlocation = \"127.0.0.1:1\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"{}/upstream.test\"\ninsecure = true\n",
            mirror.addr
        ),
    )
    .unwrap();
    let mut pull = common::podman::isolated("podman", &dir.path().join("storage"));
    pull.env("CONTAINERS_REGISTRIES_CONF", &registries)
        .args(["pull", "upstream.test/team/app:v1"]);
    run(&mut pull);
    let mut inspect = common::podman::isolated("podman", &dir.path().join("storage"));
    inspect
        .env("CONTAINERS_REGISTRIES_CONF", &registries)
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Digest}}",
            "upstream.test/team/app:v1",
        ]);
    assert_eq!(run(&mut inspect).trim(), image.manifest_digest);
    let prefixed = mirror.access_lines("GET", "/v2/upstream.test/team/app/");
    assert!(
        !prefixed.is_empty(),
        "podman asked the mirror under the path prefix"
    );
}

#[test]
fn heads_of_uncached_content_are_answered_from_upstream_and_a_killed_mirror_recovers() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let layout = dir.path().join("layout");
    let image = write_oci_layout(&layout, "heads", &[128 << 20, 1000]);
    skopeo_copy(
        &[],
        &format!("oci:{}:heads", layout.display()),
        &format!("docker://{}/library/app:v1", upstream.addr),
    );
    let remote = format!("http://{}", upstream.addr);
    let data = dir.path().join("mirror-data");
    std::fs::create_dir_all(&data).unwrap();
    let mut mirror = Server::builder()
        .target(Target::Dockyard)
        .data_dir(&data)
        .env("REGISTRY_PROXY_REMOTEURL", &remote)
        .start();
    // HEADs of uncached content: the upstream's answer, never a false 404, nothing fetched.
    let accept = [("Accept", common::oci::OCI_MANIFEST)];
    let m = http::request(
        &mirror.addr,
        "HEAD",
        "/v2/library/app/manifests/v1",
        &accept,
        &[],
    )
    .unwrap();
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("docker-content-digest"),
        Some(image.manifest_digest.as_str())
    );
    assert_eq!(
        m.header("content-length"),
        Some(image.manifest.len().to_string().as_str())
    );
    let layer = &image.layer_digests[0];
    let b = http::request(
        &mirror.addr,
        "HEAD",
        &format!("/v2/library/app/blobs/{layer}"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(b.status, 200);
    let layer_size = std::fs::metadata(
        layout
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
    )
    .unwrap()
    .len();
    assert_eq!(
        b.header("content-length"),
        Some(layer_size.to_string().as_str())
    );
    assert_eq!(stored(&data, layer), (0, false), "a HEAD fetches nothing");

    // The mirror is killed -9 while it fetches the big layer, then restarted.
    let mut stream = http::connect(&mirror.addr).unwrap();
    http::write_head(
        &mut stream,
        &mirror.addr,
        "GET",
        &format!("/v2/library/app/blobs/{layer}"),
        &[],
        None,
    )
    .unwrap();
    let mut first = vec![0u8; 64 << 10];
    std::io::Read::read_exact(&mut stream, &mut first).unwrap();
    mirror.kill9();
    drop(stream);
    assert!(!stored(&data, layer).1, "nothing partial under the digest");
    mirror.restart_on_same_port();
    let out = dir.path().join("pulled");
    skopeo_copy(
        &[],
        &format!("docker://{}/library/app:v1", mirror.addr),
        &format!("oci:{}:heads", out.display()),
    );
    assert_same_image(&layout, &out, &image.manifest_digest);
    assert!(stored(&data, layer).1, "cached after the restart");
}

#[test]
fn the_docker_engine_pulls_library_images_through_registry_mirrors() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let layout = dir.path().join("layout");
    let image = write_oci_layout(&layout, "dockerd", &[300_000, 2000]);
    skopeo_copy(
        &["--format", "v2s2"],
        &format!("oci:{}:dockerd", layout.display()),
        &format!("docker://{}/library/app:v1", upstream.addr),
    );
    let remote = format!("http://{}", upstream.addr);
    let mirror = mirror(&[("REGISTRY_PROXY_REMOTEURL", &remote)]);
    // docker's registry-mirrors sends no ns: the default upstream answers `library/<name>`.
    let engine = dockerd::Dockerd::start(
        &dir.path().join("docker"),
        &format!("\"registry-mirrors\": [\"http://{}\"]", mirror.addr),
    );
    run(&mut engine.docker(&["pull", "app:v1"]));
    let listed = run(&mut engine.docker(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.Digest}}",
    ]));
    // Pushed as Docker schema 2: the digest is the upstream's, not the OCI layout's.
    let accept = [(
        "Accept",
        "application/vnd.docker.distribution.manifest.v2+json",
    )];
    let head = http::request(
        &upstream.addr,
        "HEAD",
        "/v2/library/app/manifests/v1",
        &accept,
        &[],
    )
    .unwrap();
    let digest = head.header("docker-content-digest").unwrap().to_owned();
    assert_ne!(digest, image.manifest_digest);
    assert!(
        listed.lines().any(|l| l == format!("app:v1 {digest}")),
        "{listed}\n{}",
        engine.log()
    );
    let asked = mirror.access_lines("HEAD", "/v2/library/app/manifests/v1");
    assert!(
        !asked.is_empty(),
        "dockerd asked the mirror:\n{}",
        mirror.log()
    );
    // The mirror served the engine's blob GETs itself.
    assert!(
        !mirror
            .access_lines("GET", "/v2/library/app/blobs/")
            .is_empty()
    );
}

#[test]
fn oras_discovers_an_upstreams_referrers_through_the_mirror() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    std::fs::write(dir.path().join("app.txt"), "the subject").unwrap();
    std::fs::write(dir.path().join("sbom.txt"), "an sbom").unwrap();
    let oras = |args: &[&str]| run(common::cmd("oras", args).current_dir(dir.path()));
    let at_upstream = format!("{}/team/app:v1", upstream.addr);
    oras(&[
        "push",
        "--plain-http",
        &at_upstream,
        "--artifact-type",
        "application/vnd.dockyard.test.app",
        "app.txt:text/plain",
    ]);
    oras(&[
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/vnd.dockyard.test.sbom",
        &at_upstream,
        "sbom.txt:text/plain",
    ]);
    let remote = format!("http://{}", upstream.addr);
    let mirror = mirror(&[("REGISTRY_PROXY_REMOTEURL", &remote)]);
    let through = format!("{}/team/app:v1", mirror.addr);
    let found = oras(&["discover", "--plain-http", "--format", "json", &through]);
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    let referrers = found["referrers"].as_array().unwrap();
    assert_eq!(referrers.len(), 1, "{found:#}");
    assert_eq!(
        referrers[0]["artifactType"],
        "application/vnd.dockyard.test.sbom"
    );
    assert!(
        !mirror.access_lines("GET", "/referrers/sha256:").is_empty(),
        "asked the mirror's referrers API"
    );
    // The referrer itself pulls through the mirror.
    let out = dir.path().join("pulled");
    let digest = referrers[0]["digest"].as_str().unwrap();
    oras(&[
        "pull",
        "--plain-http",
        "-o",
        &out.display().to_string(),
        &format!("{}/team/app@{digest}", mirror.addr),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("sbom.txt")).unwrap(),
        "an sbom"
    );
}
