//! Tests of config parsing and `REGISTRY_*` overrides.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const DISTRIBUTION_SAMPLE: &str = r#"
version: 0.1
log:
  level: debug
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /auth/htpasswd
health:
  storagedriver:
    enabled: true
"#;

#[test]
fn reads_distribution_config() {
    let l = Config::parse(DISTRIBUTION_SAMPLE, vec![]).unwrap();
    let c = &l.config;
    assert_eq!(
        c.storage_kind(Path::new("/default")).unwrap(),
        StorageKind::Filesystem("/var/lib/registry".into())
    );
    assert!(c.storage.delete.enabled);
    assert_eq!(c.listen_addr(), "0.0.0.0:5000");
    assert_eq!(c.log.level.as_deref(), Some("debug"));
    let h = c.auth.as_ref().and_then(|a| a.htpasswd.as_ref()).unwrap();
    assert_eq!(h.realm.as_deref(), Some("basic-realm"));
    assert!(
        l.warnings.iter().any(|w| w.contains("health")),
        "{:?}",
        l.warnings
    );
    assert!(
        l.warnings.iter().any(|w| w.contains("storage.cache")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn env_overrides_like_registry2() {
    let l = Config::parse(
        DISTRIBUTION_SAMPLE,
        env(&[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:5001"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", "/etc/htpasswd"),
            ("REGISTRY_HTTP_SECRET", "12345"),
            ("REGISTRY_VALIDATION_MANIFESTS_MAXSIZE", "1024"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    let c = l.config;
    assert_eq!(c.listen_addr(), "127.0.0.1:5001");
    assert_eq!(
        c.storage_kind(Path::new("/d")).unwrap(),
        StorageKind::Filesystem("/data".into())
    );
    assert!(!c.storage.delete.enabled);
    assert_eq!(
        c.auth
            .as_ref()
            .unwrap()
            .htpasswd
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap(),
        PathBuf::from("/etc/htpasswd")
    );
    assert_eq!(c.http.secret.as_deref(), Some("12345"));
    assert_eq!(c.max_manifest_size(), 1024);
}

#[test]
fn env_only_config_and_defaults() {
    let l = Config::parse("", vec![]).unwrap();
    assert_eq!(l.config.listen_addr(), "0.0.0.0:5000");
    assert_eq!(
        l.config.storage_kind(Path::new("/d")).unwrap(),
        StorageKind::Filesystem("/d".into())
    );
    assert_eq!(l.config.max_manifest_size(), 4 << 20);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);

    let l = Config::parse(
        "",
        env(&[
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("REGISTRY_HTTP_RELATIVEURLS", "true"),
        ]),
    )
    .unwrap();
    assert!(l.config.storage.delete.enabled);
    assert!(l.config.http.relativeurls);
}

#[test]
fn driver_selection_by_env() {
    let l = Config::parse(
        DISTRIBUTION_SAMPLE,
        env(&[("REGISTRY_STORAGE", "inmemory")]),
    )
    .unwrap();
    assert_eq!(
        l.config.storage_kind(Path::new("/d")).unwrap(),
        StorageKind::InMemory
    );
    assert!(l.config.storage.delete.enabled, "non-driver keys are kept");
    let l = Config::parse("storage:\n  inmemory:\n", vec![]).unwrap();
    assert_eq!(
        l.config.storage_kind(Path::new("/d")).unwrap(),
        StorageKind::InMemory
    );
}

#[test]
fn unknown_keys_warn_and_bad_values_fail_clearly() {
    let l = Config::parse("http:\n  addr: :5000\n  bogus: 1\nwhatever: 2\n", vec![]).unwrap();
    assert!(
        l.warnings.iter().any(|w| w.contains("http.bogus")),
        "{:?}",
        l.warnings
    );
    assert!(
        l.warnings.iter().any(|w| w.contains("whatever")),
        "{:?}",
        l.warnings
    );

    let e = Config::parse("storage:\n  delete:\n    enabled: maybe\n", vec![]).unwrap_err();
    assert!(e.to_string().contains("expected true or false"), "{e}");
    assert!(Config::parse("- a list", vec![]).is_err());
    assert!(Config::parse("storage: [", vec![]).is_err());
    let two = Config::parse(
        "storage:\n  inmemory:\n  filesystem:\n    rootdirectory: /x\n",
        vec![],
    )
    .unwrap();
    assert!(
        two.config
            .storage_kind(Path::new("/d"))
            .unwrap_err()
            .to_string()
            .contains("more than one")
    );
    let azure = Config::parse("storage:\n  azure:\n    accountname: x\n", vec![]).unwrap();
    assert!(
        azure
            .config
            .storage_kind(Path::new("/d"))
            .unwrap_err()
            .to_string()
            .contains("not supported")
    );
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration("5x"), None);
    assert_eq!(parse_go_duration("s"), None);
}

#[test]
fn maintenance_like_distribution() {
    let c = Config::parse("", vec![]).unwrap().config;
    let p = c
        .storage
        .maintenance
        .uploadpurging
        .resolve()
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.age, p.interval, p.dry_run),
        (
            Duration::from_secs(168 * 3600),
            Duration::from_secs(86400),
            false
        )
    );
    assert!(!c.storage.maintenance.readonly.enabled);
    let yaml = "storage:\n  maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: true\n";
    let c = Config::parse(yaml, vec![]).unwrap().config;
    assert_eq!(c.storage.maintenance.uploadpurging.resolve().unwrap(), None);
    assert!(c.storage.maintenance.readonly.enabled);
    let c = Config::parse(
        "",
        env(&[
            ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "2h"),
            ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL", "10m"),
        ]),
    )
    .unwrap()
    .config;
    let p = c
        .storage
        .maintenance
        .uploadpurging
        .resolve()
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.age, p.interval),
        (Duration::from_secs(7200), Duration::from_secs(600))
    );
    let c = Config::parse(
        "",
        env(&[("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "soon")]),
    )
    .unwrap()
    .config;
    assert!(c.storage.maintenance.uploadpurging.resolve().is_err());
}

#[test]
fn auth_extensions() {
    let yaml = r#"
auth:
  htpasswd:
    realm: r
    path: /etc/htpasswd
  anonymouspull: ["public/**"]
  access:
    - users: ["*"]
      repositories: ["**"]
      actions: [pull]
"#;
    let c = Config::parse(yaml, vec![]).unwrap().config;
    let auth = c.auth.unwrap();
    assert_eq!(auth.anonymouspull, ["public/**"]);
    assert_eq!(auth.access.unwrap()[0].actions, [crate::auth::Action::Pull]);
    let c = Config::parse(
        "",
        env(&[
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_ANONYMOUSPULL", "public/**, team/*"),
        ]),
    )
    .unwrap()
    .config;
    let auth = c.auth.unwrap();
    assert!(auth.htpasswd.is_some());
    assert_eq!(auth.anonymouspull, ["public/**", "team/*"]);
    let bad = "auth:\n  access:\n    - users: [a]\n      repositories: [x]\n      actions: [fly]\n";
    assert!(
        Config::parse(bad, vec![])
            .unwrap_err()
            .to_string()
            .contains("fly")
    );
}

#[test]
fn client_cas_from_the_environment() {
    for value in ["[/a.pem, /b.pem]", "/a.pem,/b.pem"] {
        let c = Config::parse("", env(&[("REGISTRY_HTTP_TLS_CLIENTCAS", value)]))
            .unwrap()
            .config;
        assert_eq!(
            c.http.tls.unwrap().clientcas,
            [PathBuf::from("/a.pem"), PathBuf::from("/b.pem")],
            "{value}"
        );
    }
    let c = Config::parse("http:\n  tls:\n    clientcas: [/c.pem]\n", vec![])
        .unwrap()
        .config;
    assert_eq!(c.http.tls.unwrap().clientcas, [PathBuf::from("/c.pem")]);
}

#[test]
fn connection_limits_from_file_and_env() {
    let defaults = Config::parse("", env(&[])).unwrap().config;
    let limits = defaults.connection_limits().unwrap();
    assert_eq!(limits, crate::server::Limits::default());
    assert_eq!(limits.timeouts.header, Duration::from_secs(30));
    let loaded = Config::parse(
        "http:\n  maxconnections: 500\n  timeouts:\n    readheader: 10s\n",
        env(&[("REGISTRY_HTTP_TIMEOUTS_IDLE", "90s")]),
    )
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let limits = loaded.config.connection_limits().unwrap();
    assert_eq!(limits.max_connections, 500);
    assert_eq!(limits.timeouts.header, Duration::from_secs(10));
    assert_eq!(limits.timeouts.idle, Duration::from_secs(90));
    let env_cap = Config::parse("", env(&[("REGISTRY_HTTP_MAXCONNECTIONS", "64")])).unwrap();
    assert_eq!(
        env_cap.config.connection_limits().unwrap().max_connections,
        64
    );
    for bad in [
        "http:\n  maxconnections: 0\n",
        "http:\n  timeouts:\n    idle: soon\n",
        "http:\n  timeouts:\n    readheader: 0s\n",
    ] {
        let e = Config::parse(bad, env(&[]))
            .unwrap()
            .config
            .connection_limits();
        assert!(e.is_err(), "{bad}");
    }
}
