//! Docker's `daemon.json`: the values Dockyard wants in `registry-mirrors` (Docker Hub
//! mirrors only) and `insecure-registries`, merged into the user's file with every other
//! byte kept (see `jsonedit`), and taken out again exactly (in two steps for a key Dockyard
//! created: emptied, so that dockerd's reload drops the values, then removed). A value that was already there is
//! never added again and never removed: it is not Dockyard's. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::jsonedit;

/// The keys Dockyard may add values to.
pub(crate) const MIRRORS: &str = "registry-mirrors";
pub(crate) const INSECURE: &str = "insecure-registries";

/// What Dockyard put into `daemon.json` (kept in the agent's state file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerRecord {
    /// Values Dockyard added, by key.
    #[serde(default)]
    pub added: BTreeMap<String, BTreeSet<String>>,
    /// Keys Dockyard created (removed again when their array is empty).
    #[serde(default)]
    pub created_keys: BTreeSet<String>,
    /// Dockyard created the file (removed again when its object is empty).
    #[serde(default)]
    pub created_file: bool,
}

/// The outcome of [`merge_daemon_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonJsonEdit {
    /// The new text; None: the file should not exist (Dockyard created it and it is empty).
    pub text: Option<String>,
    pub record: DockerRecord,
    /// (key, value, why) for wanted values that could not be added.
    pub problems: Vec<(String, String, String)>,
    /// A value was added or removed (dockerd must reload); false when only an empty key
    /// Dockyard created was tidied away.
    pub values_changed: bool,
}

/// What dockerd's command line says about its registry settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DockerdFlags {
    /// daemon.json keys given as flags (key -> the flag).
    pub keys: BTreeMap<String, String>,
    /// `--config-file`, when given.
    pub config_file: Option<String>,
}

impl DockerdFlags {
    /// Reads `args` (dockerd's argv, without interpretation beyond these flags).
    pub(crate) fn parse(args: &[String]) -> DockerdFlags {
        let mut flags = DockerdFlags::default();
        let mut iter = args.iter().skip(1);
        while let Some(arg) = iter.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (arg.as_str(), None),
            };
            match name {
                "--registry-mirror" => {
                    flags.keys.insert(MIRRORS.into(), name.into());
                }
                "--insecure-registry" => {
                    flags.keys.insert(INSECURE.into(), name.into());
                }
                "--config-file" => {
                    flags.config_file = inline.or_else(|| iter.next().cloned());
                }
                _ => {}
            }
        }
        flags
    }
}

/// Two spellings of one value: `https://m:5000/` is `https://m:5000`.
fn same(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Merges `wanted` (key -> values) into `current` (the file's text, None when absent),
/// first taking out what `previous` says Dockyard added and no longer wants. Err (with a
/// sentence) when the text is not a JSON object: it is then never overwritten.
pub fn merge_daemon_json(
    current: Option<&str>,
    previous: &DockerRecord,
    wanted: &BTreeMap<String, BTreeSet<String>>,
) -> Result<DaemonJsonEdit, String> {
    let created_file = previous.created_file || current.is_none();
    let mut text = match current {
        Some(t) if !t.trim().is_empty() => {
            match serde_json::from_str::<serde_json::Value>(t) {
                Ok(serde_json::Value::Object(_)) => t.to_owned(),
                Ok(_) => return Err("daemon.json is not a JSON object; dockerd will not start with it: fix it (Dockyard does not overwrite it)".into()),
                Err(e) => return Err(format!("daemon.json is not valid JSON ({e}); dockerd will not start with it: fix it (Dockyard does not overwrite it)")),
            }
        }
        _ => "{}\n".to_owned(),
    };
    let mut record = DockerRecord {
        created_file,
        ..DockerRecord::default()
    };
    let mut problems = Vec::new();
    fn edit<T>(r: Result<T, String>) -> Result<T, String> {
        r.map_err(|e| format!("daemon.json could not be edited ({e}); Dockyard leaves it as it is"))
    }

    // Take out what is no longer wanted. dockerd's reload keeps its current value of a key
    // that is absent from the file, so a key Dockyard created is first left as an empty
    // list (the SIGHUP then clears it) and removed by a later merge.
    let mut emptied_now = BTreeSet::new();
    for (key, values) in &previous.added {
        let keep = wanted.get(key);
        for value in values {
            if keep.is_some_and(|k| k.iter().any(|w| same(w, value))) {
                continue;
            }
            if let Some((range, items)) = array_of(&text, key)
                && let Some(index) = items.iter().position(|v| same(v, value))
            {
                text = edit(jsonedit::remove_element(&text, range, index))?;
                emptied_now.insert(key.clone());
            }
        }
    }
    for key in &previous.created_keys {
        let wanted_here = wanted.get(key).is_some_and(|w| !w.is_empty());
        if let Some((_, items)) = array_of(&text, key) {
            if items.is_empty() && !wanted_here && !emptied_now.contains(key) {
                text = edit(jsonedit::remove_member(&text, key))?;
            } else {
                record.created_keys.insert(key.clone());
            }
        }
    }

    // Put in what is wanted and missing.
    for (key, values) in wanted {
        for value in values {
            let members = edit(jsonedit::members(&text))?.2;
            let item = serde_json::to_string(value).map_err(|e| e.to_string())?;
            match members.iter().find(|m| m.key == *key) {
                None => {
                    text = edit(jsonedit::push_member(&text, key, &format!("[{item}]")))?;
                    record.created_keys.insert(key.clone());
                    record.added.entry(key.clone()).or_default().insert(value.clone());
                }
                Some(m) => match array_of(&text, key) {
                    None => problems.push((key.clone(), value.clone(), format!(
                        "daemon.json's {key:?} is not a list of strings; Dockyard does not touch it: make it a list"
                    ))),
                    Some((_, items)) if items.iter().any(|v| same(v, value)) => {
                        let ours = previous.added.get(key).is_some_and(|p| p.iter().any(|v| same(v, value)));
                        if ours {
                            record.added.entry(key.clone()).or_default().insert(value.clone());
                        }
                    }
                    Some(_) => {
                        text = edit(jsonedit::push_element(&text, m.value.clone(), &item))?;
                        record.added.entry(key.clone()).or_default().insert(value.clone());
                    }
                },
            }
        }
    }
    let values_changed = !emptied_now.is_empty() || record.added != previous.added;
    let empty = edit(jsonedit::members(&text))?.2.is_empty();
    let text = if created_file && empty {
        None
    } else {
        Some(text)
    };
    Ok(DaemonJsonEdit {
        text,
        record,
        problems,
        values_changed,
    })
}

/// The array member `key` (its span) and its string values; None when absent or not an
/// array of strings.
fn array_of(text: &str, key: &str) -> Option<(std::ops::Range<usize>, Vec<String>)> {
    let (_, _, members) = jsonedit::members(text).ok()?;
    let m = members.into_iter().find(|m| m.key == key)?;
    let items = jsonedit::elements(text, m.value.clone()).ok()?;
    let values = items
        .iter()
        .map(|r| serde_json::from_str::<String>(&text[r.clone()]).ok())
        .collect::<Option<Vec<String>>>()?;
    Some((m.value, values))
}
