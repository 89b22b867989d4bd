//! Upstreams that fail: down with a warm cache, killed mid-blob, rate-limiting or broken, and
//! the mirror itself killed mid-fetch; HEADs of uncached content answered from upstream.

use super::*;

#[test]
fn a_warm_cache_serves_with_the_upstream_down_and_cold_content_gets_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let mut upstream = Server::builder().target(Target::Dockyard).start();
    let layout = dir.path().join("layout");
    let image = seed(&upstream, &layout, "v1", &[500_000], "library/app", &[]);
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
    let image = seed(&upstream, &layout, "v1", &[256 << 20], "library/big", &[]);
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

#[test]
fn heads_of_uncached_content_are_answered_from_upstream_and_a_killed_mirror_recovers() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let layout = dir.path().join("layout");
    let image = seed(
        &upstream,
        &layout,
        "heads",
        &[128 << 20, 1000],
        "library/app",
        &[],
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
fn a_dead_endpoint_is_skipped_for_the_next_one_and_not_asked_again_for_a_while() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let layout = dir.path().join("layout");
    let image = seed(
        &upstream,
        &layout,
        "endpoints",
        &[50_000],
        "library/app",
        &[],
    );
    // Port 1 on loopback refuses: the first endpoint is dead, as a blocked Docker Hub mirror.
    let config = dir.path().join("mirror.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nproxy:\n  upstreams:\n  - host: docker.io\n    urls: [http://127.0.0.1:1, http://{}]\n",
            upstream.addr
        ),
    )
    .unwrap();
    let mirror = mirror(&[("DOCKYARD_CONFIG", &config.display().to_string())]);
    for round in 0..3 {
        let out = dir.path().join(format!("pulled-{round}"));
        skopeo_copy(
            &[],
            &format!("docker://{}/library/app:v1", mirror.addr),
            &format!("oci:{}:endpoints", out.display()),
        );
        assert_same_image(&layout, &out, &image.manifest_digest);
    }
    let failed = mirror.log().matches("upstream endpoint failed").count();
    assert_eq!(
        failed,
        1,
        "the dead endpoint is tried once, then skipped:\n{}",
        mirror.log()
    );
}
