//! The web UI's cookies: a signed session (user name and expiry) and a signed one-shot
//! flash message, both HMAC-SHA256 under a [`SessionKey`] derived from `http.secret` (so
//! replicas sharing it accept each other's cookies) or random per process. Pure: the clock
//! is passed in. Only [`super`] calls it.

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

    /// A session cookie value for `user`, valid for [`SESSION_LIFETIME`] from `now`.
    pub(crate) fn session(&self, user: &str, now: SystemTime) -> String {
        let expires = unix(now) + SESSION_LIFETIME.as_secs();
        self.sign("session", &format!("{expires}:{user}"))
    }

    /// The user a session cookie names, if it is genuine and not expired at `now`.
    pub(crate) fn session_user(&self, value: &str, now: SystemTime) -> Option<String> {
        let payload = self.open("session", value)?;
        let (expires, user) = payload.split_once(':')?;
        let live = expires.parse::<u64>().ok()? > unix(now);
        (live && !user.is_empty()).then(|| user.to_owned())
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

    #[test]
    fn sessions_hold_until_they_expire() {
        let key = SessionKey::new(Some("s3cret"));
        let cookie = key.session("alice", at(1000));
        assert_eq!(
            key.session_user(&cookie, at(1001)).as_deref(),
            Some("alice")
        );
        let end = 1000 + SESSION_LIFETIME.as_secs();
        assert_eq!(
            key.session_user(&cookie, at(end - 1)).as_deref(),
            Some("alice")
        );
        assert_eq!(key.session_user(&cookie, at(end)), None);
    }

    #[test]
    fn forged_or_foreign_cookies_are_refused() {
        let key = SessionKey::new(Some("s3cret"));
        let cookie = key.session("alice", at(1000));
        let (_, tag) = cookie.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("99999999999:admin"));
        assert_eq!(key.session_user(&forged, at(1001)), None);
        assert_eq!(key.session_user("garbage", at(1001)), None);
        assert_eq!(key.session_user("a.b", at(1001)), None);
        let other = SessionKey::new(Some("another"));
        assert_eq!(other.session_user(&cookie, at(1001)), None);
        // A flash cookie is not a session, and vice versa.
        let flash = key.flash("alice", at(1000));
        assert_eq!(key.session_user(&flash, at(1001)), None);
        assert_eq!(key.flash_message(&cookie, at(1001)), None);
    }

    #[test]
    fn a_shared_secret_is_shared_and_no_secret_is_random() {
        let a = SessionKey::new(Some("s3cret"));
        let b = SessionKey::new(Some("s3cret"));
        let cookie = a.session("bob", at(5));
        assert_eq!(b.session_user(&cookie, at(6)).as_deref(), Some("bob"));
        let r1 = SessionKey::new(None);
        let r2 = SessionKey::new(None);
        assert_eq!(r2.session_user(&r1.session("bob", at(5)), at(6)), None);
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
