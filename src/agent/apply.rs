//! `sync`: the IO shell around discovery and rendering. Writes what changed atomically,
//! removes exactly what no owner wants any more, merges `daemon.json`, signals dockerd and
//! CRI-O when asked, keeps the ownership record and reports. Not to be run concurrently with
//! itself on one node (the node agent runs one sync at a time).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::docker::merge_daemon_json;
use super::render::{FILE_MODE, FileSpec};
use super::state::{self, FileRecord, State, TEMP_PREFIX};
use super::{Entry, Layout, OwnerReport, Report, Runtime, discover, render};
use crate::fsutil::{AtomicOptions, write_atomic_with};

/// Makes the node carry `entries` (and nothing Dockyard wrote for anyone else): discover,
/// render, write, remove, reload, report. Idempotent: a second call with the same entries
/// writes nothing, signals nothing and reports `changed == false`.
pub fn sync(layout: &Layout, entries: &[Entry]) -> Report {
    let discovered = discover(layout);
    let rendered = render(entries, &discovered);
    let mut run = Run {
        layout,
        problems: rendered.problems.clone(),
        node_problems: rendered.node_problems.clone(),
        changed: false,
        reload_crio: false,
    };
    let loaded = match state::load(layout) {
        Ok(s) => s,
        Err(e) => {
            // Nothing is written: no resource is configured here.
            run.everyone(&e);
            run.node_problems.push(e);
            return run.report();
        }
    };
    let mut state = loaded.clone();
    run.remove_leftover_temp_files(&state, &rendered.files);
    run.write_files(&mut state, &rendered.files);
    run.remove_unwanted(&mut state, &rendered.files);
    let docker_changed = run.daemon_json(&mut state, &discovered.docker, &rendered.daemon_json);
    if docker_changed && layout.reload_docker {
        run.signal_hup(
            "dockerd",
            &layout.docker_pid_file,
            "kill -HUP $(cat /var/run/docker.pid)",
        );
    }
    if run.reload_crio && layout.reload_crio {
        run.signal_hup("CRI-O", &layout.crio_pid_file, "systemctl reload crio");
    }
    if state != loaded
        && let Err(e) = state::save(layout, &state)
    {
        run.node_problems.push(format!(
            "could not save Dockyard's ownership record under {}: {e}; the next sync adopts the files it wrote",
            layout.state_dir.display()
        ));
    }
    run.report()
}

struct Run<'a> {
    layout: &'a Layout,
    problems: BTreeMap<String, Vec<String>>,
    node_problems: Vec<String>,
    changed: bool,
    reload_crio: bool,
}

/// What is on disk at a wanted file's path.
enum Found {
    Missing,
    /// Ours and as wanted.
    Current,
    /// Ours (as recorded, or identical to what we would write) but outdated.
    Outdated,
    /// Someone else's file.
    Foreign,
    /// Ours, edited since.
    Edited,
}

impl Run<'_> {
    fn report(self) -> Report {
        let per_owner = self
            .problems
            .into_iter()
            .map(|(owner, problems)| {
                let configured = problems.is_empty();
                (
                    owner,
                    OwnerReport {
                        configured,
                        problems,
                    },
                )
            })
            .collect();
        Report {
            per_owner,
            node_problems: self.node_problems,
            changed: self.changed,
        }
    }

    fn owner_problem(&mut self, owners: &BTreeSet<String>, text: String) {
        for owner in owners {
            let list = self.problems.entry(owner.clone()).or_default();
            if !list.contains(&text) {
                list.push(text.clone());
            }
        }
    }

    fn read(&self, node_path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.layout.on_host(node_path)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes temp files that a killed write left in the directories the agent writes to.
    fn remove_leftover_temp_files(&mut self, state: &State, wanted: &[FileSpec]) {
        let mut dirs: BTreeSet<PathBuf> = wanted
            .iter()
            .map(|f| f.path.as_path())
            .chain(state.files.keys().map(PathBuf::as_path))
            .chain([self.layout.docker_daemon_json.as_path()])
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        dirs.insert(self.layout.state_dir.clone());
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(self.layout.on_host(&dir)) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let leftover = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(TEMP_PREFIX));
                if leftover && std::fs::remove_file(entry.path()).is_ok() {
                    tracing::info!(path = %entry.path().display(), "removed a leftover temp file");
                }
            }
        }
    }

    fn classify(&self, state: &State, file: &FileSpec) -> io::Result<Found> {
        let Some(current) = self.read(&file.path)? else {
            return Ok(Found::Missing);
        };
        let wanted = current == file.content.as_bytes();
        Ok(match state.files.get(&file.path) {
            Some(record) if record.sha256 != state::sha256(&current) && !wanted => Found::Edited,
            Some(_) if wanted => Found::Current,
            Some(_) => Found::Outdated,
            // Identical to what we write, marker included: ours, from a sync that was killed
            // before it saved the record.
            None if wanted => Found::Current,
            None => Found::Foreign,
        })
    }

    fn write_files(&mut self, state: &mut State, wanted: &[FileSpec]) {
        let mut units: BTreeMap<&Path, Vec<&FileSpec>> = BTreeMap::new();
        for f in wanted {
            units.entry(f.unit.as_path()).or_default().push(f);
        }
        for (unit, files) in units {
            let mut plan = Vec::new();
            let mut blocked = false;
            for f in &files {
                match self.classify(state, f) {
                    Err(e) => {
                        self.owner_problem(
                            &f.owners,
                            format!("cannot read {}: {e}", f.path.display()),
                        );
                        blocked = true;
                    }
                    Ok(Found::Foreign) => {
                        self.owner_problem(&f.owners, format!(
                            "{} exists and was not written by Dockyard, so Dockyard leaves it alone and {} is not configured: merge what it needs into that file yourself, or move the file away",
                            f.path.display(), unit.display()
                        ));
                        blocked = true;
                    }
                    Ok(Found::Edited) => {
                        self.owner_problem(&f.owners, format!(
                            "{} was edited since Dockyard wrote it, so Dockyard leaves it alone: delete it to let Dockyard write it again",
                            f.path.display()
                        ));
                        blocked = true;
                    }
                    Ok(Found::Current) => {
                        state.files.insert(f.path.clone(), record(f));
                    }
                    Ok(Found::Missing | Found::Outdated) => plan.push(*f),
                }
            }
            if let Some(theirs) = self.foreign_beside_hosts_toml(state, unit, &files) {
                let owners: BTreeSet<String> = files
                    .iter()
                    .flat_map(|f| f.owners.iter().cloned())
                    .collect();
                self.owner_problem(&owners, format!(
                    "{} holds {}, which containerd reads only while the directory has no hosts.toml, so Dockyard writes none there: put that setting into a hosts.toml yourself, or move the file away",
                    unit.parent().unwrap_or(unit).display(), theirs.display()
                ));
                blocked = true;
            }
            if blocked {
                continue;
            }
            for f in plan {
                match self.write(state, f) {
                    Ok(()) => {
                        state.files.insert(f.path.clone(), record(f));
                        self.changed = true;
                        self.reload_crio |= f.runtime == Runtime::Crio;
                    }
                    Err(e) => self.owner_problem(
                        &f.owners,
                        format!("cannot write {}: {e}", f.path.display()),
                    ),
                }
            }
        }
    }

    /// A file of someone else's in the directory of a hosts.toml that Dockyard has not
    /// written yet: containerd reads such certificates (docker's certs.d style) only while
    /// there is no hosts.toml, so writing one would silently drop them.
    fn foreign_beside_hosts_toml(
        &self,
        state: &State,
        unit: &Path,
        files: &[&FileSpec],
    ) -> Option<PathBuf> {
        let is_hosts_toml = files
            .first()
            .is_some_and(|f| f.runtime == Runtime::Containerd)
            && unit.file_name().is_some_and(|n| n == "hosts.toml");
        if !is_hosts_toml || self.layout.on_host(unit).exists() {
            return None;
        }
        let dir = unit.parent()?;
        let entries = std::fs::read_dir(self.layout.on_host(dir)).ok()?;
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.starts_with(TEMP_PREFIX))
            .map(|name| dir.join(name))
            .find(|path| !state.files.contains_key(path) && !files.iter().any(|f| f.path == *path))
    }

    /// Writes one file atomically, recording the directories it had to create.
    fn write(&mut self, state: &mut State, f: &FileSpec) -> io::Result<()> {
        let mut created = Vec::new();
        let mut dir = f.path.parent();
        while let Some(d) = dir {
            if self.layout.on_host(d).exists() {
                break;
            }
            created.push(d.to_path_buf());
            dir = d.parent();
        }
        let target = self.layout.on_host(&f.path);
        let parent = target
            .parent()
            .ok_or_else(|| io::Error::other("no parent directory"))?;
        let options = AtomicOptions {
            temp_prefix: TEMP_PREFIX,
            mode: Some(f.mode),
        };
        if !created.is_empty() {
            // Recorded before they exist, so a sync killed after making them still knows
            // they are Dockyard's (a recorded directory that is not there is forgotten).
            state.dirs.extend(created);
            state::save(self.layout, state)?;
        }
        write_atomic_with(parent, &target, f.content.as_bytes(), options)
    }

    /// Removes the files the record holds that nothing wants now (unless edited since),
    /// then the directories the agent created that are empty.
    fn remove_unwanted(&mut self, state: &mut State, wanted: &[FileSpec]) {
        let wanted_paths: BTreeSet<&Path> = wanted.iter().map(|f| f.path.as_path()).collect();
        let gone: Vec<PathBuf> = state
            .files
            .keys()
            .filter(|p| !wanted_paths.contains(p.as_path()))
            .cloned()
            .collect();
        for path in gone {
            let Some(record) = state.files.get(&path).cloned() else {
                continue;
            };
            match self.read(&path) {
                Ok(None) => {
                    state.files.remove(&path);
                }
                Ok(Some(current)) if state::sha256(&current) == record.sha256 => {
                    match std::fs::remove_file(self.layout.on_host(&path)) {
                        Ok(()) => {
                            state.files.remove(&path);
                            self.changed = true;
                            self.reload_crio |= path.starts_with(&self.layout.crio_dropin_dir);
                        }
                        Err(e) => self
                            .node_problems
                            .push(format!("cannot remove {}: {e}", path.display())),
                    }
                }
                Ok(Some(_)) => {
                    self.node_problems.push(format!(
                        "{} is no longer wanted by Dockyard ({}) but was edited since Dockyard wrote it, so it is left in place and is yours now",
                        path.display(),
                        record.owners.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                    state.files.remove(&path);
                }
                Err(e) => self
                    .node_problems
                    .push(format!("cannot read {}: {e}", path.display())),
            }
        }
        let needed: BTreeSet<PathBuf> = state
            .files
            .keys()
            .flat_map(|p| {
                p.ancestors()
                    .skip(1)
                    .map(Path::to_path_buf)
                    .collect::<Vec<_>>()
            })
            .collect();
        // Deepest first, so a parent is tried after its children.
        let mut dirs: Vec<PathBuf> = state
            .dirs
            .iter()
            .filter(|d| !needed.contains(*d))
            .cloned()
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            match std::fs::remove_dir(self.layout.on_host(&dir)) {
                Ok(()) => {
                    state.dirs.remove(&dir);
                    self.changed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    state.dirs.remove(&dir);
                }
                // Not empty: someone else's files are in it; it stays, and is tried again.
                Err(_) => {}
            }
        }
    }

    /// Merges daemon.json; true when its values changed (dockerd must reload).
    fn daemon_json(
        &mut self,
        state: &mut State,
        docker: &Option<super::DockerTarget>,
        wanted: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    ) -> bool {
        let Some(docker) = docker else {
            state.docker = Default::default();
            return false;
        };
        let values: BTreeMap<String, BTreeSet<String>> = wanted
            .iter()
            .map(|(k, v)| (k.clone(), v.keys().cloned().collect()))
            .collect();
        let owners_of = |key: &str, value: &str| -> BTreeSet<String> {
            wanted
                .get(key)
                .and_then(|v| v.get(value))
                .cloned()
                .unwrap_or_default()
        };
        let all_owners: BTreeSet<String> = wanted
            .values()
            .flat_map(|v| v.values().flatten().cloned())
            .collect();
        let path = self.layout.on_host(&docker.daemon_json);
        let edit =
            match merge_daemon_json(docker.daemon_json_text.as_deref(), &state.docker, &values) {
                Ok(edit) => edit,
                Err(e) => {
                    let text = format!("{}: {e}", docker.daemon_json.display());
                    self.owner_problem(&all_owners, text.clone());
                    self.node_problems.push(text);
                    return false;
                }
            };
        for (key, value, why) in &edit.problems {
            self.owner_problem(&owners_of(key, value), why.clone());
        }
        if edit.text == docker.daemon_json_text {
            state.docker = edit.record;
            return false;
        }
        let result = match &edit.text {
            None => std::fs::remove_file(&path),
            Some(text) => {
                let mode = std::fs::metadata(&path)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(FILE_MODE);
                let options = AtomicOptions {
                    temp_prefix: TEMP_PREFIX,
                    mode: Some(mode),
                };
                let parent = path.parent().unwrap_or(Path::new("/"));
                write_atomic_with(parent, &path, text.as_bytes(), options)
            }
        };
        match result {
            Ok(()) => {
                state.docker = edit.record;
                self.changed = true;
                edit.values_changed
            }
            Err(e) => {
                self.owner_problem(
                    &all_owners,
                    format!("cannot write {}: {e}", docker.daemon_json.display()),
                );
                false
            }
        }
    }

    /// Sends SIGHUP to the process whose pid `pid_file` holds.
    fn signal_hup(&mut self, what: &str, pid_file: &Path, by_hand: &str) {
        let pid = std::fs::read_to_string(self.layout.on_host(pid_file))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|p| *p > 1);
        let sent = pid.is_some_and(|pid| {
            // SAFETY: kill(2) with a positive pid and a valid signal number has no memory effects.
            unsafe { libc::kill(pid, libc::SIGHUP) == 0 }
        });
        if sent {
            self.changed = true;
        } else {
            let text = format!(
                "could not signal {what} to reload (pid file {}): run `{by_hand}` so it reads the new configuration",
                pid_file.display()
            );
            self.everyone(&text);
            self.node_problems.push(text);
        }
    }

    /// A problem of every resource on this node (its configuration is not in effect).
    fn everyone(&mut self, text: &str) {
        for list in self.problems.values_mut() {
            if !list.iter().any(|p| p == text) {
                list.push(text.to_owned());
            }
        }
    }
}

fn record(f: &FileSpec) -> FileRecord {
    FileRecord {
        sha256: state::sha256(f.content.as_bytes()),
        owners: f.owners.clone(),
    }
}
