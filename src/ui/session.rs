//! The web UI's cookies: a signed session (user name, expiry, a nonce, and a fingerprint of
//! the user's password hash, so a password change ends it) and a signed one-shot flash message, both
//! HMAC-SHA256 under a [`SessionKey`] derived from `http.secret` (so replicas sharing it
//! accept each other's cookies) or random per process; and the sessions signed out on this
//! process ([`Revoked`]). Pure but for that set's lock: the clock is passed in. Only
//! [`super`] calls it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "dockyard_session";
/// The flash message cookie's name.
pub(crate) const FLASH_COOKIE: &str = "dockyard_flash";
/// How long a sign-in lasts.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a flash message waits for the page it is meant for.
const FLASH_LIFETIME: Duration = Duration::from_secs(60);
/// Signed-out sessions remembered at most (the soonest to expire go first beyond it).
const MAX_REVOKED: usize = 50_000;

type HmacSha256 = Hmac<Sha256>;

/// The key cookies are signed with.
#[derive(Clone)]
pub(crate) struct SessionKey([u8; 32]);

impl SessionKey {
    /// Derived from `http.secret` when set (shared by replicas), else random.
    pub(crate) fn new(secret: Option<&str>) -> SessionKey {
        let secret = secret.map(str::trim).filter(|s| !s.is_empty());
        let material: Vec<u8> = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
                .iter()
                .flat_map(|u| *u.as_bytes())
                .collect(),
        };
        let mut key = [0u8; 32];
        key.copy_from_slice(&mac(&material, &[b"dockyard web ui cookies v1"]));
        SessionKey(key)
    }

    fn sign(&self, purpose: &str, payload: &str) -> String {
        let tag = mac(&self.0, &[purpose.as_bytes(), b"\0", payload.as_bytes()]);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The payload of a value signed for `purpose`, if the signature holds.
    fn open(&self, purpose: &str, value: &str) -> Option<String> {
        let (payload, tag) = value.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut check = HmacSha256::new_from_slice(&self.0).ok()?;
        for part in [purpose.as_bytes(), b"\0", payload.as_bytes()] {
            check.update(part);
        }
        check.verify_slice(&tag).ok()?;
        Some(payload)
    }

    /// What a session carries of the password hash it was signed in with: the first 8 bytes
    /// of an HMAC of it (the hash itself never goes into a cookie).
    pub(crate) fn fingerprint(&self, password_hash: &str) -> String {
        hex::encode(&mac(&self.0, &[b"pw-fingerprint", password_hash.as_bytes()])[..8])
    }

    /// A session cookie value for `user`, whose password hash is `password_hash`, valid for
    /// [`SESSION_LIFETIME`] from `now`. A random nonce makes each sign-in's cookie its own,
    /// so signing out of one leaves the others.
    pub(crate) fn session(&self, user: &str, password_hash: &str, now: SystemTime) -> String {
        let expires = unix(now) + SESSION_LIFETIME.as_secs();
        let fingerprint = self.fingerprint(password_hash);
        let nonce = &uuid::Uuid::new_v4().simple().to_string()[..16];
        self.sign(
            "session",
            &format!("{expires}:{fingerprint}:{nonce}:{user}"),
        )
    }

    /// The session a cookie carries, if it is genuine and not expired at `now`. Whether its
    /// password is still the user's is the caller's to check ([`Session::fingerprint`]).
    pub(crate) fn open_session(&self, value: &str, now: SystemTime) -> Option<Session> {
        let payload = self.open("session", value)?;
        let (expires, rest) = payload.split_once(':')?;
        let (fingerprint, rest) = rest.split_once(':')?;
        let (_nonce, user) = rest.split_once(':')?;
        let expires = expires.parse::<u64>().ok()?;
        let live = expires > unix(now);
        let signature = value.split_once('.')?.1.to_owned();
        (live && !user.is_empty()).then(|| Session {
            user: user.to_owned(),
            fingerprint: fingerprint.to_owned(),
            expires,
            signature,
        })
    }

    /// A flash cookie value carrying `message`.
    pub(crate) fn flash(&self, message: &str, now: SystemTime) -> String {
        let expires = unix(now) + FLASH_LIFETIME.as_secs();
        self.sign("flash", &format!("{expires}:{message}"))
    }

    /// The message of a flash cookie, if genuine and fresh.
    pub(crate) fn flash_message(&self, value: &str, now: SystemTime) -> Option<String> {
        let payload = self.open("flash", value)?;
        let (expires, message) = payload.split_once(':')?;
        (expires.parse::<u64>().ok()? > unix(now)).then(|| message.to_owned())
    }
}

/// A genuine, live session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) user: String,
    /// [`SessionKey::fingerprint`] of the password hash it was signed in with.
    pub(crate) fingerprint: String,
    /// Unix seconds.
    expires: u64,
    /// The cookie's signature: what [`Revoked`] remembers.
    signature: String,
}

/// Sessions signed out on this process, remembered until they expire, so a copy of the
/// cookie is refused here too. Other replicas do not learn of it.
#[derive(Default)]
pub(crate) struct Revoked(Mutex<HashMap<String, u64>>);

impl Revoked {
    pub(crate) fn revoke(&self, session: &Session, now: SystemTime) {
        let mut revoked = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if revoked.len() >= MAX_REVOKED {
            let now = unix(now);
            revoked.retain(|_, expires| *expires > now);
        }
        while revoked.len() >= MAX_REVOKED {
            let soonest = revoked
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(signature, _)| signature.clone());
            match soonest {
                Some(signature) => revoked.remove(&signature),
                None => break,
            };
        }
        revoked.insert(session.signature.clone(), session.expires);
    }

    pub(crate) fn contains(&self, session: &Session) -> bool {
        let revoked = self.0.lock().unwrap_or_else(|p| p.into_inner());
        revoked.contains_key(&session.signature)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The value of cookie `name` in a `Cookie` header.
pub(crate) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure over TLS; `None` for
/// `max_age` deletes the cookie.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age: Option<Duration>,
    secure: bool,
) -> String {
    let age = max_age.map_or(0, |d| d.as_secs());
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value of a flash message.
pub(crate) fn flash_cookie(key: &SessionKey, message: &str, secure: bool) -> String {
    let value = key.flash(message, SystemTime::now());
    set_cookie(FLASH_COOKIE, &value, Some(FLASH_LIFETIME), secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn user_of(key: &SessionKey, cookie: &str, now: SystemTime) -> Option<String> {
        key.open_session(cookie, now).map(|s| s.user)
    }

    #[test]
    fn sessions_hold_until_they_expire() {
        let key = SessionKey::new(Some("s3cret"));
        let cookie = key.session("alice", "$2y$hash", at(1000));
        assert_eq!(user_of(&key, &cookie, at(1001)).as_deref(), Some("alice"));
        let end = 1000 + SESSION_LIFETIME.as_secs();
        assert_eq!(
            user_of(&key, &cookie, at(end - 1)).as_deref(),
            Some("alice")
        );
        assert_eq!(user_of(&key, &cookie, at(end)), None);
    }

    #[test]
    fn sessions_carry_a_fingerprint_of_the_password_hash_not_the_hash() {
        let key = SessionKey::new(Some("s3cret"));
        let cookie = key.session("alice", "$2y$04$first", at(1000));
        let session = key.open_session(&cookie, at(1001)).unwrap();
        assert_eq!(session.fingerprint, key.fingerprint("$2y$04$first"));
        assert_ne!(session.fingerprint, key.fingerprint("$2y$04$second"));
        assert_eq!(session.fingerprint.len(), 16);
        let (payload, _) = cookie.split_once('.').unwrap();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(!payload.contains("first"), "{payload}");
        // Another key, another fingerprint: it tells nothing across deployments.
        let other = SessionKey::new(Some("other"));
        assert_ne!(other.fingerprint("$2y$04$first"), session.fingerprint);
        // A cookie of the old form (expires:user) is no session.
        let old = key.sign("session", "99999999999:alice");
        assert_eq!(key.open_session(&old, at(1001)), None);
        // Each sign-in is its own session, even in the same second.
        assert_ne!(
            key.session("alice", "$2y$04$first", at(1000)),
            key.session("alice", "$2y$04$first", at(1000))
        );
    }

    #[test]
    fn signed_out_sessions_are_remembered_until_they_expire_within_a_bound() {
        let key = SessionKey::new(None);
        let revoked = Revoked::default();
        let a = key
            .open_session(&key.session("a", "h", at(0)), at(1))
            .unwrap();
        let b = key
            .open_session(&key.session("b", "h", at(10)), at(11))
            .unwrap();
        revoked.revoke(&a, at(1));
        assert!(revoked.contains(&a) && !revoked.contains(&b));
        // Full: the expired go, then the soonest to expire.
        {
            let mut set = revoked.0.lock().unwrap();
            for i in 0..MAX_REVOKED as u64 - 1 {
                set.insert(format!("x{i}"), 5 + i);
            }
        }
        assert_eq!(revoked.len(), MAX_REVOKED);
        revoked.revoke(&b, at(100));
        assert!(revoked.contains(&b) && revoked.contains(&a));
        assert_eq!(revoked.len(), MAX_REVOKED - 95);
    }

    #[test]
    fn forged_or_foreign_cookies_are_refused() {
        let key = SessionKey::new(Some("s3cret"));
        let cookie = key.session("alice", "h", at(1000));
        let (_, tag) = cookie.split_once('.').unwrap();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode("99999999999:00:00:admin")
        );
        assert_eq!(user_of(&key, &forged, at(1001)), None);
        assert_eq!(user_of(&key, "garbage", at(1001)), None);
        assert_eq!(user_of(&key, "a.b", at(1001)), None);
        let other = SessionKey::new(Some("another"));
        assert_eq!(user_of(&other, &cookie, at(1001)), None);
        // A flash cookie is not a session, and vice versa.
        let flash = key.flash("1:alice", at(1000));
        assert_eq!(user_of(&key, &flash, at(1001)), None);
        assert_eq!(key.flash_message(&cookie, at(1001)), None);
    }

    #[test]
    fn a_shared_secret_is_shared_and_no_secret_is_random() {
        let a = SessionKey::new(Some("s3cret"));
        let b = SessionKey::new(Some("s3cret"));
        let cookie = a.session("bob", "h", at(5));
        assert_eq!(user_of(&b, &cookie, at(6)).as_deref(), Some("bob"));
        let r1 = SessionKey::new(None);
        let r2 = SessionKey::new(None);
        assert_eq!(user_of(&r2, &r1.session("bob", "h", at(5)), at(6)), None);
    }

    #[test]
    fn flash_messages_carry_any_text_briefly() {
        let key = SessionKey::new(None);
        let v = key.flash("Removed tag <b>x</b>; done", at(10));
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        assert_eq!(
            key.flash_message(&v, at(11)).as_deref(),
            Some("Removed tag <b>x</b>; done")
        );
        assert_eq!(key.flash_message(&v, at(100)), None);
    }

    #[test]
    fn cookie_headers() {
        let h = "a=1; dockyard_session=abc.def; x=\"q\"";
        assert_eq!(cookie(h, SESSION_COOKIE), Some("abc.def"));
        assert_eq!(cookie(h, "x"), Some("q"));
        assert_eq!(cookie(h, "missing"), None);
        assert_eq!(
            set_cookie("n", "v", Some(Duration::from_secs(60)), true),
            "n=v; Max-Age=60; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            set_cookie("n", "", None, false),
            "n=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
        );
    }
}
