//! Registry authentication and authorization: htpasswd users (bcrypt, reloaded when the
//! file changes), HTTP Basic credentials checked by a bounded bcrypt pool ([`verifier`]) with
//! caches of verified and refused passwords that a password change invalidates, and the
//! access policy (anonymous pull, per-repository rules). The HTTP layer calls
//! [`Authenticator`].
//!
//! Failed logins are limited by their *cost*, never by refusing a right password: a
//! remembered password gets in without bcrypt, and a new one waits at most for its address's
//! next bcrypt token. Unknown users are checked against a dummy hash of the file's own cost,
//! so both refusals take the same time.

mod htpasswd;
mod rules;
pub mod verifier;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

pub use htpasswd::{Htpasswd, HtpasswdError};
pub use rules::{AccessRule, Action, Identity, Policy, glob};
use verifier::{Budget, Outcome, Verifier};

/// Verified logins remembered, so a 30-layer pull costs one bcrypt run, not 30.
const MAX_CACHED_LOGINS: usize = 10_000;
/// Refused passwords remembered, so a client retrying a stale password costs no bcrypt.
const MAX_REFUSED: usize = 10_000;
/// Stands in for the client address when the transport gives none.
const NO_ADDRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read htpasswd file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: HtpasswdError,
    },
    #[error("invalid auth configuration: {0}")]
    Invalid(String),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required")]
    Unauthorized,
    #[error("too many failed login attempts; retry in {} s", retry_after.as_secs().max(1))]
    TooManyAttempts { retry_after: Duration },
    #[error("requested access to the resource is denied")]
    Denied,
}

/// A password already checked against one htpasswd hash.
struct CachedLogin {
    /// The hash the password was checked against: a changed hash misses.
    hash: String,
    password_digest: [u8; 32],
}

/// The loaded htpasswd file and the dummy hash unknown users are checked against.
struct Users {
    file: Htpasswd,
    /// A hash of the file's most common cost, so unknown users take as long as known ones.
    dummy: String,
}

impl Users {
    fn new(file: Htpasswd) -> Users {
        let cost = file.typical_cost().unwrap_or(bcrypt::DEFAULT_COST);
        let secret = uuid::Uuid::new_v4().to_string();
        let dummy = bcrypt::hash(secret, cost).unwrap_or_default();
        Users { file, dummy }
    }
}

pub struct Authenticator {
    realm: String,
    path: PathBuf,
    users: RwLock<Arc<Users>>,
    /// Verified logins by user name.
    verified: Mutex<HashMap<String, CachedLogin>>,
    /// Refused (user, password digest) pairs, with the hash they were refused against.
    refused: Mutex<HashMap<(String, [u8; 32]), String>>,
    cache_key: [u8; 32],
    verifier: Verifier,
    policy: Policy,
}

impl Authenticator {
    /// Loads the htpasswd file; errors name the file and line.
    pub fn load(
        realm: String,
        path: &Path,
        policy: Policy,
    ) -> Result<Authenticator, AuthSetupError> {
        Authenticator::with_budget(realm, path, policy, Budget::default())
    }

    /// As [`Authenticator::load`], with a given bcrypt budget per client address.
    pub fn with_budget(
        realm: String,
        path: &Path,
        policy: Policy,
        budget: Budget,
    ) -> Result<Authenticator, AuthSetupError> {
        policy.validate().map_err(AuthSetupError::Invalid)?;
        let users = Users::new(read_htpasswd(path)?);
        let mut cache_key = [0u8; 32];
        cache_key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        cache_key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Ok(Authenticator {
            realm,
            path: path.to_owned(),
            users: RwLock::new(Arc::new(users)),
            verified: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            cache_key,
            verifier: Verifier::new(Verifier::default_workers(), budget),
            policy,
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Re-reads the htpasswd file; on error the previous users stay in force.
    pub fn reload(&self) -> Result<usize, AuthSetupError> {
        let users = Users::new(read_htpasswd(&self.path)?);
        let count = users.file.len();
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(users);
        Ok(count)
    }

    /// Reloads the htpasswd file whenever it changes, until the task is dropped.
    pub async fn watch_file(self: Arc<Self>) {
        let mut watcher = match crate::watch::Watcher::new(std::slice::from_ref(&self.path)) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot watch the htpasswd file; changes need a restart");
                return;
            }
        };
        loop {
            watcher.changed().await;
            let me = self.clone();
            let reloaded = tokio::task::spawn_blocking(move || me.reload()).await;
            match reloaded.unwrap_or_else(|e| Err(AuthSetupError::Invalid(e.to_string()))) {
                Ok(users) => {
                    tracing::info!(path = %self.path.display(), users, "reloaded htpasswd file")
                }
                Err(e) => {
                    tracing::error!(error = %e, "htpasswd file not reloaded; the previous users stay in force")
                }
            }
        }
    }

    /// Who is calling, from the `Authorization` header. No header is `Anonymous`; wrong
    /// credentials are `Unauthorized`; `TooManyAttempts` only when the client's address is
    /// over its bcrypt budget and the password could not be checked in time.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        client: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        let Some(header) = authorization else {
            return Ok(Identity::Anonymous);
        };
        let Some((user, password)) = parse_basic(header) else {
            return Err(AuthError::Unauthorized);
        };
        // skopeo, podman and CRI-O answer a Basic challenge with empty credentials when
        // they have none: that is an anonymous caller, not a failed login.
        if user.is_empty() && password.is_empty() {
            return Ok(Identity::Anonymous);
        }
        match self
            .verify(&user, &password, client.unwrap_or(NO_ADDRESS))
            .await
        {
            Outcome::Match => Ok(Identity::User(user)),
            Outcome::NoMatch => Err(AuthError::Unauthorized),
            Outcome::Throttled(retry_after) => Err(AuthError::TooManyAttempts { retry_after }),
        }
    }

    /// Checks a user name and password from a login form, with the same caches and per-address
    /// bcrypt budget as Basic credentials.
    pub async fn verify_login(
        &self,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        if user.is_empty() {
            return Err(AuthError::Unauthorized);
        }
        match self
            .verify(user, password, client.unwrap_or(NO_ADDRESS))
            .await
        {
            Outcome::Match => Ok(Identity::User(user.to_owned())),
            Outcome::NoMatch => Err(AuthError::Unauthorized),
            Outcome::Throttled(retry_after) => Err(AuthError::TooManyAttempts { retry_after }),
        }
    }

    /// The stored hash of `user`'s password (as last loaded), for the web UI to tie a session
    /// to it: a changed password ends the sessions signed in with the old one. Never leaves
    /// the crate.
    pub(crate) fn password_hash(&self, user: &str) -> Option<String> {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        users.file.hash(user).map(str::to_owned)
    }

    /// Whether `who` may do `action` on `repository`; anonymous refusals ask for credentials.
    pub fn authorize(
        &self,
        who: &Identity,
        action: Action,
        repository: &str,
    ) -> Result<(), AuthError> {
        match (self.policy.allows(who, action, repository), who) {
            (true, _) => Ok(()),
            (false, Identity::Anonymous) => Err(AuthError::Unauthorized),
            (false, Identity::User(_)) => Err(AuthError::Denied),
        }
    }

    async fn verify(&self, user: &str, password: &str, client: IpAddr) -> Outcome {
        let (hash, dummy) = {
            let users = self.users.read().unwrap_or_else(|p| p.into_inner());
            (
                users.file.hash(user).map(str::to_owned),
                users.dummy.clone(),
            )
        };
        let digest = self.password_digest(password);
        let against = hash.clone().unwrap_or(dummy);
        if let Some(hash) = &hash {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = verified.get(user)
                && hit.hash == *hash
                && bool::from(hit.password_digest.ct_eq(&digest))
            {
                return Outcome::Match;
            }
        }
        let key = (user.to_owned(), digest);
        {
            let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if refused.get(&key).is_some_and(|h| *h == against) {
                return Outcome::NoMatch;
            }
        }
        let outcome = match self
            .verifier
            .verify(client, password.to_owned(), against.clone())
            .await
        {
            Outcome::Match if hash.is_none() => Outcome::NoMatch,
            other => other,
        };
        match (outcome, hash) {
            (Outcome::Match, Some(hash)) => {
                let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                if verified.len() >= MAX_CACHED_LOGINS {
                    verified.clear();
                }
                let login = CachedLogin {
                    hash,
                    password_digest: digest,
                };
                verified.insert(user.to_owned(), login);
            }
            (Outcome::NoMatch, _) => {
                let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
                if refused.len() >= MAX_REFUSED {
                    refused.clear();
                }
                refused.insert(key, against);
            }
            _ => {}
        }
        outcome
    }

    /// bcrypt runs so far (for tests and diagnostics).
    pub fn bcrypt_runs(&self) -> u64 {
        self.verifier.runs()
    }

    fn password_digest(&self, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update(password.as_bytes());
        h.finalize().into()
    }
}

fn read_htpasswd(path: &Path) -> Result<Htpasswd, AuthSetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
        path: path.to_owned(),
        source,
    })?;
    Htpasswd::parse(&text).map_err(|source| AuthSetupError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Decodes `Basic base64(user:password)`.
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Builds one htpasswd line for `user` with a bcrypt hash of `password`.
pub fn htpasswd_line(user: &str, password: &str, cost: u32) -> Result<String, String> {
    if user.is_empty() || user.contains(':') || user.contains(char::is_whitespace) {
        return Err(format!(
            "invalid user name {user:?}: it must be non-empty, without ':' or spaces"
        ));
    }
    let hash = bcrypt::hash_with_result(password, cost).map_err(|e| e.to_string())?;
    Ok(format!(
        "{user}:{}",
        hash.format_for_version(bcrypt::Version::TwoY)
    ))
}

#[cfg(test)]
mod tests;
