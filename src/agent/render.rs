//! `render`: from the entries and what discovery found to the files Dockyard wants on the
//! node and the values it wants in `daemon.json`, with a sentence per problem. Pure; the
//! per-runtime texts come from `containerd`, `crio` and `docker`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::discover::Discovered;
use super::docker::{INSECURE, MIRRORS};
use super::host::{self, BaseUrl};
use super::{Entry, Runtime, containerd, crio};

/// Permission bits of every file the agent writes.
pub(crate) const FILE_MODE: u32 = 0o644;

/// One file Dockyard wants on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Node path.
    pub path: PathBuf,
    pub content: String,
    pub mode: u32,
    /// The owners whose entries it carries.
    pub owners: BTreeSet<String>,
    /// The file it belongs with (a hosts.toml for its CA files; else itself): when any file
    /// of a unit conflicts with someone else's, the whole unit is left out.
    pub unit: PathBuf,
    pub runtime: Runtime,
}

/// What [`render`] wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub files: Vec<FileSpec>,
    /// daemon.json key -> value -> owners wanting it.
    pub daemon_json: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Owner -> problems (every owner in the entries has a key).
    pub problems: BTreeMap<String, Vec<String>>,
    pub node_problems: Vec<String>,
}

impl Rendered {
    fn problem(&mut self, owner: &str, text: String) {
        let list = self.problems.entry(owner.to_owned()).or_default();
        if !list.contains(&text) {
            list.push(text);
        }
    }

    fn add_file(
        &mut self,
        runtime: Runtime,
        path: PathBuf,
        content: String,
        owners: &[&str],
        unit: PathBuf,
    ) {
        if let Some(existing) = self.files.iter_mut().find(|f| f.path == path) {
            if existing.content == content {
                existing
                    .owners
                    .extend(owners.iter().map(|o| (*o).to_owned()));
            } else {
                for o in owners {
                    self.problem(o, format!("{} is wanted with different content by another entry; the first is written: make them agree", path.display()));
                }
            }
            return;
        }
        self.files.push(FileSpec {
            path,
            content,
            mode: FILE_MODE,
            owners: owners.iter().map(|o| (*o).to_owned()).collect(),
            unit,
            runtime,
        });
    }
}

/// An entry whose every field passed validation.
#[derive(Debug, Clone)]
pub(crate) struct Checked<'a> {
    pub entry: &'a Entry,
    pub upstream: BaseUrl,
    pub mirror: Option<BaseUrl>,
    /// Plain HTTP or unverified HTTPS to the mirror (or, without one, to the registry).
    pub insecure: bool,
    pub ca: Option<String>,
}

fn check(entry: &Entry) -> Result<Checked<'_>, String> {
    host::validate_host(&entry.host)?;
    let upstream = host::upstream_of(&entry.host, entry.server.as_deref())?;
    let mirror = entry
        .mirror
        .as_ref()
        .map(|m| host::parse_base_url("mirror url", &m.url))
        .transpose()?;
    let insecure = match (&mirror, &entry.mirror) {
        (Some(m), Some(e)) => !m.https || e.insecure,
        _ => !upstream.https,
    };
    let ca = entry
        .ca_pem
        .as_deref()
        .map(host::check_ca_pem)
        .transpose()?;
    Ok(Checked {
        entry,
        upstream,
        mirror,
        insecure,
        ca,
    })
}

/// The comment at the top of every file the agent writes where the format allows one.
pub(crate) fn marker(owners: &[&str]) -> String {
    format!(
        "# Managed by the Dockyard node agent for {}.\n# Dockyard rewrites or removes this file as those resources change; once edited by\n# anyone else, it is left alone (and reported).\n",
        owners.join(", ")
    )
}

/// The text of a CA file Dockyard writes: its marker (naming no owner, so entries sharing an
/// endpoint and its CA share the file), then the PEM.
fn ca_file(pem: &str) -> String {
    format!(
        "# Managed by the Dockyard node agent: the CA of a Dockyard registry or mirror.\n# Dockyard rewrites or removes this file; once edited by anyone else, it is left alone.\n{pem}"
    )
}

/// What Dockyard wants on a node with `discovered` runtimes for `entries`. Pure.
pub fn render(entries: &[Entry], discovered: &Discovered) -> Rendered {
    let mut out = Rendered {
        node_problems: discovered.problems.clone(),
        ..Rendered::default()
    };
    let mut checked = Vec::new();
    for entry in entries {
        out.problems.entry(entry.owner.clone()).or_default();
        match host::validate_owner(&entry.owner).and_then(|()| check(entry)) {
            Ok(c) => checked.push(c),
            Err(e) => out.problem(
                &entry.owner,
                format!("entry for {:?} left out: {e}", entry.host),
            ),
        }
    }
    checked.sort_by(|a, b| (&a.entry.host, &a.entry.owner).cmp(&(&b.entry.host, &b.entry.owner)));
    let wanting = |r: Runtime| {
        checked
            .iter()
            .filter(move |c| c.entry.runtimes.contains(&r))
            .collect::<Vec<_>>()
    };

    let containerd_wants = wanting(Runtime::Containerd);
    for target in &discovered.containerd {
        if containerd_wants.is_empty() {
            break;
        }
        let name = target.flavor.name();
        let config_path = match &target.config_path {
            Ok(p) => p,
            Err(why) => {
                out.node_problems.push(why.clone());
                for c in &containerd_wants {
                    out.problem(&c.entry.owner, format!("{name} on this node reads no hosts.toml, so {} is not mirrored there: see the node's problems", c.entry.host));
                }
                continue;
            }
        };
        let mut by_host: BTreeMap<&str, Vec<&Checked>> = BTreeMap::new();
        for c in &containerd_wants {
            by_host.entry(c.entry.host.as_str()).or_default().push(c);
        }
        for (host, list) in by_host {
            if let Some(file) = target.managed_hosts.get(host) {
                for c in &list {
                    out.problem(&c.entry.owner, format!("{name} manages {host} from {}, which takes precedence: add the mirror there or remove {host} from it", file.display()));
                }
                continue;
            }
            let dir = config_path.join(host);
            let (files, problems) = containerd::render_host(&dir, &list);
            for (owner, p) in problems {
                out.problem(&owner, p);
            }
            let owners: Vec<&str> = list.iter().map(|c| c.entry.owner.as_str()).collect();
            let unit = dir.join("hosts.toml");
            out.add_file(
                Runtime::Containerd,
                unit.clone(),
                files.hosts_toml,
                &owners,
                unit.clone(),
            );
            for (name, pem) in files.cas {
                out.add_file(
                    Runtime::Containerd,
                    dir.join(name),
                    ca_file(&pem),
                    &owners,
                    unit.clone(),
                );
            }
        }
    }

    let mut crio_wants = wanting(Runtime::Crio);
    if let (Some(target), false) = (&discovered.crio, crio_wants.is_empty()) {
        crio_wants.retain(|c| match crio::user_entry_for(&c.entry.host, &target.user_prefixes) {
            None => true,
            Some(file) => {
                let host = &c.entry.host;
                out.problem(&c.entry.owner, format!(
                    "{} already has a [[registry]] for {host}, which Dockyard's drop-in would replace: add the mirror to it yourself ([[registry.mirror]] location = \"<mirror host:port>/{host}\"), or remove that entry",
                    file.display()
                ));
                false
            }
        });
        let (text, problems) = crio::render_dropin(&crio_wants);
        for (owner, p) in problems {
            out.problem(&owner, p);
        }
        if !text.is_empty() {
            let owners: Vec<&str> = crio_wants.iter().map(|c| c.entry.owner.as_str()).collect();
            let path = target.dropin_dir.join(crio::DROPIN);
            out.add_file(Runtime::Crio, path.clone(), text, &owners, path);
        }
        for c in &crio_wants {
            cert_file(&mut out, Runtime::Crio, &target.certs_dir, c);
        }
    }

    let docker_wants = wanting(Runtime::Docker);
    if let (Some(target), false) = (&discovered.docker, docker_wants.is_empty()) {
        let mut values: Vec<(&str, String, &str)> = Vec::new();
        for c in &docker_wants {
            let owner = c.entry.owner.as_str();
            match &c.mirror {
                Some(_) if c.entry.host != "docker.io" => {
                    out.problem(owner, format!(
                        "Docker mirrors only Docker Hub (docker.io), so it pulls {} directly, not through the mirror: leave docker out of this mirror's runtimes",
                        c.entry.host
                    ));
                    continue;
                }
                Some(m) => {
                    values.push((MIRRORS, m.url(), owner));
                    if c.insecure {
                        values.push((INSECURE, m.authority.clone(), owner));
                    }
                    if !c.entry.fallback {
                        out.problem(owner, "Docker always falls back to Docker Hub when its mirrors fail; the no-fallback setting does not apply to it".to_owned());
                    }
                }
                None if c.insecure => values.push((INSECURE, c.entry.host.clone(), owner)),
                None => {}
            }
            cert_file(&mut out, Runtime::Docker, &target.certs_dir, c);
        }
        for (key, value, owner) in values {
            if let Some(flag) = target.flag_keys.get(key) {
                out.problem(owner, format!(
                    "dockerd runs with {flag}, and dockerd refuses a setting given both as a flag and in daemon.json, so Dockyard leaves {key} alone: add {flag}={value} to dockerd's flags yourself"
                ));
                continue;
            }
            let owners = out
                .daemon_json
                .entry(key.to_owned())
                .or_default()
                .entry(value)
                .or_default();
            owners.insert(owner.to_owned());
        }
    }

    for (owner, problems) in out.problems.iter_mut() {
        let mine: Vec<&Checked> = checked.iter().filter(|c| &c.entry.owner == owner).collect();
        let present = |r: &Runtime| match r {
            Runtime::Containerd => !discovered.containerd.is_empty(),
            Runtime::Crio => discovered.crio.is_some(),
            Runtime::Docker => discovered.docker.is_some(),
        };
        let asked: BTreeSet<Runtime> = mine
            .iter()
            .flat_map(|c| c.entry.runtimes.iter().copied())
            .collect();
        if !mine.is_empty() && !asked.iter().any(present) {
            let names: Vec<&str> = asked
                .iter()
                .map(|r| match r {
                    Runtime::Containerd => "containerd",
                    Runtime::Crio => "crio",
                    Runtime::Docker => "docker",
                })
                .collect();
            problems.push(format!("none of the runtimes it asks for ({}) is on this node: add this node's runtime to the resource's runtimes or deselect the node", names.join(", ")));
        }
    }
    out
}

/// The CA file of `c` under a `certs.d` directory (containers/image and Docker read every
/// `*.crt` there): `<certs_dir>/<mirror or registry host>/dockyard-ca.crt`.
fn cert_file(out: &mut Rendered, runtime: Runtime, certs_dir: &std::path::Path, c: &Checked) {
    let Some(pem) = &c.ca else { return };
    let authority = match &c.mirror {
        Some(m) if m.https && !c.insecure => &m.authority,
        Some(_) => return,
        None => &c.entry.host,
    };
    let path = certs_dir.join(authority).join("dockyard-ca.crt");
    let owner = [c.entry.owner.as_str()];
    out.add_file(runtime, path.clone(), ca_file(pem), &owner, path);
}
