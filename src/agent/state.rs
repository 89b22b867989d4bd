//! The agent's ownership record, `<state_dir>/state.json`: every file it wrote (node path,
//! SHA-256 of what it wrote), every directory it created, and what it added to
//! `daemon.json`. Written atomically after each sync that changed something.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Layout;
use super::docker::DockerRecord;
use crate::fsutil::{AtomicOptions, write_atomic_with};

const FILE: &str = "state.json";
const VERSION: u32 = 1;

/// The temp-file prefix of every atomic write the agent makes; a leftover of a killed
/// write is removed by the next sync.
pub(crate) const TEMP_PREFIX: &str = ".dockyard-agent-tmp-";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    pub version: u32,
    #[serde(default)]
    pub files: BTreeMap<PathBuf, FileRecord>,
    #[serde(default)]
    pub dirs: BTreeSet<PathBuf>,
    #[serde(default)]
    pub docker: DockerRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileRecord {
    /// SHA-256 (hex) of the content the agent wrote.
    pub sha256: String,
    pub owners: BTreeSet<String>,
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The record, empty when there is none yet. Err (a sentence) when it exists but cannot be
/// read: the agent then changes nothing, as it cannot tell its files from anyone else's.
pub(crate) fn load(layout: &Layout) -> Result<State, String> {
    let path = layout.on_host(&layout.state_dir.join(FILE));
    match std::fs::read(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State {
            version: VERSION,
            ..State::default()
        }),
        Err(e) => Err(format!("cannot read Dockyard's ownership record {}: {e}", path.display())),
        Ok(bytes) => serde_json::from_slice::<State>(&bytes)
            .ok()
            .filter(|s| s.version == VERSION)
            .ok_or_else(|| format!(
                "Dockyard's ownership record {} is damaged, so the agent changes nothing on this node: restore it, or remove it and the files marked \"Managed by the Dockyard node agent\"",
                path.display()
            )),
    }
}

pub(crate) fn save(layout: &Layout, state: &State) -> io::Result<()> {
    let dir = layout.on_host(&layout.state_dir);
    let text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    let options = AtomicOptions {
        temp_prefix: TEMP_PREFIX,
        mode: Some(0o600),
    };
    write_atomic_with(&dir, &dir.join(FILE), &text, options)
}
