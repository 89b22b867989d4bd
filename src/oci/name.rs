//! Repository names, tags and manifest references, validated by the OCI distribution
//! spec's grammar. Names may have any number of `/`-separated components.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// Longest repository name accepted, as distribution does.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag accepted: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid repository name {name:?}: {why}")]
    Name { name: String, why: &'static str },
    #[error("invalid tag {0:?}: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A repository name such as `library/ubuntu` or `a/b/c/d`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| {
            Err(NameError::Name {
                name: s.to_owned(),
                why,
            })
        };
        if s.is_empty() {
            return err("name is empty");
        }
        if s.len() > MAX_NAME_LEN {
            return err("name is longer than 255 characters");
        }
        for component in s.split('/') {
            if component.is_empty() {
                return err("empty path component");
            }
            if !is_component(component) {
                return err(
                    "components must be lowercase letters and digits, separated by '.', '_', '__' or '-'",
                );
            }
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag such as `latest` or `v1.2.3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `/v2/<name>/manifests/<reference>` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "library/ubuntu",
            "a/b/c/d/e/f/g/h",
            "my-org/my_repo",
            "a__b/c.d/e---f",
            "0/1",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
        assert!(
            "x/".repeat(127)
                .trim_end_matches('/')
                .parse::<RepoName>()
                .is_ok()
        );
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "A",
            "Upper/case",
            "a//b",
            "/a",
            "a/",
            "..",
            "a/../b",
            "a/./b",
            "-a",
            "a-",
            "a___b",
            "a_.b",
            "a b",
            "a:b",
            "a%2fb",
            ".hidden",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?}");
        }
        let long = "a".repeat(256);
        assert!(long.parse::<RepoName>().is_err());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad}");
        }
    }

    #[test]
    fn references() {
        assert!(matches!(
            "latest".parse::<Reference>(),
            Ok(Reference::Tag(_))
        ));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert!(matches!(
            "sha256:zz".parse::<Reference>(),
            Err(NameError::Digest(_))
        ));
    }
}
