//! Parses the path under `/v2/` into a typed route. Repository names contain `/`, so the
//! route is recognised from the end of the path, never with one pattern per name depth.

use super::digest::Digest;
use super::name::{NameError, Reference, RepoName};

/// An API endpoint with its validated parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: RepoName },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        name: RepoName,
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: RepoName, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: RepoName },
    /// `/v2/<name>/blobs/uploads/<session id>`
    Upload { name: RepoName, id: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: RepoName, digest: Digest },
}

impl Route {
    /// The repository the route addresses, if any.
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }

    /// The same route with its repository name mapped (a mirror's routing by `?ns=`).
    pub fn map_name<E>(self, f: impl FnOnce(RepoName) -> Result<RepoName, E>) -> Result<Route, E> {
        Ok(match self {
            Route::Base => Route::Base,
            Route::Catalog => Route::Catalog,
            Route::Tags { name } => Route::Tags { name: f(name)? },
            Route::Manifest { name, reference } => Route::Manifest {
                name: f(name)?,
                reference,
            },
            Route::Blob { name, digest } => Route::Blob {
                name: f(name)?,
                digest,
            },
            Route::UploadStart { name } => Route::UploadStart { name: f(name)? },
            Route::Upload { name, id } => Route::Upload { name: f(name)?, id },
            Route::Referrers { name, digest } => Route::Referrers {
                name: f(name)?,
                digest,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no such endpoint")]
    NotFound,
    #[error(transparent)]
    Name(NameError),
    #[error(transparent)]
    Reference(NameError),
    #[error("invalid upload session id")]
    UploadId,
}

/// Longest upload session id accepted (UUIDs are 36).
const MAX_UPLOAD_ID_LEN: usize = 64;

/// Parses the part of the path after `/v2/` (percent-encoded as received).
pub fn parse(rest: &str) -> Result<Route, RouteError> {
    let decoded = percent_decode(rest).ok_or(RouteError::NotFound)?;
    let rest = decoded.as_str();
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let name = |s: &str| s.parse::<RepoName>().map_err(RouteError::Name);
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags { name: name(n)? });
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Route::UploadStart { name: name(n)? });
    }
    let (head, last) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    let (head, kind) = head.rsplit_once('/').ok_or(RouteError::NotFound)?;
    match kind {
        "manifests" => {
            let name = name(head)?;
            let reference = last.parse().map_err(RouteError::Reference)?;
            Ok(Route::Manifest { name, reference })
        }
        "blobs" => {
            let name = name(head)?;
            let digest = last
                .parse()
                .map_err(|e: super::DigestError| RouteError::Reference(e.into()))?;
            Ok(Route::Blob { name, digest })
        }
        "referrers" => {
            let name = name(head)?;
            let digest = last
                .parse()
                .map_err(|e: super::DigestError| RouteError::Reference(e.into()))?;
            Ok(Route::Referrers { name, digest })
        }
        "uploads" => {
            let n = head.strip_suffix("/blobs").ok_or(RouteError::NotFound)?;
            let name = name(n)?;
            let valid = !last.is_empty()
                && last.len() <= MAX_UPLOAD_ID_LEN
                && last
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(RouteError::UploadId);
            }
            Ok(Route::Upload {
                name,
                id: last.to_owned(),
            })
        }
        _ => Err(RouteError::NotFound),
    }
}

/// Decodes `%XX` escapes; `None` for malformed escapes or non-UTF-8 results.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn repo(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_route() {
        assert_eq!(parse(""), Ok(Route::Base));
        assert_eq!(parse("_catalog"), Ok(Route::Catalog));
        assert_eq!(
            parse("a/b/tags/list"),
            Ok(Route::Tags { name: repo("a/b") })
        );
        assert_eq!(
            parse("a/manifests/latest"),
            Ok(Route::Manifest {
                name: repo("a"),
                reference: "latest".parse().unwrap()
            })
        );
        assert_eq!(
            parse(&format!("a/b/c/blobs/{D}")),
            Ok(Route::Blob {
                name: repo("a/b/c"),
                digest: D.parse().unwrap()
            })
        );
        assert_eq!(
            parse("x/blobs/uploads/"),
            Ok(Route::UploadStart { name: repo("x") })
        );
        assert_eq!(
            parse("x/blobs/uploads"),
            Ok(Route::UploadStart { name: repo("x") })
        );
        assert_eq!(
            parse("x/blobs/uploads/abc-123"),
            Ok(Route::Upload {
                name: repo("x"),
                id: "abc-123".into()
            })
        );
        assert_eq!(
            parse(&format!("x/referrers/{D}")),
            Ok(Route::Referrers {
                name: repo("x"),
                digest: D.parse().unwrap()
            })
        );
    }

    #[test]
    fn deep_names_and_keyword_components() {
        let deep = "a/b/c/d/e/f/g/h";
        assert_eq!(
            parse(&format!("{deep}/tags/list")),
            Ok(Route::Tags { name: repo(deep) })
        );
        // A repository may itself be called "manifests" or "blobs".
        assert_eq!(
            parse("org/manifests/manifests/v1"),
            Ok(Route::Manifest {
                name: repo("org/manifests"),
                reference: "v1".parse().unwrap()
            })
        );
        assert_eq!(
            parse("blobs/blobs/uploads/"),
            Ok(Route::UploadStart {
                name: repo("blobs")
            })
        );
    }

    #[test]
    fn percent_encoded_digest() {
        let enc = D.replace(':', "%3A");
        assert!(matches!(
            parse(&format!("a/blobs/{enc}")),
            Ok(Route::Blob { .. })
        ));
    }

    #[test]
    fn errors() {
        assert_eq!(parse("a"), Err(RouteError::NotFound));
        assert_eq!(parse("a/unknown/x"), Err(RouteError::NotFound));
        assert!(matches!(parse("Bad/manifests/x"), Err(RouteError::Name(_))));
        assert!(matches!(
            parse("a/../b/manifests/x"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            parse("a/manifests/bad:tag"),
            Err(RouteError::Reference(_))
        ));
        assert!(matches!(
            parse("a/blobs/sha256:1234"),
            Err(RouteError::Reference(_))
        ));
        assert!(matches!(
            parse("a/blobs/latest"),
            Err(RouteError::Reference(_))
        ));
        assert!(parse("a/blobs/uploads/..%2f..%2fx").is_err());
        assert_eq!(parse("a/blobs/uploads/x.y"), Err(RouteError::UploadId));
        assert_eq!(parse("a/%zz/x"), Err(RouteError::NotFound));
    }
}
