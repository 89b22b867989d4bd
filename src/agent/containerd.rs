//! containerd's `hosts.toml` for one registry host (also k3s / rke2's containerd): the
//! upstream as `server` (the fallback), each Dockyard mirror as a `[host."<url>"]` tried first,
//! the CA files they name. Pure: checked entries in, file texts out.
//!
//! Facts this relies on (containerd 1.6.20, tested in tests/node_agent.rs): hosts.toml is read
//! again on every pull; unknown keys are ignored, so `dial_timeout` (honoured from 1.7) is
//! written for newer containerd but 1.6 dials a silent mirror for its default 30 s before
//! falling back (a refused connection falls back at once); requests to a mirror carry
//! `?ns=<host>`, which Dockyard's mirror routes by; a top-level `ca` applies to `server`; a
//! file without a `[host]` table does not decode ("invalid `host` tree") and is ignored.

use std::fmt::Write as _;
use std::path::Path;

use super::host::{file_safe, toml_string};
use super::render::{Checked, marker};

/// How long containerd (1.7+) waits for a mirror's TCP connection before the next host.
pub(crate) const DIAL_TIMEOUT: &str = "3s";

/// The files of one host directory: `hosts.toml` and CA files (name, PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostDir {
    pub hosts_toml: String,
    pub cas: Vec<(String, String)>,
}

/// Renders `<dir>/hosts.toml` (dir = `<config_path>/<host>`, a node path) for `entries`, all
/// for the same host and sorted by owner. The second value lists (owner, problem).
pub(crate) fn render_host(dir: &Path, entries: &[&Checked]) -> (HostDir, Vec<(String, String)>) {
    let mut problems = Vec::new();
    let owners: Vec<&str> = entries.iter().map(|c| c.entry.owner.as_str()).collect();
    let mut cas: Vec<(String, String)> = Vec::new();
    let mut add_ca = |name: String,
                      pem: &str,
                      owner: &str,
                      problems: &mut Vec<(String, String)>| {
        let path = dir.join(&name).display().to_string();
        match cas.iter().find(|(n, _)| *n == name) {
            Some((_, existing)) if existing != pem => problems.push((
                owner.to_owned(),
                format!("another resource gives a different CA for the same endpoint ({name}); the first one (by owner name) is used: make them agree"),
            )),
            Some(_) => {}
            None => cas.push((name, pem.to_owned())),
        }
        path
    };

    // The server: the first entry's upstream, or the mirror of the first entry that wants
    // no fallback.
    let no_fallback = entries
        .iter()
        .find(|c| !c.entry.fallback && c.mirror.is_some());
    // `top`: the settings of `server`, unindented.
    let mut top = String::new();
    let mut mirrors = String::new();
    let server = match no_fallback {
        Some(c) => {
            let (url, tls) = endpoint_settings(c, &mut add_ca, &mut problems);
            let _ = writeln!(top, "capabilities = [\"pull\", \"resolve\"]");
            top.push_str(&tls.replace("  ", ""));
            url
        }
        None => entries
            .first()
            .map(|c| c.upstream.url())
            .unwrap_or_default(),
    };
    let mut trust_written = false;
    for c in entries {
        if let Some(first) = entries.first()
            && c.upstream != first.upstream
        {
            problems.push((
                c.entry.owner.clone(),
                format!(
                    "{} names upstream {} but {} already names {}; containerd keeps one server per host: make them agree",
                    c.entry.owner, c.upstream.url(), first.entry.owner, first.upstream.url()
                ),
            ));
        }
        match &c.mirror {
            Some(_) if no_fallback.is_some_and(|n| std::ptr::eq(*n, *c)) => {}
            Some(_) => {
                if !c.entry.fallback {
                    problems.push((c.entry.owner.clone(), format!(
                        "{} asks for no fallback, but {} already is the only source of {}; {}'s mirror is tried before it",
                        c.entry.owner, no_fallback.map(|n| n.entry.owner.as_str()).unwrap_or(""), c.entry.host, c.entry.owner
                    )));
                }
                let (url, tls) = endpoint_settings(c, &mut add_ca, &mut problems);
                let _ = writeln!(mirrors, "\n[host.{}]", toml_string(&url));
                let _ = writeln!(mirrors, "  capabilities = [\"pull\", \"resolve\"]");
                mirrors.push_str(&tls);
                let _ = writeln!(mirrors, "  dial_timeout = {}", toml_string(DIAL_TIMEOUT));
            }
            None => {
                // A registry's own CA: top-level settings apply to `server`.
                if no_fallback.is_some() {
                    problems.push((c.entry.owner.clone(), format!(
                        "{}'s CA for {} is not written for containerd: another resource made its mirror the only source of that host",
                        c.entry.owner, c.entry.host
                    )));
                    continue;
                }
                if trust_written {
                    continue;
                }
                if let Some(pem) = &c.ca {
                    let path = add_ca(
                        format!("dockyard-{}.crt", file_safe(&c.entry.host)),
                        pem,
                        &c.entry.owner,
                        &mut problems,
                    );
                    let _ = writeln!(top, "ca = {}", toml_string(&path));
                    trust_written = true;
                }
            }
        }
    }
    if mirrors.is_empty() {
        // containerd 1.6 refuses a hosts.toml without a `[host]` table ("invalid `host`
        // tree") and then ignores the file: the server is repeated as one, with its settings.
        let _ = writeln!(mirrors, "\n[host.{}]", toml_string(&server));
        if !top.starts_with("capabilities") {
            let _ = writeln!(mirrors, "  capabilities = [\"pull\", \"resolve\"]");
        }
        for line in top.lines() {
            let _ = writeln!(mirrors, "  {line}");
        }
    }
    let hosts_toml = format!(
        "{}server = {}\n{top}{mirrors}",
        marker(&owners),
        toml_string(&server)
    );
    (HostDir { hosts_toml, cas }, problems)
}

/// A mirror's URL and its TLS lines (`ca` or `skip_verify`), indented for a `[host]` table.
fn endpoint_settings(
    c: &Checked,
    add_ca: &mut impl FnMut(String, &str, &str, &mut Vec<(String, String)>) -> String,
    problems: &mut Vec<(String, String)>,
) -> (String, String) {
    let Some(mirror) = &c.mirror else {
        return (String::new(), String::new());
    };
    let mut tls = String::new();
    if mirror.https {
        if c.insecure {
            tls.push_str("  skip_verify = true\n");
        } else if let Some(pem) = &c.ca {
            let name = format!("dockyard-{}.crt", file_safe(&mirror.authority));
            let path = add_ca(name, pem, &c.entry.owner, problems);
            let _ = writeln!(tls, "  ca = {}", toml_string(&path));
        }
    }
    (mirror.url(), tls)
}
