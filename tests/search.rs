//! `docker search` against Dockyard (issue 12): the Docker engine (Debian's dockerd 20.10 with
//! the docker CLI) searching `127.0.0.1:PORT/<term>`, which makes it ping `/v1/_ping` (https
//! first, then plain http for a loopback registry) and send `GET /v1/search?q=<term>&n=<limit>`
//! with Basic credentials when logged in (`X-Docker-Token: true`). Also the JSON of
//! `/v1/search` read directly, and the access rules: a user finds only what they may pull,
//! an anonymous caller without anonymous pull finds nothing. Dockyard only.

use dockyard_testkit as common;

use std::path::Path;
use std::process::Command;

use common::dockerd::Dockerd;
use common::http::{self, Response, basic};
use common::oci::{self, OCI_MANIFEST};
use common::{Server, Target, run, run_capture};
use serde_json::Value;
use tempfile::TempDir;

const REPOS: &[&str] = &[
    "team-a/app",
    "team-a/web",
    "team-b/app",
    "other/tool",
    "deep/nested/app-server",
];

fn send(server: &Server, path: &str, auth: Option<&str>) -> Response {
    let mut headers = Vec::new();
    if let Some(auth) = auth {
        headers.push(("Authorization", auth));
    }
    http::request(&server.addr, "GET", path, &headers, &[])
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Pushes one small image to every repository of [`REPOS`] over the API, as `auth`.
fn seed(server: &Server, auth: Option<&str>, dir: &Path) {
    let layout = dir.join("layout");
    let image = oci::write_oci_layout(&layout, "s", &[700, 100]);
    for repo in REPOS {
        for digest in image.layer_digests.iter().chain([&image.config_digest]) {
            let bytes = oci::layout_blob(&layout, digest);
            let mut headers = vec![];
            if let Some(a) = auth {
                headers.push(("Authorization", a));
            }
            let resp = http::request(
                &server.addr,
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                &headers,
                &[],
            )
            .unwrap();
            assert_eq!(resp.status, 202, "{}", resp.text());
            let location = resp.header("location").unwrap().to_string();
            let path = &location[location.find("/v2/").unwrap()..];
            let sep = if path.contains('?') { '&' } else { '?' };
            let resp = http::request(
                &server.addr,
                "PUT",
                &format!("{path}{sep}digest={digest}"),
                &headers,
                &bytes,
            )
            .unwrap();
            assert_eq!(resp.status, 201, "{}", resp.text());
        }
        let mut headers = vec![("Content-Type", OCI_MANIFEST)];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let resp = http::request(
            &server.addr,
            "PUT",
            &format!("/v2/{repo}/manifests/v1"),
            &headers,
            &image.manifest,
        )
        .unwrap();
        assert_eq!(resp.status, 201, "{}", resp.text());
    }
}

/// The names of a `/v1/search` answer, after checking its shape (the fields and types the
/// docker engine decodes, plus the paging fields of the v1 API).
fn search_names(resp: &Response, what: &str) -> Vec<String> {
    assert_eq!(resp.status, 200, "{what}: {}", resp.text());
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: content type {:?}",
        resp.header("content-type")
    );
    let doc: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", resp.text()));
    for key in ["num_pages", "num_results", "page_size", "page"] {
        assert!(doc[key].is_u64(), "{what}: {key} is not a number: {doc}");
    }
    assert!(doc["query"].is_string(), "{what}: query: {doc}");
    let results = doc["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: results: {doc}"));
    for r in results {
        assert!(r["name"].is_string(), "{what}: {r}");
        assert!(r["description"].is_string(), "{what}: {r}");
        assert!(r["star_count"].is_u64(), "{what}: {r}");
        assert!(r["is_official"].is_boolean(), "{what}: {r}");
        assert!(r["is_automated"].is_boolean(), "{what}: {r}");
    }
    results
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn json_of(resp: &Response) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or(Value::Null)
}

#[test]
fn v1_ping_and_search_answer_in_the_docker_format() {
    let server = Server::builder().target(Target::Dockyard).start();
    let tmp = TempDir::new().unwrap();
    seed(&server, None, tmp.path());

    let ping = send(&server, "/v1/_ping", None);
    assert_eq!(ping.status, 200, "/v1/_ping: {}", ping.text());

    let all = search_names(&send(&server, "/v1/search?q=", None), "q=");
    let mut want: Vec<String> = REPOS.iter().map(|r| r.to_string()).collect();
    want.sort();
    assert_eq!(all, want, "an empty query lists every repository, sorted");

    let resp = send(&server, "/v1/search?q=app", None);
    assert_eq!(
        search_names(&resp, "q=app"),
        ["deep/nested/app-server", "team-a/app", "team-b/app"]
    );
    let doc = json_of(&resp);
    assert_eq!(doc["query"], "app");
    assert_eq!(doc["num_results"], 3);
    assert_eq!(doc["page"], 1);
    // Case-insensitive substring at any depth, '/' included.
    assert_eq!(
        search_names(&send(&server, "/v1/search?q=NESTED%2FAPP", None), "upper"),
        ["deep/nested/app-server"]
    );
    assert_eq!(
        search_names(&send(&server, "/v1/search?q=team-a/", None), "slash"),
        ["team-a/app", "team-a/web"]
    );
    assert!(search_names(&send(&server, "/v1/search?q=zzz", None), "none").is_empty());

    // Paging: n per page, page is 1-based, num_pages and num_results count everything.
    let resp = send(&server, "/v1/search?q=app&n=2&page=1", None);
    assert_eq!(
        search_names(&resp, "page 1"),
        ["deep/nested/app-server", "team-a/app"]
    );
    let doc = json_of(&resp);
    assert_eq!(
        (
            &doc["num_results"],
            &doc["num_pages"],
            &doc["page_size"],
            &doc["page"]
        ),
        (&3.into(), &2.into(), &2.into(), &1.into()),
        "{doc}"
    );
    let resp = send(&server, "/v1/search?q=app&n=2&page=2", None);
    assert_eq!(search_names(&resp, "page 2"), ["team-b/app"]);
    assert_eq!(json_of(&resp)["page"], 2);
    let resp = send(&server, "/v1/search?q=app&n=2&page=9", None);
    assert!(search_names(&resp, "page 9").is_empty());

    // A push shows up in the next search at once (the name index follows pushes).
    let more = TempDir::new().unwrap();
    let layout = more.path().join("l");
    let image = oci::write_oci_layout(&layout, "new", &[10]);
    common::registry::push_layout(&server, &[], &layout, "new", "fresh/app:1");
    let _ = image;
    assert!(
        search_names(&send(&server, "/v1/search?q=fresh", None), "fresh")
            .contains(&"fresh/app".to_string())
    );
}

/// A docker engine of its own for one test.
fn engine(dir: &Path) -> Dockerd {
    Dockerd::start(dir, "\"debug\": false")
}

/// The repository names `docker search` prints for `term` (its NAME column), checking the
/// table's header; the exit status must be 0.
fn docker_search(docker: &Dockerd, term: &str) -> Vec<String> {
    let out = run_capture(&mut docker.docker(&["search", "--no-trunc", "--limit", "100", term]));
    assert!(
        out.status.success(),
        "docker search {term} failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let mut lines = out.stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("DESCRIPTION") && header.contains("STARS"),
        "docker search header: {header:?}"
    );
    let mut names: Vec<String> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// `name` without a leading `host/` (the engine prints what the registry returns; both forms
/// are accepted).
fn strip_host(names: Vec<String>, host: &str) -> Vec<String> {
    let prefix = format!("{host}/");
    names
        .into_iter()
        .map(|n| n.strip_prefix(&prefix).map(str::to_string).unwrap_or(n))
        .collect()
}

#[test]
fn docker_search_lists_matching_repositories() {
    let server = Server::builder().target(Target::Dockyard).start();
    let tmp = TempDir::new().unwrap();
    seed(&server, None, tmp.path());
    let docker = engine(&tmp.path().join("docker"));
    let host = &server.addr;

    let names = strip_host(docker_search(&docker, &format!("{host}/app")), host);
    assert_eq!(
        names,
        ["deep/nested/app-server", "team-a/app", "team-b/app"],
        "docker search {host}/app"
    );
    let names = strip_host(docker_search(&docker, &format!("{host}/team-a/")), host);
    assert_eq!(names, ["team-a/app", "team-a/web"]);
    let names = strip_host(docker_search(&docker, &format!("{host}/tool")), host);
    assert_eq!(names, ["other/tool"]);
    assert!(docker_search(&docker, &format!("{host}/no-such")).is_empty());
    // --limit is passed on as n.
    let out = run(&mut docker.docker(&["search", "--limit", "1", &format!("{host}/app")]));
    assert_eq!(out.lines().count(), 2, "header and one result: {out}");
    // localhost works the same.
    let port = host.rsplit(':').next().unwrap();
    let names = strip_host(
        docker_search(&docker, &format!("localhost:{port}/web")),
        &format!("localhost:{port}"),
    );
    assert_eq!(names, ["team-a/web"]);

    // What the engine sent: the pings (https first fails on a plain listener), then the search.
    let log = server.log();
    assert!(
        log.contains("/v1/_ping"),
        "no /v1/_ping in the access log:\n{log}"
    );
    assert!(log.contains("/v1/search"), "no /v1/search in the log");
}

/// A Dockyard with htpasswd users admin (all) and alice (pull `team-a/*`), no anonymous pull.
fn auth_server(dir: &Path, anonymous: &str) -> Server {
    let htpasswd = dir.join("htpasswd");
    let line = |u: &str, p: &str| run(Command::new("htpasswd").args(["-Bbn", "-C", "5", u, p]));
    std::fs::write(
        &htpasswd,
        format!(
            "{}\n{}\n",
            line("admin", "admin-pass").trim(),
            line("alice", "alice-pass").trim()
        ),
    )
    .unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nauth:\n  htpasswd:\n    realm: dockyard-test\n    path: {}\n{anonymous}  access:\n    - users: [admin]\n      repositories: [\"**\"]\n      actions: [pull, push, delete]\n    - users: [alice]\n      repositories: [\"team-a/*\"]\n      actions: [pull]\n",
            htpasswd.display()
        ),
    )
    .unwrap();
    Server::builder()
        .target(Target::Dockyard)
        .env("DOCKYARD_CONFIG", &config.display().to_string())
        .start()
}

#[test]
fn search_respects_access_rules() {
    let tmp = TempDir::new().unwrap();
    let server = auth_server(tmp.path(), "");
    seed(&server, Some(&basic("admin", "admin-pass")), tmp.path());
    let host = server.addr.clone();

    // Directly: what each caller may pull, and nothing for an anonymous one.
    let alice = basic("alice", "alice-pass");
    let names = search_names(&send(&server, "/v1/search?q=app", Some(&alice)), "alice");
    assert_eq!(names, ["team-a/app"]);
    let doc = json_of(&send(&server, "/v1/search?q=", Some(&alice)));
    assert_eq!(
        doc["num_results"], 2,
        "alice's count covers only hers: {doc}"
    );
    let names = search_names(
        &send(
            &server,
            "/v1/search?q=app",
            Some(&basic("admin", "admin-pass")),
        ),
        "admin",
    );
    assert_eq!(names.len(), 3);
    let anonymous = send(&server, "/v1/search?q=app", None);
    assert!(
        anonymous.status == 401 || search_names(&anonymous, "anonymous").is_empty(),
        "anonymous search without anonymous pull: {} {}",
        anonymous.status,
        anonymous.text()
    );
    assert!(
        !anonymous.text().contains("team-"),
        "an anonymous answer names repositories: {}",
        anonymous.text()
    );
    let wrong = send(&server, "/v1/search?q=app", Some(&basic("alice", "nope")));
    assert!(
        wrong.status == 401 && !wrong.text().contains("team-"),
        "wrong password: {} {}",
        wrong.status,
        wrong.text()
    );

    // The engine: anonymous first, then logged in as alice.
    let docker = engine(&tmp.path().join("docker"));
    let out = run_capture(&mut docker.docker(&["search", &format!("{host}/app")]));
    let listed: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert!(
        !out.status.success() || listed.is_empty(),
        "anonymous docker search listed {listed:?}"
    );
    assert!(
        !out.stdout.contains("team-"),
        "anonymous docker search: {}",
        out.stdout
    );
    run(&mut docker.docker(&["login", "-u", "alice", "-p", "alice-pass", &host]));
    let names = strip_host(docker_search(&docker, &format!("{host}/app")), &host);
    assert_eq!(names, ["team-a/app"], "alice finds only what she may pull");
    let names = strip_host(docker_search(&docker, &format!("{host}/team")), &host);
    assert_eq!(names, ["team-a/app", "team-a/web"]);
    run(&mut docker.docker(&["logout", &host]));
    run(&mut docker.docker(&["login", "-u", "admin", "-p", "admin-pass", &host]));
    let names = strip_host(docker_search(&docker, &format!("{host}/app")), &host);
    assert_eq!(
        names,
        ["deep/nested/app-server", "team-a/app", "team-b/app"],
        "admin finds everything"
    );
    let searches = server.access_lines("GET", "/v1/search");
    assert!(!searches.is_empty(), "no /v1/search in the access log");

    // With anonymous pull on other/*, an anonymous search finds exactly that.
    let tmp2 = TempDir::new().unwrap();
    let open = auth_server(tmp2.path(), "  anonymouspull: [\"other/*\"]\n");
    seed(&open, Some(&basic("admin", "admin-pass")), tmp2.path());
    let names = search_names(&send(&open, "/v1/search?q=", None), "anonymous pull");
    assert_eq!(names, ["other/tool"]);
    run(&mut docker.docker(&["logout", &host]));
    let names = strip_host(
        docker_search(&docker, &format!("{}/o", open.addr)),
        &open.addr,
    );
    assert_eq!(
        names,
        ["other/tool"],
        "anonymous docker search with anonymous pull"
    );
}
