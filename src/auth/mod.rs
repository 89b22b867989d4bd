//! Registry authentication and authorization: htpasswd users (bcrypt, reloaded when the
//! file changes), HTTP Basic credentials verified off the async runtime with a cache that a
//! password change invalidates, per-client rate limiting of failed logins, and the access
//! policy (anonymous pull, per-repository rules). The HTTP layer calls [`Authenticator`].

mod htpasswd;
mod limiter;
mod rules;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

pub use htpasswd::{Htpasswd, HtpasswdError};
pub use limiter::FailureLimiter;
pub use rules::{AccessRule, Action, Identity, Policy, glob};

/// Failed logins allowed per client address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Verified logins remembered, so a 30-layer pull costs one bcrypt run, not 30.
const MAX_CACHED_LOGINS: usize = 10_000;
/// Verified against for unknown users, so their timing matches known users'.
const DUMMY_HASH: &str = "$2y$10$nLz5MwVs13MZtjZ8MurOvuGFCFLx/wCkZYQ0fB5JxUuuVxSjsD5Ua";

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

struct CachedLogin {
    /// The htpasswd hash the password was verified against: a changed hash misses.
    hash: String,
    password_digest: [u8; 32],
}

pub struct Authenticator {
    realm: String,
    path: PathBuf,
    users: RwLock<Arc<Htpasswd>>,
    cache: Mutex<HashMap<String, CachedLogin>>,
    cache_key: [u8; 32],
    limiter: FailureLimiter,
    policy: Policy,
}

impl Authenticator {
    /// Loads the htpasswd file; errors name the file and line.
    pub fn load(
        realm: String,
        path: &Path,
        policy: Policy,
    ) -> Result<Authenticator, AuthSetupError> {
        policy.validate().map_err(AuthSetupError::Invalid)?;
        let users = read_htpasswd(path)?;
        let mut cache_key = [0u8; 32];
        cache_key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        cache_key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Ok(Authenticator {
            realm,
            path: path.to_owned(),
            users: RwLock::new(Arc::new(users)),
            cache: Mutex::new(HashMap::new()),
            cache_key,
            limiter: FailureLimiter::new(MAX_FAILURES, FAILURE_WINDOW),
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
        let users = read_htpasswd(&self.path)?;
        let count = users.len();
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
            match self.reload() {
                Ok(users) => {
                    tracing::info!(path = %self.path.display(), users, "reloaded htpasswd file")
                }
                Err(e) => {
                    tracing::error!(error = %e, "htpasswd file not reloaded; the previous users stay in force")
                }
            }
        }
    }

    /// Who is calling, from the `Authorization` header. No header is `Anonymous`; bad
    /// credentials are an error and count towards the client's failure limit.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        client: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        let Some(header) = authorization else {
            return Ok(Identity::Anonymous);
        };
        // skopeo, podman and CRI-O answer a Basic challenge with empty credentials when
        // they have none: that is an anonymous caller, not a failed login.
        if parse_basic(header)
            .is_some_and(|(user, password)| user.is_empty() && password.is_empty())
        {
            return Ok(Identity::Anonymous);
        }
        let now = Instant::now();
        if let Some(retry_after) = client.and_then(|c| self.limiter.blocked(c, now)) {
            return Err(AuthError::TooManyAttempts { retry_after });
        }
        let verified = match parse_basic(header) {
            Some((user, password)) => self.verify(&user, &password).await.then_some(user),
            None => None,
        };
        match verified {
            Some(user) => Ok(Identity::User(user)),
            None => {
                if let Some(c) = client {
                    self.limiter.record_failure(c, now);
                }
                Err(AuthError::Unauthorized)
            }
        }
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

    async fn verify(&self, user: &str, password: &str) -> bool {
        let hash = {
            let users = self.users.read().unwrap_or_else(|p| p.into_inner());
            users.hash(user).map(str::to_owned)
        };
        let digest = self.password_digest(password);
        if let Some(hash) = &hash {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = cache.get(user)
                && hit.hash == *hash
                && bool::from(hit.password_digest.ct_eq(&digest))
            {
                return true;
            }
        }
        let known = hash.is_some();
        let against = hash.clone().unwrap_or_else(|| DUMMY_HASH.to_owned());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password, &against).unwrap_or(false)
        })
        .await
        .unwrap_or(false)
            && known;
        if let (true, Some(hash)) = (ok, hash) {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED_LOGINS {
                cache.clear();
            }
            cache.insert(
                user.to_owned(),
                CachedLogin {
                    hash,
                    password_digest: digest,
                },
            );
        }
        ok
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
