//! Secret material a Registry needs, derived from the desired state and what already
//! exists, so that nothing changes when nothing needs to: bcrypt hashes are reused while
//! they still verify the password, the pull user's password and the replicas' shared
//! `http.secret` are generated once, and the TLS material is `common::tls`'s (the CA
//! created once, the serving certificate renewed only when needed).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::validate::{Desired, PULL_USER, UserSource};
use crate::operator::common::Addresses;
use crate::operator::common::tls::{self, ExistingTls, SelfSigned};
use crate::operator::pki::PkiError;

/// bcrypt cost of generated entries.
pub const BCRYPT_COST: u32 = 10;

/// What exists already, read from the managed Secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// The current managed htpasswd file.
    pub htpasswd: Option<String>,
    pub pull_password: Option<String>,
    /// The replicas' shared `http.secret`.
    pub http_secret: Option<String>,
    pub tls: ExistingTls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materials {
    /// The managed htpasswd file; `None` when auth is off.
    pub htpasswd: Option<String>,
    pub pull_password: String,
    /// `http.secret`, the same for every replica; only for replicas that share storage.
    pub http_secret: Option<String>,
    /// For `selfSigned`: the CA and the serving certificate.
    pub self_signed: Option<SelfSigned>,
}

/// Passwords already checked against a bcrypt hash, so reconciles that change nothing skip
/// bcrypt (tens of milliseconds each). Kept in memory only, as keyed digests.
pub struct VerifiedHashes {
    key: [u8; 32],
    seen: Mutex<HashSet<[u8; 32]>>,
}

/// Entries remembered before the set starts over.
const MAX_VERIFIED: usize = 100_000;

impl Default for VerifiedHashes {
    fn default() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        VerifiedHashes {
            key,
            seen: Mutex::new(HashSet::new()),
        }
    }
}

impl VerifiedHashes {
    fn digest(&self, user: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            &self.key[..],
            user.as_bytes(),
            password.as_bytes(),
            hash.as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// Whether `hash` is `password`'s bcrypt hash, remembering a yes.
    pub fn verify(&self, user: &str, password: &str, hash: &str) -> bool {
        let digest = self.digest(user, password, hash);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&digest) {
            return true;
        }
        drop(seen);
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() >= MAX_VERIFIED {
                seen.clear();
            }
            seen.insert(digest);
        }
        ok
    }
}

/// The material for `d`, reachable at `addresses`, reusing what `existing` holds.
pub fn prepare(
    d: &Desired,
    addresses: &Addresses,
    existing: &Existing,
    now: i64,
    verified: &VerifiedHashes,
) -> Result<Materials, PkiError> {
    let pull_password = existing
        .pull_password
        .clone()
        .unwrap_or_else(random_password);
    let htpasswd = d.auth.as_ref().map(|auth| {
        let mut users: Vec<(String, String)> = match &auth.source {
            UserSource::Passwords(users) => users.clone(),
            UserSource::File(_) => vec![],
        };
        users.push((PULL_USER.to_owned(), pull_password.clone()));
        let reused = reuse_hashes(existing.htpasswd.as_deref(), &users, verified);
        match &auth.source {
            UserSource::File(text) => format!("{}\n{}", text.trim_end(), reused),
            UserSource::Passwords(_) => reused,
        }
    });
    let http_secret = d
        .workload
        .shares_storage()
        .then(|| existing.http_secret.clone().unwrap_or_else(random_password));
    let self_signed = tls::prepare(&d.workload, addresses, &existing.tls, now)?;
    Ok(Materials {
        htpasswd,
        pull_password,
        http_secret,
        self_signed,
    })
}

/// htpasswd lines for `users`, keeping each existing hash that still verifies its password.
fn reuse_hashes(
    existing: Option<&str>,
    users: &[(String, String)],
    verified: &VerifiedHashes,
) -> String {
    let old: BTreeMap<&str, &str> = existing
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .collect();
    let mut lines: Vec<String> = users
        .iter()
        .map(|(user, password)| match old.get(user.as_str()) {
            Some(hash) if verified.verify(user, password, hash) => {
                format!("{user}:{hash}")
            }
            _ => crate::auth::htpasswd_line(user, password, BCRYPT_COST).unwrap_or_default(),
        })
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

fn random_password() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_passwords_keep_their_hashes() {
        let users = vec![
            ("alice".to_owned(), "a-pw".to_owned()),
            ("bob".to_owned(), "b-pw".to_owned()),
        ];
        let verified = VerifiedHashes::default();
        let first = reuse_hashes(None, &users, &verified);
        assert_eq!(
            reuse_hashes(Some(&first), &users, &verified),
            first,
            "no churn when nothing changed"
        );
        let changed = vec![
            ("alice".to_owned(), "new".to_owned()),
            ("bob".to_owned(), "b-pw".to_owned()),
        ];
        let second = reuse_hashes(Some(&first), &changed, &verified);
        let line = |text: &str, user: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{user}:")))
                .unwrap()
                .to_owned()
        };
        assert_ne!(line(&second, "alice"), line(&first, "alice"));
        assert_eq!(line(&second, "bob"), line(&first, "bob"));
        let hash = line(&second, "alice").split_once(':').unwrap().1.to_owned();
        assert!(bcrypt::verify("new", &hash).unwrap());
    }

    #[test]
    fn remembered_checks_still_refuse_wrong_passwords() {
        let verified = VerifiedHashes::default();
        let line = crate::auth::htpasswd_line("a", "right", 4).unwrap();
        let hash = line.split_once(':').unwrap().1;
        assert!(verified.verify("a", "right", hash));
        assert!(verified.verify("a", "right", hash), "remembered");
        assert!(!verified.verify("a", "wrong", hash));
        assert!(!verified.verify(
            "b",
            "right",
            "$2y$04$invalidinvalidinvalidinvalidinvalidinvalidinvalidinva"
        ));
    }
}
