//! Each renderer against whole expected files.

use std::path::Path;

use super::*;
use crate::agent::render;

fn file<'a>(r: &'a crate::agent::Rendered, path: &str) -> &'a str {
    r.files
        .iter()
        .find(|f| f.path == Path::new(path))
        .map(|f| f.content.as_str())
        .unwrap_or_else(|| {
            panic!(
                "{path} not rendered; files: {:?}",
                r.files.iter().map(|f| &f.path).collect::<Vec<_>>()
            )
        })
}

#[test]
fn a_docker_hub_mirror_over_https_renders_every_runtime_completely() {
    let entries = [mirror(
        "RegistryMirror/ns/hub",
        "docker.io",
        "https://10.96.0.50:5000",
        true,
    )];
    let r = render(&entries, &node(Some("{\n  \"debug\": true\n}\n")));
    assert_eq!(r.problems["RegistryMirror/ns/hub"], Vec::<String>::new());
    assert_eq!(
        file(&r, "/etc/containerd/certs.d/docker.io/hosts.toml"),
        format!(
            "{MARK_HUB}server = \"https://registry-1.docker.io\"\n\n[host.\"https://10.96.0.50:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"/etc/containerd/certs.d/docker.io/dockyard-10.96.0.50_5000.crt\"\n  dial_timeout = \"3s\"\n"
        )
    );
    assert_eq!(
        file(
            &r,
            "/etc/containerd/certs.d/docker.io/dockyard-10.96.0.50_5000.crt"
        ),
        CA_FILE
    );
    assert_eq!(
        file(&r, "/etc/containers/registries.conf.d/50-dockyard.conf"),
        format!(
            "{MARK_HUB}\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"10.96.0.50:5000/docker.io\"\n"
        )
    );
    assert_eq!(
        file(
            &r,
            "/etc/containers/certs.d/10.96.0.50:5000/dockyard-ca.crt"
        ),
        CA_FILE
    );
    assert_eq!(
        file(&r, "/etc/docker/certs.d/10.96.0.50:5000/dockyard-ca.crt"),
        CA_FILE
    );
    assert_eq!(r.files.len(), 5);
    let mirrors: Vec<&String> = r.daemon_json["registry-mirrors"].keys().collect();
    assert_eq!(mirrors, ["https://10.96.0.50:5000"]);
    assert!(!r.daemon_json.contains_key("insecure-registries"));
}

#[test]
fn a_plain_http_mirror_for_a_host_with_a_port() {
    let mut e = mirror(
        "RegistryMirror/ns/up",
        "upstream.test:5000",
        "http://127.0.0.1:5001",
        false,
    );
    e.server = Some("http://127.0.0.1:1".into());
    let r = render(&[e], &node(None));
    let mark = MARK_HUB.replace("RegistryMirror/ns/hub", "RegistryMirror/ns/up");
    assert_eq!(
        file(&r, "/etc/containerd/certs.d/upstream.test:5000/hosts.toml"),
        format!(
            "{mark}server = \"http://127.0.0.1:1\"\n\n[host.\"http://127.0.0.1:5001\"]\n  capabilities = [\"pull\", \"resolve\"]\n  dial_timeout = \"3s\"\n"
        )
    );
    assert_eq!(
        file(&r, "/etc/containers/registries.conf.d/50-dockyard.conf"),
        format!(
            "{mark}\n[[registry]]\nprefix = \"upstream.test:5000\"\nlocation = \"upstream.test:5000\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:5001/upstream.test_5000\"\ninsecure = true\n"
        )
    );
    // Docker mirrors Docker Hub only: nothing for it, and the owner is told.
    assert!(r.daemon_json.is_empty());
    assert_eq!(r.files.len(), 2);
    assert!(
        r.problems["RegistryMirror/ns/up"][0].contains("Docker mirrors only Docker Hub"),
        "{:?}",
        r.problems
    );
}

#[test]
fn insecure_https_no_fallback_and_two_owners_on_one_host() {
    let mut a = mirror(
        "RegistryMirror/ns/a",
        "ghcr.io",
        "https://10.0.0.1:5000",
        false,
    );
    a.mirror.as_mut().unwrap().insecure = true;
    a.runtimes = [Runtime::Containerd, Runtime::Crio].into();
    let mut b = mirror(
        "RegistryMirror/ns/b",
        "ghcr.io",
        "https://10.0.0.2:5000",
        true,
    );
    b.fallback = false;
    b.runtimes = [Runtime::Containerd, Runtime::Crio].into();
    let r = render(&[b, a], &node(None));
    let mark = MARK_HUB.replace(
        "RegistryMirror/ns/hub",
        "RegistryMirror/ns/a, RegistryMirror/ns/b",
    );
    assert_eq!(
        file(&r, "/etc/containerd/certs.d/ghcr.io/hosts.toml"),
        format!(
            "{mark}server = \"https://10.0.0.2:5000\"\ncapabilities = [\"pull\", \"resolve\"]\nca = \"/etc/containerd/certs.d/ghcr.io/dockyard-10.0.0.2_5000.crt\"\n\n[host.\"https://10.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n  dial_timeout = \"3s\"\n"
        )
    );
    assert_eq!(
        file(&r, "/etc/containers/registries.conf.d/50-dockyard.conf"),
        format!(
            "{mark}\n[[registry]]\nprefix = \"ghcr.io\"\nlocation = \"10.0.0.2:5000/ghcr.io\"\n\n[[registry.mirror]]\nlocation = \"10.0.0.1:5000/ghcr.io\"\ninsecure = true\n"
        )
    );
    assert!(r.problems.values().all(Vec::is_empty), "{:?}", r.problems);
}

#[test]
fn a_private_registry_trust_entry_is_a_server_with_its_ca() {
    let e = Entry {
        owner: "Registry/team/reg".into(),
        host: "10.96.0.12:5000".into(),
        server: None,
        mirror: None,
        ca_pem: Some(PEM.into()),
        runtimes: all_runtimes(),
        fallback: true,
    };
    let r = render(&[e], &node(Some("{}")));
    let mark = MARK_HUB.replace("RegistryMirror/ns/hub", "Registry/team/reg");
    assert_eq!(
        file(&r, "/etc/containerd/certs.d/10.96.0.12:5000/hosts.toml"),
        format!(
            "{mark}server = \"https://10.96.0.12:5000\"\nca = \"/etc/containerd/certs.d/10.96.0.12:5000/dockyard-10.96.0.12_5000.crt\"\n\n[host.\"https://10.96.0.12:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"/etc/containerd/certs.d/10.96.0.12:5000/dockyard-10.96.0.12_5000.crt\"\n"
        )
    );
    assert_eq!(
        file(
            &r,
            "/etc/containers/certs.d/10.96.0.12:5000/dockyard-ca.crt"
        ),
        CA_FILE
    );
    assert_eq!(
        file(&r, "/etc/docker/certs.d/10.96.0.12:5000/dockyard-ca.crt"),
        CA_FILE
    );
    // A verified HTTPS registry needs no registries.conf entry and no daemon.json value.
    assert!(
        r.files
            .iter()
            .all(|f| !f.path.starts_with("/etc/containers/registries.conf.d"))
    );
    assert!(r.daemon_json.is_empty());
    assert!(r.problems["Registry/team/reg"].is_empty());

    // Plain HTTP: insecure everywhere it must be said.
    let e = Entry {
        owner: "Registry/team/plain".into(),
        host: "10.96.0.13:5000".into(),
        server: Some("http://10.96.0.13:5000".into()),
        mirror: None,
        ca_pem: None,
        runtimes: all_runtimes(),
        fallback: true,
    };
    let r = render(&[e], &node(Some("{}")));
    let mark = MARK_HUB.replace("RegistryMirror/ns/hub", "Registry/team/plain");
    assert_eq!(
        file(&r, "/etc/containerd/certs.d/10.96.0.13:5000/hosts.toml"),
        format!(
            "{mark}server = \"http://10.96.0.13:5000\"\n\n[host.\"http://10.96.0.13:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        )
    );
    assert_eq!(
        file(&r, "/etc/containers/registries.conf.d/50-dockyard.conf"),
        format!(
            "{mark}\n[[registry]]\nprefix = \"10.96.0.13:5000\"\nlocation = \"10.96.0.13:5000\"\ninsecure = true\n"
        )
    );
    let insecure: Vec<&String> = r.daemon_json["insecure-registries"].keys().collect();
    assert_eq!(insecure, ["10.96.0.13:5000"]);
}

#[test]
fn k3s_gets_drop_ins_except_for_hosts_its_registries_yaml_manages() {
    let mut d = node(None);
    d.crio = None;
    d.docker = None;
    d.containerd = vec![ContainerdTarget {
        flavor: Flavor::K3s,
        config_file: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml".into(),
        config_path: Ok("/var/lib/rancher/k3s/agent/etc/containerd/certs.d".into()),
        managed_hosts: [(
            "docker.io".to_owned(),
            PathBuf::from("/etc/rancher/k3s/registries.yaml"),
        )]
        .into(),
    }];
    let entries = [
        mirror(
            "RegistryMirror/ns/hub",
            "docker.io",
            "http://10.96.0.50:5000",
            false,
        ),
        mirror(
            "RegistryMirror/ns/q",
            "quay.io",
            "http://10.96.0.50:5000",
            false,
        ),
    ];
    let r = render(&entries, &d);
    let mark = MARK_HUB.replace("RegistryMirror/ns/hub", "RegistryMirror/ns/q");
    let paths: Vec<&Path> = r.files.iter().map(|f| f.path.as_path()).collect();
    assert_eq!(
        paths,
        [Path::new(
            "/var/lib/rancher/k3s/agent/etc/containerd/certs.d/quay.io/hosts.toml"
        )]
    );
    assert_eq!(
        r.files[0].content,
        format!(
            "{mark}server = \"https://quay.io\"\n\n[host.\"http://10.96.0.50:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  dial_timeout = \"3s\"\n"
        )
    );
    assert_eq!(
        r.problems["RegistryMirror/ns/hub"],
        [
            "k3s manages docker.io from /etc/rancher/k3s/registries.yaml, which takes precedence: add the mirror there or remove docker.io from it"
        ]
    );
    assert!(r.problems["RegistryMirror/ns/q"].is_empty());
}

#[test]
fn hostile_input_is_refused_before_any_path_or_text_is_built() {
    let hostile = [
        ("../../etc", "https://10.0.0.1:5000"),
        ("docker.io/../../x", "https://10.0.0.1:5000"),
        ("a b", "https://10.0.0.1:5000"),
        ("evil\"]\n[host.\"x", "https://10.0.0.1:5000"),
        ("ok.example", "https://10.0.0.1:5000/\"\nserver = \"x"),
        ("ok.example", "https://10.0.0.1:5000/../../"),
        ("x\ny.example", "http://10.0.0.1"),
    ];
    for (host, url) in hostile {
        let r = render(
            &[mirror("RegistryMirror/ns/evil", host, url, false)],
            &node(Some("{}")),
        );
        assert!(
            r.files.is_empty(),
            "{host:?} {url:?} rendered {:?}",
            r.files
        );
        assert!(r.daemon_json.is_empty());
        let problems = &r.problems["RegistryMirror/ns/evil"];
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("entry for "), "{problems:?}");
    }
    let mut e = mirror(
        "RegistryMirror/ns/ok",
        "ok.example",
        "https://10.0.0.1:5000",
        false,
    );
    e.ca_pem = Some(
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n\"\nserver = \"evil\""
            .into(),
    );
    assert!(render(&[e.clone()], &node(None)).files.is_empty());
    e.ca_pem = None;
    e.owner = "RegistryMirror/ns/x\nserver = \"evil\"".into();
    assert!(render(&[e], &node(None)).files.is_empty());
}

#[test]
fn containerd_without_config_path_gets_nothing_and_the_node_is_reported() {
    let mut d = node(None);
    d.containerd[0].config_path = Err("set config_path".into());
    let r = render(
        &[mirror(
            "RegistryMirror/ns/hub",
            "docker.io",
            "https://10.96.0.50:5000",
            false,
        )],
        &d,
    );
    assert!(r.files.iter().all(|f| f.runtime != Runtime::Containerd));
    assert_eq!(r.node_problems, ["set config_path"]);
    assert!(
        r.problems["RegistryMirror/ns/hub"][0]
            .starts_with("containerd on this node reads no hosts.toml")
    );
}

#[test]
fn an_owner_whose_runtimes_are_all_absent_is_told() {
    let mut e = mirror(
        "RegistryMirror/ns/hub",
        "docker.io",
        "https://10.96.0.50:5000",
        false,
    );
    e.runtimes = [Runtime::Crio].into();
    let mut d = node(None);
    d.crio = None;
    let r = render(&[e], &d);
    assert!(r.files.is_empty());
    assert!(
        r.problems["RegistryMirror/ns/hub"][0]
            .starts_with("none of the runtimes it asks for (crio)")
    );
}

#[test]
fn a_host_the_users_registries_conf_configures_is_left_to_it_and_reported() {
    let mut d = node(None);
    let prefixes = crate::agent::crio::registry_prefixes(
        "unqualified-search-registries = [\"docker.io\"]\n[[registry]]\nprefix = \"quay.io/team\"\nlocation = \"q.example/team\"\n[[registry]]\nlocation = \"ghcr.io\"\n",
    );
    assert_eq!(prefixes, ["quay.io/team", "ghcr.io"]);
    d.crio.as_mut().unwrap().user_prefixes = prefixes
        .into_iter()
        .map(|p| (p, PathBuf::from("/etc/containers/registries.conf")))
        .collect();
    let only_crio = |mut e: Entry| {
        e.runtimes = [Runtime::Crio].into();
        e
    };
    let entries = [
        only_crio(mirror(
            "RegistryMirror/ns/q",
            "quay.io",
            "http://10.0.0.1:5000",
            false,
        )),
        only_crio(mirror(
            "RegistryMirror/ns/g",
            "ghcr.io",
            "http://10.0.0.1:5000",
            false,
        )),
        only_crio(mirror(
            "RegistryMirror/ns/hub",
            "docker.io",
            "http://10.0.0.1:5000",
            false,
        )),
    ];
    let r = render(&entries, &d);
    assert_eq!(
        file(&r, "/etc/containers/registries.conf.d/50-dockyard.conf"),
        format!(
            "{MARK_HUB}\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"10.0.0.1:5000/docker.io\"\ninsecure = true\n"
        )
    );
    for owner in ["RegistryMirror/ns/q", "RegistryMirror/ns/g"] {
        assert_eq!(r.problems[owner].len(), 1);
        assert!(
            r.problems[owner][0]
                .starts_with("/etc/containers/registries.conf already has a [[registry]] for"),
            "{:?}",
            r.problems
        );
    }
    assert!(r.problems["RegistryMirror/ns/hub"].is_empty());
}
