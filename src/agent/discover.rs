//! Discovery (read-only IO): which container runtimes are on the node and where each reads
//! its registry configuration. containerd's `config_path` is read from its config file (and
//! the files its `imports` name) by [`containerd_config_path`], which is pure. k3s / rke2 are
//! found by their generated containerd config and their `registries.yaml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Layout;
use super::k3s;

/// What [`discover`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// Each containerd on the node: the plain one, k3s's, rke2's.
    pub containerd: Vec<ContainerdTarget>,
    pub crio: Option<CrioTarget>,
    pub docker: Option<DockerTarget>,
    /// Problems of the node, each saying how to fix it.
    pub problems: Vec<String>,
}

/// Which containerd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flavor {
    Containerd,
    K3s,
    Rke2,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Containerd => "containerd",
            Flavor::K3s => "k3s",
            Flavor::Rke2 => "rke2",
        }
    }
}

/// One containerd and where it reads `hosts.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdTarget {
    pub flavor: Flavor,
    /// Its config file (node path).
    pub config_file: PathBuf,
    /// The `config_path` directory (node path), or the sentence saying why hosts.toml files
    /// would not be read and what to change.
    pub config_path: Result<PathBuf, String>,
    /// Hosts that k3s / rke2 manage from `registries.yaml` (host -> that file): they win.
    pub managed_hosts: BTreeMap<String, PathBuf>,
}

/// containers/image (CRI-O) config locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrioTarget {
    pub dropin_dir: PathBuf,
    pub certs_dir: PathBuf,
    /// `[[registry]]` prefixes that `registries.conf` or another drop-in already configures
    /// (prefix -> file): Dockyard's drop-in would replace those entries, so it leaves them.
    pub user_prefixes: BTreeMap<String, PathBuf>,
}

/// The Docker engine's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTarget {
    pub daemon_json: PathBuf,
    /// Its text, None when the file does not exist.
    pub daemon_json_text: Option<String>,
    pub certs_dir: PathBuf,
    /// daemon.json keys the running dockerd has as flags (key -> flag), read from its
    /// command line: the same setting in the file would stop dockerd.
    pub flag_keys: BTreeMap<String, String>,
}

/// Looks at the node through `layout`.
pub fn discover(layout: &Layout) -> Discovered {
    let mut found = Discovered::default();
    let read = |p: &Path| std::fs::read_to_string(layout.on_host(p)).ok();
    let config = &layout.containerd_config;
    let config_text = read(config);
    if config_text.is_some() || layout.on_host(&layout.containerd_socket).exists() {
        let imports = |pattern: &str| expand_import(layout, config, pattern);
        let config_path = match &config_text {
            Some(text) => containerd_config_path(&config.display().to_string(), text, &imports),
            None => Err(format!(
                "containerd runs without a config file, so it reads no hosts.toml: write {} with `version = 2` and `[plugins.\"io.containerd.grpc.v1.cri\".registry] config_path = \"/etc/containerd/certs.d\"` (containerd 2.x: `version = 3`, `[plugins.\"io.containerd.cri.v1.images\".registry]`) and restart containerd once",
                config.display()
            )),
        };
        found.containerd.push(ContainerdTarget {
            flavor: Flavor::Containerd,
            config_file: config.clone(),
            config_path,
            managed_hosts: BTreeMap::new(),
        });
    }
    for flavor in [Flavor::K3s, Flavor::Rke2] {
        let name = flavor.name();
        let root = &layout.rancher_root;
        let config_file = root.join(format!(
            "var/lib/rancher/{name}/agent/etc/containerd/config.toml"
        ));
        let Some(text) = read(&config_file) else {
            continue;
        };
        let none = |_: &str| Vec::new();
        let config_path = containerd_config_path(&config_file.display().to_string(), &text, &none);
        let registries = root.join(format!("etc/rancher/{name}/registries.yaml"));
        let managed_hosts = match read(&registries) {
            None => BTreeMap::new(),
            Some(yaml) => match k3s::managed_hosts(&yaml) {
                Ok(hosts) => hosts.into_iter().map(|h| (h, registries.clone())).collect(),
                Err(e) => {
                    found.problems.push(format!(
                        "{} does not parse ({e}); {name} will not start with it either: fix it",
                        registries.display()
                    ));
                    BTreeMap::new()
                }
            },
        };
        found.containerd.push(ContainerdTarget {
            flavor,
            config_file,
            config_path,
            managed_hosts,
        });
    }
    let crio_home = layout.crio_dropin_dir.parent().unwrap_or(Path::new("/"));
    if layout.on_host(crio_home).is_dir() {
        let mut files = vec![crio_home.join("registries.conf")];
        if let Ok(entries) = std::fs::read_dir(layout.on_host(&layout.crio_dropin_dir)) {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".conf") && n != super::crio::DROPIN)
                .collect();
            names.sort();
            files.extend(names.into_iter().map(|n| layout.crio_dropin_dir.join(n)));
        }
        let mut user_prefixes = BTreeMap::new();
        for file in files {
            if let Some(text) = read(&file) {
                for prefix in super::crio::registry_prefixes(&text) {
                    user_prefixes.insert(prefix, file.clone());
                }
            }
        }
        found.crio = Some(CrioTarget {
            dropin_dir: layout.crio_dropin_dir.clone(),
            certs_dir: layout.crio_certs_dir.clone(),
            user_prefixes,
        });
    }
    // Docker counts as present when its config directory exists and dockerd runs (its socket
    // or pid file): a leftover /etc/docker on a containerd node is no Docker.
    let docker_home = layout.docker_daemon_json.parent().unwrap_or(Path::new("/"));
    let pid_file = layout.on_host(&layout.docker_pid_file).is_file();
    let dockerd_runs = pid_file || layout.on_host(&layout.docker_socket).exists();
    let command_line = dockerd_command_line(layout);
    if layout.on_host(docker_home).is_dir() && pid_file && command_line.is_none() {
        // Without its flags, a daemon.json key dockerd also has as a flag would keep it from
        // starting again: leave Docker alone.
        found.problems.push(
            "dockerd runs here, but the agent cannot read its command line (it needs the host PID namespace: set the chart's nodeAgent.reload=true), so Docker is not configured".to_owned(),
        );
    } else if layout.on_host(docker_home).is_dir() && dockerd_runs {
        let flags = command_line
            .map(|args| super::docker::DockerdFlags::parse(&args))
            .unwrap_or_default();
        if let Some(file) = &flags.config_file
            && Path::new(file) != layout.docker_daemon_json
        {
            found.problems.push(format!(
                "dockerd reads {file} (its --config-file), not {}: point the agent's daemon.json path at it",
                layout.docker_daemon_json.display()
            ));
        }
        found.docker = Some(DockerTarget {
            daemon_json: layout.docker_daemon_json.clone(),
            daemon_json_text: read(&layout.docker_daemon_json),
            certs_dir: layout.docker_certs_dir.clone(),
            flag_keys: flags.keys,
        });
    }
    found
}

/// The running dockerd's arguments: the pid in its pid file, its `/proc/<pid>/cmdline` (the
/// node's when the agent shares the host's pid namespace), if that process is a dockerd.
fn dockerd_command_line(layout: &Layout) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(layout.on_host(&layout.docker_pid_file)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    args.first()?.ends_with("dockerd").then_some(args)
}

/// The texts of the files an `imports` pattern names (relative patterns are relative to the
/// config's directory; `*` and `?` are matched in the last component only).
fn expand_import(layout: &Layout, config: &Path, pattern: &str) -> Vec<(String, String)> {
    let base = config.parent().unwrap_or(Path::new("/"));
    let full = base.join(pattern);
    let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = if name.contains(['*', '?']) {
        std::fs::read_dir(layout.on_host(dir))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| glob_match(name, n))
                    .map(|n| dir.join(n))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![full.clone()]
    };
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(layout.on_host(&f)).ok()?;
            Some((f.display().to_string(), text))
        })
        .collect()
}

fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// containerd's registry `config_path` from its config `text` (file `name`), and from the
/// files its `imports` name (`imports(pattern)` returns `(name, text)` pairs; an import's
/// value wins over the main file's, as containerd merges them). Err: why hosts.toml files
/// would not be read, and exactly what to put in the config. Pure.
pub fn containerd_config_path(
    name: &str,
    text: &str,
    imports: &dyn Fn(&str) -> Vec<(String, String)>,
) -> Result<PathBuf, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        format!(
            "{name} is not valid TOML ({}); containerd would not start with it: fix it",
            e.message()
        )
    })?;
    let version = table
        .get("version")
        .and_then(|v| v.as_integer())
        .unwrap_or(1);
    let (section, found) = config_path_in(&table, version);
    let mut found = found.map(|v| (name.to_owned(), v));
    if let Some(patterns) = table.get("imports").and_then(|v| v.as_array()) {
        for pattern in patterns.iter().filter_map(|p| p.as_str()) {
            for (import_name, import_text) in imports(pattern) {
                let Ok(imported) = toml::from_str::<toml::Table>(&import_text) else {
                    continue;
                };
                let v = imported
                    .get("version")
                    .and_then(|v| v.as_integer())
                    .unwrap_or(version);
                if let (_, Some(value)) = config_path_in(&imported, v) {
                    found = Some((import_name, value));
                }
            }
        }
    }
    let advice = format!(
        "set `config_path = \"/etc/containerd/certs.d\"` under `[{section}]` in {name} and restart containerd once (Dockyard never edits containerd's config)"
    );
    match found {
        None => Err(format!(
            "containerd's {name} sets no registry config_path, so containerd ignores hosts.toml files: {advice}"
        )),
        Some((file, value)) => match value {
            Err(()) => Err(format!("config_path in {file} is not a string: {advice}")),
            Ok(path) if path.trim().is_empty() => Err(format!(
                "config_path in {file} is empty, so containerd ignores hosts.toml files: {advice}"
            )),
            Ok(path) if path.contains(':') => Err(format!(
                "config_path {path:?} in {file} lists several directories; containerd does not read them all reliably (containerd#12415) and Dockyard would not know which one wins: {advice}"
            )),
            Ok(path) if !path.starts_with('/') => Err(format!(
                "config_path {path:?} in {file} is relative: {advice}"
            )),
            Ok(path) => Ok(PathBuf::from(path)),
        },
    }
}

/// The registry section for a config `version`, and its `config_path` if set (Err when it is
/// not a string). Version 1 configs may use the short plugin name `cri`.
fn config_path_in(table: &toml::Table, version: i64) -> (&'static str, Option<Result<String, ()>>) {
    let plugins = table.get("plugins").and_then(|p| p.as_table());
    let lookup = |plugin: &str| {
        let value = plugins?
            .get(plugin)?
            .as_table()?
            .get("registry")?
            .as_table()?
            .get("config_path")?;
        Some(value.as_str().map(str::to_owned).ok_or(()))
    };
    match version {
        v if v >= 3 => (
            "plugins.\"io.containerd.cri.v1.images\".registry",
            lookup("io.containerd.cri.v1.images"),
        ),
        2 => (
            "plugins.\"io.containerd.grpc.v1.cri\".registry",
            lookup("io.containerd.grpc.v1.cri"),
        ),
        _ => (
            "plugins.\"io.containerd.grpc.v1.cri\".registry",
            lookup("cri").or_else(|| lookup("io.containerd.grpc.v1.cri")),
        ),
    }
}
