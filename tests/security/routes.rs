//! Every route of the registry API walked without valid credentials against a registry
//! holding an image in `secret/app`: each answer must be `401` with the Basic challenge and
//! code `UNAUTHORIZED`, carry none of the stored data (manifest or blob bytes, digests it was
//! not asked about, tag or repository names, upload locations), be byte-for-byte the same as
//! for the repository `secret/nop` that does not exist, and change nothing in storage.

use std::collections::BTreeMap;
use std::io::ErrorKind;

use tempfile::TempDir;

use super::common::Server;
use super::common::http::{self, Response};
use super::common::oci::{ImageInfo, OCI_MANIFEST};
use super::fixture::{
    CHALLENGE, Htpasswd, assert_challenge, auth_server, basic, describe, get, push_image, send,
};

const REPO: &str = "secret/app";
/// Same length as [`REPO`], so that answers can be compared byte for byte.
const MISSING: &str = "secret/nop";
const TAG: &str = "topsecret-v1";
/// Headers that would hand out data or existence.
const DATA_HEADERS: &[&str] = &[
    "docker-content-digest",
    "location",
    "docker-upload-uuid",
    "range",
    "content-range",
    "link",
    "oci-subject",
    "oci-filters-applied",
];

/// One request of the walk; `{repo}` and `{upload}` in `path` are filled per repository.
struct Probe {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn probe(method: &'static str, path: String) -> Probe {
    Probe {
        method,
        path,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

fn with(mut probe: Probe, header: &'static str, value: &str, body: &[u8]) -> Probe {
    probe.headers.push((header, value.to_string()));
    probe.body = body.to_vec();
    probe
}

/// The whole API surface, for a registry holding `image` at `{repo}:TAG`.
fn probes(image: &ImageInfo, with_referrers: bool) -> Vec<Probe> {
    let manifest = &image.manifest_digest;
    let layer = &image.layer_digests[0];
    let config = &image.config_digest;
    let chunk = b"0123456789".as_slice();
    let octet = "application/octet-stream";
    let mut all = vec![
        probe("GET", "/v2/".into()),
        probe("HEAD", "/v2/".into()),
        probe("GET", "/v2/_catalog".into()),
        probe("GET", "/v2/_catalog?n=10&last=a".into()),
        probe("GET", "/v2/{repo}/tags/list".into()),
        probe("GET", "/v2/{repo}/tags/list?n=1".into()),
        probe("GET", format!("/v2/{{repo}}/manifests/{TAG}")),
        probe("HEAD", format!("/v2/{{repo}}/manifests/{TAG}")),
        probe("GET", format!("/v2/{{repo}}/manifests/{manifest}")),
        probe("HEAD", format!("/v2/{{repo}}/manifests/{manifest}")),
        with(
            probe("PUT", format!("/v2/{{repo}}/manifests/{TAG}")),
            "Content-Type",
            OCI_MANIFEST,
            &image.manifest,
        ),
        with(
            probe("PUT", format!("/v2/{{repo}}/manifests/{manifest}")),
            "Content-Type",
            OCI_MANIFEST,
            &image.manifest,
        ),
        probe("DELETE", format!("/v2/{{repo}}/manifests/{TAG}")),
        probe("DELETE", format!("/v2/{{repo}}/manifests/{manifest}")),
        probe("GET", format!("/v2/{{repo}}/blobs/{layer}")),
        with(
            probe("GET", format!("/v2/{{repo}}/blobs/{layer}")),
            "Range",
            "bytes=0-99",
            &[],
        ),
        probe("HEAD", format!("/v2/{{repo}}/blobs/{layer}")),
        probe("GET", format!("/v2/{{repo}}/blobs/{config}")),
        probe("DELETE", format!("/v2/{{repo}}/blobs/{layer}")),
        probe("POST", "/v2/{repo}/blobs/uploads/".into()),
        with(
            probe(
                "POST",
                format!("/v2/{{repo}}/blobs/uploads/?digest={}", digest(chunk)),
            ),
            "Content-Type",
            octet,
            chunk,
        ),
        probe(
            "POST",
            format!("/v2/{{repo}}/blobs/uploads/?mount={layer}&from={{repo}}"),
        ),
        probe(
            "POST",
            format!("/v2/other/new/blobs/uploads/?mount={layer}&from={{repo}}"),
        ),
        probe(
            "POST",
            format!("/v2/{{repo}}/blobs/uploads/?mount={layer}&from=other/new"),
        ),
        with(
            with(
                probe("PATCH", "{upload}".into()),
                "Content-Type",
                octet,
                &[],
            ),
            "Content-Range",
            "0-9",
            chunk,
        ),
        with(
            probe("PUT", format!("{{upload}}&digest={}", digest(chunk))),
            "Content-Type",
            octet,
            chunk,
        ),
        probe("GET", "{upload}".into()),
        probe("DELETE", "{upload}".into()),
    ];
    if with_referrers {
        all.push(probe("GET", format!("/v2/{{repo}}/referrers/{manifest}")));
        all.push(probe(
            "GET",
            format!("/v2/{{repo}}/referrers/{manifest}?artifactType=application/x-test"),
        ));
    }
    all
}

/// Sends a request without credentials. A registry that refuses before reading the body and
/// then closes the connection may reset it before the answer is read (a race in the kernel,
/// not an answer): retry that twice.
fn send_unread(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match http::request(&server.addr, method, path, headers, body) {
            Ok(resp) => return resp,
            Err(e) if attempt < 3 && e.kind() == ErrorKind::ConnectionReset => continue,
            Err(e) => panic!("{method} {path} failed {attempt} times: {e}"),
        }
    }
}

fn digest(bytes: &[u8]) -> String {
    super::common::oci::digest_of(bytes)
}

/// Starts an upload session in `REPO` (with credentials) and returns its URL path and id.
fn open_upload(server: &Server, admin: &str) -> (String, String) {
    let resp = send(
        server,
        "POST",
        &format!("/v2/{REPO}/blobs/uploads/"),
        Some(admin),
        &[],
        &[],
    );
    assert_eq!(resp.status, 202, "{}", describe(&resp));
    let location = resp.header("location").expect("upload location");
    let path = match location.find("/v2/") {
        Some(start) => location[start..].to_string(),
        None => panic!("odd upload location {location}"),
    };
    let uuid = resp
        .header("docker-upload-uuid")
        .map(str::to_string)
        .unwrap_or_else(|| {
            let tail = path.split('?').next().unwrap_or_default();
            tail.rsplit('/').next().unwrap_or_default().to_string()
        });
    // Always carry a query, so probes can append `&digest=`.
    let path = if path.contains('?') {
        path
    } else {
        format!("{path}?")
    };
    (path, uuid)
}

/// A made-up session id of the same length as `uuid`.
fn fake_uuid(uuid: &str) -> String {
    uuid.chars()
        .map(|c| match c {
            '-' => '-',
            '0' => '1',
            _ => '0',
        })
        .collect()
}

/// Asserts `resp` (for `path`) is a challenge that hands out none of the stored data.
fn assert_no_data(resp: &Response, method: &str, path: &str, image: &ImageInfo, uuid: &str) {
    let what = format!("{method} {path}");
    assert_challenge(resp, method == "HEAD", &what);
    for header in DATA_HEADERS {
        assert_eq!(resp.header(header), None, "{what} sent {header}");
    }
    let body = String::from_utf8_lossy(&resp.body);
    let manifest = String::from_utf8_lossy(&image.manifest);
    assert!(
        !body.contains(manifest.as_ref()),
        "{what} sent the manifest"
    );
    let secrets = [
        TAG,
        REPO,
        uuid,
        image.manifest_digest.trim_start_matches("sha256:"),
        image.config_digest.trim_start_matches("sha256:"),
        image.layer_digests[0].trim_start_matches("sha256:"),
        image.layer_digests[1].trim_start_matches("sha256:"),
        "rootfs",
    ];
    for secret in secrets {
        // Echoing what the request itself named is no leak.
        if !path.contains(secret) {
            assert!(!body.contains(secret), "{what} revealed {secret:?}: {body}");
        }
    }
}

/// Everything but the `Date`, with the repository name and upload id replaced by markers.
fn normalized(resp: &Response, repo: &str, uuid: &str) -> (u16, BTreeMap<String, String>, String) {
    let clean = |text: &str| text.replace(repo, "<repo>").replace(uuid, "<uuid>");
    let headers = resp
        .headers
        .iter()
        .filter(|(name, _)| name != "date")
        .map(|(name, value)| (name.clone(), clean(value)))
        .collect();
    (
        resp.status,
        headers,
        clean(&String::from_utf8_lossy(&resp.body)),
    )
}

fn seed_secret_image(server: &Server, admin: &str) -> (TempDir, ImageInfo) {
    let tmp = TempDir::new().unwrap();
    let image = push_image(server, Some(admin), tmp.path(), "routes", REPO, TAG);
    (tmp, image)
}

#[test]
fn every_route_without_credentials_is_challenged_and_reveals_nothing() {
    let users = Htpasswd::new(&[("admin", "admin-pass")]);
    let server = auth_server(&users.path, &[]);
    let admin = basic("admin", "admin-pass");
    let (_tmp, image) = seed_secret_image(&server, &admin);
    let (upload, uuid) = open_upload(&server, &admin);
    let fake = fake_uuid(&uuid);
    let referrers = !server.target.skip_oci_1_1("the referrers API");

    let probes = probes(&image, referrers);
    for probe in &probes {
        let mut answers = Vec::new();
        for (repo, id) in [(REPO, uuid.as_str()), (MISSING, fake.as_str())] {
            let own_upload = upload.replace(REPO, repo).replace(&uuid, id);
            let path = probe
                .path
                .replace("{upload}", &own_upload)
                .replace("{repo}", repo);
            let headers: Vec<(&str, &str)> = probe
                .headers
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            let resp = send_unread(&server, probe.method, &path, &headers, &probe.body);
            assert_no_data(&resp, probe.method, &path, &image, &uuid);
            answers.push(normalized(&resp, repo, id));
        }
        assert_eq!(
            answers[0], answers[1],
            "{} {}: the answer for an existing repository differs from a missing one's",
            probe.method, probe.path
        );
    }

    // Nothing changed: the image, its tag and the open upload are all still there, and
    // nothing reached the other repositories.
    let resp = get(
        &server,
        &format!("/v2/{REPO}/manifests/{TAG}"),
        Some(&admin),
    );
    assert_eq!(resp.status, 200, "{}", describe(&resp));
    assert_eq!(resp.body, image.manifest);
    let layer = &image.layer_digests[0];
    let resp = get(&server, &format!("/v2/{REPO}/blobs/{layer}"), Some(&admin));
    assert_eq!(resp.status, 200, "{}", describe(&resp));
    let resp = get(&server, &upload, Some(&admin));
    assert_eq!(resp.status, 204, "upload session: {}", describe(&resp));
    assert!(
        matches!(resp.header("range"), Some("0-0") | None),
        "the upload received data: {}",
        describe(&resp)
    );
    for repo in [MISSING, "other/new"] {
        let resp = get(&server, &format!("/v2/{repo}/tags/list"), Some(&admin));
        assert_eq!(resp.status, 404, "{repo} was created: {}", describe(&resp));
        let resp = send(
            &server,
            "HEAD",
            &format!("/v2/{repo}/blobs/{layer}"),
            Some(&admin),
            &[],
            &[],
        );
        assert_eq!(resp.status, 404, "blob reached {repo}: {}", describe(&resp));
    }

    // The same credentials that were refused nowhere above open the base endpoint.
    let resp = get(&server, "/v2/", Some(&admin));
    assert_eq!(resp.status, 200, "{}", describe(&resp));
}

#[test]
fn wrong_unknown_or_foreign_credentials_are_challenged_everywhere() {
    let users = Htpasswd::new(&[("admin", "admin-pass"), ("bob", "bob-pass")]);
    let server = auth_server(&users.path, &[]);
    let admin = basic("admin", "admin-pass");
    let (_tmp, image) = seed_secret_image(&server, &admin);
    let routes = [
        ("GET", "/v2/".to_string()),
        ("GET", format!("/v2/{REPO}/manifests/{TAG}")),
        ("POST", format!("/v2/{REPO}/blobs/uploads/")),
    ];
    // Nine failures: one under the rate limit, so the valid login below still succeeds.
    let credentials = [
        ("wrong password", basic("admin", "admin-pasS")),
        ("unknown user", basic("mallory", "admin-pass")),
        ("bearer token", "Bearer admin-pass".to_string()),
    ];
    for (kind, auth) in &credentials {
        for (method, path) in &routes {
            let resp = send(&server, method, path, Some(auth), &[], &[]);
            let what = format!("{path} ({kind})");
            assert_no_data(&resp, method, &what, &image, "no-upload-session");
        }
    }
    let resp = get(
        &server,
        &format!("/v2/{REPO}/manifests/{TAG}"),
        Some(&admin),
    );
    assert_eq!(resp.status, 200, "{}", describe(&resp));
    assert_eq!(resp.body, image.manifest);
    let resp = get(&server, "/v2/", Some(&basic("bob", "bob-pass")));
    assert_eq!(resp.status, 200, "{}", describe(&resp));
}

#[test]
fn challenge_is_exactly_the_one_registry_2_sends() {
    let users = Htpasswd::new(&[("admin", "admin-pass")]);
    let server = auth_server(&users.path, &[]);
    for (path, auth) in [
        ("/v2/", None),
        ("/v2/secret/app/tags/list", None),
        ("/v2/", Some(basic("admin", "wrong"))),
    ] {
        let resp = get(&server, path, auth.as_deref());
        assert_eq!(resp.status, 401, "{path}: {}", describe(&resp));
        assert_eq!(
            resp.header("www-authenticate"),
            Some(CHALLENGE),
            "GET {path} ({auth:?}): {}",
            describe(&resp)
        );
    }
}
