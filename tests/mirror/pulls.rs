//! Pulls through the mirror by every kind of client: skopeo (20 at once, one upstream GET per
//! blob), containerd with `?ns=`, podman with a registries.conf path-prefix mirror, the Docker
//! engine with `registry-mirrors`, oras for referrers, and Docker's token flow upstream.

use super::*;

#[test]
fn a_registry2_style_mirror_pulls_through_with_its_own_credentials_once_per_blob() {
    let dir = TempDir::new().unwrap();
    let upstream = distribution_with_auth(&dir);
    let layout = dir.path().join("layout");
    let image = seed(
        &upstream,
        &layout,
        "v1",
        &[3 << 20, 200_000, 1000],
        "library/app",
        &["--dest-creds", "mirror:mirror-pass"],
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
    assert!(
        value("dockyard_proxy_cache_bytes") >= blob_bytes,
        "{metrics}"
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
fn the_docker_token_flow_gets_one_token_per_scope_with_the_mirrors_own_credentials() {
    let dir = TempDir::new().unwrap();
    let issuer = token_issuer::TokenIssuer::start(dir.path());
    let mut builder = Server::builder().target(Target::Distribution);
    for (k, v) in issuer.registry_env() {
        builder = builder.env(k, &v);
    }
    let upstream = builder.start();
    let layout = dir.path().join("layout");
    let image = seed(
        &upstream,
        &layout,
        "v1",
        &[300_000, 2000],
        "library/app",
        &[],
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

#[test]
fn podman_pulls_through_a_registries_conf_mirror_with_a_path_prefix_location() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let layout = dir.path().join("layout");
    let image = seed(
        &upstream,
        &layout,
        "podman",
        &[400_000, 3000],
        "team/app",
        &[],
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
fn the_docker_engine_pulls_library_images_through_registry_mirrors() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let layout = dir.path().join("layout");
    let image = seed(
        &upstream,
        &layout,
        "dockerd",
        &[300_000, 2000],
        "library/app",
        &["--format", "v2s2"],
    );
    let remote = format!("http://{}", upstream.addr);
    let mirror = mirror(&[("REGISTRY_PROXY_REMOTEURL", &remote)]);
    // docker's registry-mirrors sends no ns: the default upstream answers `library/<name>`.
    let engine = common::dockerd::Dockerd::start(
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

/// A CA and a server certificate for 127.0.0.1 it signed, by openssl: (ca, cert, key).
fn ca_and_server(dir: &std::path::Path) -> (String, String, String) {
    let p = |name: &str| dir.join(name).display().to_string();
    let (ca, ca_key, csr, cert, key, ext) = (
        p("ca.crt"),
        p("ca.key"),
        p("server.csr"),
        p("server.crt"),
        p("server.key"),
        p("server.ext"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args([
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "1",
            "-subj",
            "/CN=upstream test CA",
        ]));
    run(Command::new("openssl").args(["req"]).args(ec).args([
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=127.0.0.1",
    ]));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "1",
        "-extfile",
        &ext,
    ]));
    (ca, cert, key)
}

#[test]
fn an_https_upstream_is_trusted_through_its_ca_or_insecure_and_refused_otherwise() {
    let dir = TempDir::new().unwrap();
    let (ca, cert, key) = ca_and_server(dir.path());
    let upstream = Server::builder()
        .target(Target::Dockyard)
        .https()
        .env("REGISTRY_HTTP_TLS_CERTIFICATE", &cert)
        .env("REGISTRY_HTTP_TLS_KEY", &key)
        .start();
    let layout = dir.path().join("layout");
    let image = seed(&upstream, &layout, "tls", &[150_000], "team/app", &[]);
    let with = |extra: &str, name: &str| {
        let config = dir.path().join(format!("{name}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nproxy:\n  upstreams:\n  - host: secure.example\n    urls: [https://{}]\n{extra}",
                upstream.addr
            ),
        )
        .unwrap();
        mirror(&[("DOCKYARD_CONFIG", &config.display().to_string())])
    };
    let trusted = with(&format!("    ca: {ca}\n"), "trusted");
    // A self-signed upstream: its own certificate as the `ca` (docker's certs.d/ca.crt way).
    let pinned = with(&format!("    ca: {cert}\n"), "pinned");
    let insecure = with("    insecure: true\n", "insecure");
    let untrusted = with("", "untrusted");
    for (mirror, name) in [
        (&trusted, "ca"),
        (&pinned, "pinned"),
        (&insecure, "insecure"),
    ] {
        let out = dir.path().join(format!("pulled-{name}"));
        skopeo_copy(
            &[],
            &format!("docker://{}/team/app:v1", mirror.addr),
            &format!("oci:{}:tls", out.display()),
        );
        assert_same_image(&layout, &out, &image.manifest_digest);
    }
    let resp = http::request(
        &untrusted.addr,
        "GET",
        "/v2/team/app/manifests/v1",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert!(
        resp.text().to_lowercase().contains("certificate"),
        "{}",
        resp.text()
    );
}

#[test]
fn a_tag_is_revalidated_by_head_and_an_unchanged_manifest_is_not_fetched_again() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Distribution).start();
    let layout = dir.path().join("layout");
    seed(&upstream, &layout, "fresh", &[1000], "library/app", &[]);
    let remote = format!("http://{}", upstream.addr);
    let count = |needle: &str| {
        upstream
            .log()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    };
    let (get, head) = (
        "\"GET /v2/library/app/manifests/",
        "\"HEAD /v2/library/app/manifests/v1",
    );
    let (gets_before, heads_before) = (count(get), count(head));
    let checking = mirror(&[
        ("REGISTRY_PROXY_REMOTEURL", &remote),
        ("REGISTRY_PROXY_FRESHNESS", "0s"),
    ]);
    let accept = [("Accept", common::oci::OCI_MANIFEST)];
    for _ in 0..3 {
        let resp = http::request(
            &checking.addr,
            "GET",
            "/v2/library/app/manifests/v1",
            &accept,
            &[],
        )
        .unwrap();
        assert_eq!(resp.status, 200);
    }
    let gets = count(get) - gets_before;
    let heads = count(head) - heads_before;
    assert_eq!(gets, 1, "the manifest is fetched once:\n{}", upstream.log());
    assert_eq!(
        heads, 3,
        "the tag is checked by HEAD, which Docker Hub does not count"
    );
    // Within the freshness interval the upstream is not asked at all.
    let fresh = mirror(&[
        ("REGISTRY_PROXY_REMOTEURL", &remote),
        ("REGISTRY_PROXY_FRESHNESS", "1h"),
    ]);
    for _ in 0..3 {
        let resp = http::request(
            &fresh.addr,
            "GET",
            "/v2/library/app/manifests/v1",
            &accept,
            &[],
        )
        .unwrap();
        assert_eq!(resp.status, 200);
    }
    let heads_after = count(head) - heads_before;
    assert_eq!(
        heads_after,
        heads + 1,
        "one check, then the fresh tag is served from the cache"
    );
}
