//! Parsing of Apache htpasswd files, bcrypt entries only (`$2y$`, `$2a$`, `$2b$`), as
//! registry:2 requires. Any other hash kind or a malformed line is an error naming the line.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("htpasswd line {line}: {reason}")]
pub struct HtpasswdError {
    pub line: usize,
    pub reason: String,
}

/// Users and their bcrypt hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl Htpasswd {
    pub fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let err = |reason: String| HtpasswdError { line, reason };
            let (user, hash) = entry
                .split_once(':')
                .ok_or_else(|| err("expected user:hash".into()))?;
            if user.is_empty() {
                return Err(err("empty user name".into()));
            }
            if let Some(kind) = unsupported_kind(hash) {
                return Err(err(format!(
                    "user {user:?} has a {kind} hash; only bcrypt is supported (create it with `htpasswd -B` or `dockyard htpasswd`)"
                )));
            }
            if !is_bcrypt(hash) {
                return Err(err(format!("user {user:?} has a malformed bcrypt hash")));
            }
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(err(format!("user {user:?} is listed twice")));
            }
        }
        Ok(Htpasswd { users })
    }

    /// The bcrypt hash of `user`, if listed.
    pub fn hash(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// The bcrypt cost most entries use (the higher on a tie); `None` for an empty file.
    pub fn typical_cost(&self) -> Option<u32> {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for hash in self.users.values() {
            if let Some(cost) = hash.get(4..6).and_then(|c| c.parse().ok()) {
                *counts.entry(cost).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|&(cost, n)| (n, cost))
            .map(|(cost, _)| cost)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn unsupported_kind(hash: &str) -> Option<&'static str> {
    if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
        Some("MD5")
    } else if hash.starts_with("{SHA}") {
        Some("SHA-1")
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        Some("SHA-crypt")
    } else if !hash.starts_with('$') {
        Some("plain-text or crypt(3)")
    } else {
        None
    }
}

/// `$2y$10$` + 53 characters of bcrypt base64.
fn is_bcrypt(hash: &str) -> bool {
    let b = hash.as_bytes();
    let prefix_ok =
        hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$");
    prefix_ok
        && b.len() == 60
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice:$2y$05$snEIXDCva9OznK/TmIeHh.SS4xmbkECqY4lPIXw9ck9C3C8EYXMS2";

    #[test]
    fn parses_bcrypt_users_and_comments() {
        let h = Htpasswd::parse(&format!(
            "# users\n\n{ALICE}\nbob:$2y$04$5zk0jO8F7HQP3YS4btoZROfh6oZXtRcQDKrKKM2LqUi1zwCXwqDfa\n"
        ))
        .unwrap();
        assert_eq!(h.len(), 2);
        assert!(h.hash("alice").unwrap().starts_with("$2y$05$"));
        assert!(h.hash("carol").is_none());
        assert_eq!(h.typical_cost(), Some(5));
        assert_eq!(Htpasswd::default().typical_cost(), None);
    }

    #[test]
    fn other_hash_kinds_name_the_line() {
        for (entry, kind) in [
            ("bob:$apr1$abc$def", "MD5"),
            ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("bob:plaintext", "plain-text"),
            ("bob:$6$salt$hash", "SHA-crypt"),
        ] {
            let e = Htpasswd::parse(&format!("{ALICE}\n{entry}\n")).unwrap_err();
            assert_eq!(e.line, 2);
            assert!(e.to_string().contains(kind), "{e}");
            assert!(e.to_string().starts_with("htpasswd line 2:"), "{e}");
        }
        assert_eq!(Htpasswd::parse("no-colon").unwrap_err().line, 1);
        assert!(Htpasswd::parse(":$2y$05$x").is_err());
        assert!(
            Htpasswd::parse("bob:$2y$05$tooshort")
                .unwrap_err()
                .reason
                .contains("malformed")
        );
        assert!(
            Htpasswd::parse(&format!("{ALICE}\n{ALICE}"))
                .unwrap_err()
                .reason
                .contains("twice")
        );
    }
}
