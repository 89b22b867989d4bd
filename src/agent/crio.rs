//! CRI-O (containers/image, also podman, skopeo, buildah): one drop-in,
//! `<registries.conf.d>/50-dockyard.conf`, holding every owner's `[[registry]]` with its
//! `[[registry.mirror]]`s. Dockyard's mirror routes a `/v2/<upstream-host>/...` path prefix to
//! that upstream (a port's `:` spelled `_`), so a mirror location is `<mirror>/<host>`.
//! containers/image reads drop-ins after `registries.conf`, and a `[[registry]]` with the
//! same prefix replaces the earlier one. Pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::host::toml_string;
use super::render::{Checked, marker};

/// The drop-in's file name: after most distributions' own drop-ins (`00-`/`01-`), before
/// the user's usual `99-` overrides.
pub(crate) const DROPIN: &str = "50-dockyard.conf";

/// The repository-path prefix Dockyard's mirror routes to `host`: `host` with `:` as `_`.
/// None when the mirror could not tell it from a repository name (it needs a `.` or to be
/// `localhost`, and no brackets).
pub(crate) fn mirror_prefix(host: &str) -> Option<String> {
    let segment = host.replace(':', "_");
    let looks_like_host = segment.contains('.') || segment == "localhost";
    (looks_like_host && !segment.contains(['[', ']'])).then_some(segment)
}

/// The `[[registry]]` prefixes (or locations, when there is no prefix) a registries.conf
/// text configures; nothing when it does not parse (containers/image would refuse it too).
pub(crate) fn registry_prefixes(text: &str) -> Vec<String> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let Some(registries) = table.get("registry").and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    registries
        .iter()
        .filter_map(|r| {
            let r = r.as_table()?;
            r.get("prefix")
                .or_else(|| r.get("location"))?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The file among `user_prefixes` (prefix -> file) that configures `host` or a repository
/// under it: containers/image would use that entry, or Dockyard's would replace it.
pub(crate) fn user_entry_for<'a>(
    host: &str,
    user_prefixes: &'a BTreeMap<String, std::path::PathBuf>,
) -> Option<&'a std::path::PathBuf> {
    user_prefixes
        .iter()
        .find(|(prefix, _)| {
            *prefix == host
                || prefix
                    .strip_prefix(host)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .map(|(_, file)| file)
}

/// The drop-in for `entries` (sorted by host, then owner); the second value lists
/// (owner, problem). An empty text means no drop-in is wanted.
pub(crate) fn render_dropin(entries: &[&Checked]) -> (String, Vec<(String, String)>) {
    let mut problems = Vec::new();
    let mut by_host: BTreeMap<&str, Vec<&Checked>> = BTreeMap::new();
    for c in entries {
        by_host.entry(c.entry.host.as_str()).or_default().push(c);
    }
    let mut body = String::new();
    let mut owners: Vec<&str> = Vec::new();
    for (host, list) in by_host {
        let mut mirrors = String::new();
        let mut location = host.to_owned();
        let mut insecure = false;
        let mut wanted = false;
        for c in &list {
            match &c.mirror {
                Some(m) => {
                    let Some(prefix) = mirror_prefix(host) else {
                        problems.push((c.entry.owner.clone(), format!(
                            "CRI-O cannot pull {host} through the mirror: the mirror tells upstreams apart by a /{host}/ path prefix, which {host} cannot be; use the registry's DNS name"
                        )));
                        continue;
                    };
                    let path = format!("{}/{prefix}", m.authority);
                    if !c.entry.fallback && location == host {
                        location = path;
                        insecure |= !m.https || c.insecure;
                    } else {
                        let _ = write!(
                            mirrors,
                            "\n[[registry.mirror]]\nlocation = {}\n",
                            toml_string(&path)
                        );
                        if !m.https || c.insecure {
                            mirrors.push_str("insecure = true\n");
                        }
                    }
                    wanted = true;
                }
                None if !c.upstream.https => {
                    insecure = true;
                    wanted = true;
                }
                None => {}
            }
            owners.push(&c.entry.owner);
        }
        if !wanted {
            continue;
        }
        let _ = write!(
            body,
            "\n[[registry]]\nprefix = {}\nlocation = {}\n",
            toml_string(host),
            toml_string(&location)
        );
        if insecure {
            body.push_str("insecure = true\n");
        }
        body.push_str(&mirrors);
    }
    if body.is_empty() {
        return (String::new(), problems);
    }
    owners.sort_unstable();
    owners.dedup();
    (format!("{}{body}", marker(&owners)), problems)
}
