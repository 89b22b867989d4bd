//! Tests of the mirror's settings and routing.

use super::*;
use crate::config::Config;

fn settings(yaml: &str) -> Result<Option<Settings>, String> {
    let config = Config::parse(yaml, Vec::<(String, String)>::new())
        .unwrap()
        .config;
    Settings::from_config(config.proxy.as_ref())
}

fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

#[test]
fn registry2_remoteurl_is_one_default_upstream_with_its_own_names() {
    let s = settings(
        "proxy:\n  remoteurl: https://registry-1.docker.io\n  username: u\n  password: p\n  ttl: 72h\n",
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.upstreams.len(), 1);
    assert_eq!(s.upstreams[0].host, "docker.io");
    assert_eq!(s.upstreams[0].credentials, Some(("u".into(), "p".into())));
    assert_eq!(s.ttl, Some(Duration::from_secs(72 * 3600)));
    assert!(!s.prefix_names);
    // Docker Hub names arrive as library/<name>; stored under the same name.
    let local = s.local_name(&name("library/alpine"), None).unwrap();
    assert_eq!(local.as_str(), "library/alpine");
    assert_eq!(s.route(&local).unwrap().remote, "library/alpine");
    let env = Config::parse(
        "",
        vec![(
            "REGISTRY_PROXY_REMOTEURL".to_owned(),
            "http://127.0.0.1:5001".to_owned(),
        )],
    )
    .unwrap()
    .config;
    let s = Settings::from_config(env.proxy.as_ref()).unwrap().unwrap();
    assert_eq!(s.upstreams[0].endpoints, ["http://127.0.0.1:5001"]);
    assert_eq!(s.upstreams[0].host, "127.0.0.1:5001");
}

#[test]
fn several_upstreams_route_by_ns_by_prefix_and_by_default() {
    let s = settings(
        "proxy:\n  freshness: 1m\n  upstreams:\n  - host: docker.io\n    default: true\n    urls: [https://mirror-a.example, https://mirror-b.example]\n  - host: ghcr.io\n  - host: registry.example.com:5000\n    urls: http://127.0.0.1:5000\n",
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.freshness, Duration::from_secs(60));
    assert_eq!(s.upstreams[0].endpoints.len(), 2);
    assert_eq!(s.upstreams[1].endpoints, ["https://ghcr.io"]);
    let cases = [
        (
            "library/alpine",
            Some("docker.io"),
            "docker.io/library/alpine",
            0,
            "library/alpine",
        ),
        (
            "alpine",
            Some("index.docker.io"),
            "docker.io/library/alpine",
            0,
            "library/alpine",
        ),
        (
            "owner/tool",
            Some("ghcr.io"),
            "ghcr.io/owner/tool",
            1,
            "owner/tool",
        ),
        (
            "ghcr.io/owner/tool",
            None,
            "ghcr.io/owner/tool",
            1,
            "owner/tool",
        ),
        (
            "library/alpine",
            None,
            "docker.io/library/alpine",
            0,
            "library/alpine",
        ),
        (
            "docker.io/alpine",
            None,
            "docker.io/library/alpine",
            0,
            "library/alpine",
        ),
        (
            "app",
            Some("registry.example.com:5000"),
            "registry.example.com_5000/app",
            2,
            "app",
        ),
    ];
    for (requested, ns, local, upstream, remote) in cases {
        let got = s.local_name(&name(requested), ns).unwrap();
        assert_eq!(got.as_str(), local, "{requested} ns={ns:?}");
        let route = s.route(&got).unwrap();
        assert_eq!(
            (route.upstream, route.remote.as_str()),
            (upstream, remote),
            "{local}"
        );
    }
    // Hosts it was not configured for are refused: never an open proxy.
    assert_eq!(
        s.local_name(&name("x/y"), Some("evil.example")),
        Err(RouteError::UnknownUpstream("evil.example".into()))
    );
    assert!(matches!(
        s.local_name(&name("quay.io/x/y"), None),
        Err(RouteError::UnknownUpstream(_))
    ));
}

#[test]
fn bad_upstream_lists_say_what_to_fix() {
    for (yaml, needle) in [
        (
            "proxy:\n  remoteurl: https://a.example\n  upstreams: [{host: b.example}]\n",
            "not both",
        ),
        (
            "proxy:\n  upstreams: [{host: a.example}, {host: a.example}]\n",
            "twice",
        ),
        (
            "proxy:\n  upstreams: [{host: a.example, urls: [ftp://a]}]\n",
            "https://",
        ),
        (
            "proxy:\n  upstreams: [{host: a.example, urls: [https://a/v2]}]\n",
            "without a path",
        ),
        (
            "proxy:\n  upstreams: [{host: a.example, default: true}, {host: b.example, default: true}]\n",
            "one of",
        ),
        ("proxy:\n  upstreams: []\n", "at least one"),
        (
            "proxy:\n  remoteurl: https://a.example\n  ttl: soon\n",
            "duration",
        ),
    ] {
        let e = settings(yaml).unwrap_err();
        assert!(e.contains(needle), "{yaml}: {e}");
    }
    // Without a default, a name without a host cannot be routed.
    let s = settings("proxy:\n  upstreams: [{host: a.example}, {host: b.example}]\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        s.local_name(&name("lib/x"), None),
        Err(RouteError::NoDefault)
    );
    assert!(settings("").unwrap().is_none());
}
