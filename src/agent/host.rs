//! Validation of everything an [`Entry`](super::Entry) brings before any path or file text is
//! built from it: registry hosts (the image-reference grammar: a DNS name, an IPv4 address or
//! a bracketed IPv6 address, an optional port), endpoint URLs, owners and CA PEM text. Pure.

pub use crate::oci::validate_host;

/// A checked `scheme://authority` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    pub https: bool,
    /// `host[:port]`, checked by [`validate_host`].
    pub authority: String,
}

impl BaseUrl {
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// Parses `scheme://authority` (an optional trailing `/`), http or https only.
pub(crate) fn parse_base_url(what: &str, url: &str) -> Result<BaseUrl, String> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!(
            "{what} {url:?} must start with https:// or http://"
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    validate_host(authority).map_err(|e| {
        format!("{what} {url:?} must be scheme://host[:port] without a path or credentials: {e}")
    })?;
    Ok(BaseUrl {
        https,
        authority: authority.to_owned(),
    })
}

/// The upstream an entry falls back to: its `server`, or Docker Hub's API endpoint for
/// `docker.io`, or `https://<host>`.
pub(crate) fn upstream_of(host: &str, server: Option<&str>) -> Result<BaseUrl, String> {
    match server {
        Some(s) => parse_base_url("server", s),
        None if host == "docker.io" => Ok(BaseUrl {
            https: true,
            authority: "registry-1.docker.io".into(),
        }),
        None => Ok(BaseUrl {
            https: true,
            authority: host.to_owned(),
        }),
    }
}

/// Owners name Kubernetes objects (`Kind/namespace/name`); they go into comments and the
/// state file, so only those characters pass.
pub(crate) fn validate_owner(owner: &str) -> Result<(), String> {
    let ok = !owner.is_empty()
        && owner.len() <= 400
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "owner {owner:?} must be Kind/namespace/name (letters, digits, '/', '-', '.', '_', ':')"
        ))
    }
}

/// Checks that `pem` holds certificates only (one or more `CERTIFICATE` blocks, nothing
/// else but whitespace), and returns it normalized to end with one newline.
pub(crate) fn check_ca_pem(pem: &str) -> Result<String, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = pem.trim();
    let mut blocks = 0;
    while !rest.is_empty() {
        let Some(after_begin) = rest.strip_prefix(BEGIN) else {
            return Err(
                "the CA must be PEM certificates only (-----BEGIN CERTIFICATE----- blocks)".into(),
            );
        };
        let Some((body, after)) = after_begin.split_once(END) else {
            return Err("the CA's PEM block has no -----END CERTIFICATE----- line".into());
        };
        let base64_only = body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r' | b' ')
        });
        if !base64_only || body.trim().is_empty() {
            return Err("the CA's PEM block is not base64".into());
        }
        blocks += 1;
        rest = after.trim_start();
    }
    if blocks == 0 {
        return Err("the CA is empty".into());
    }
    Ok(format!("{}\n", pem.trim()))
}

/// A host or authority as one path component or file-name part: `:` and brackets become `_`.
pub(crate) fn file_safe(authority: &str) -> String {
    authority
        .chars()
        .map(|c| if matches!(c, ':' | '[' | ']') { '_' } else { c })
        .collect()
}

/// A TOML basic string: quoted, with `"`, `\` and control characters escaped.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_scheme_and_authority_only() {
        assert_eq!(
            parse_base_url("url", "https://10.96.0.50:5000/")
                .unwrap()
                .url(),
            "https://10.96.0.50:5000"
        );
        for bad in [
            "ftp://x",
            "https://x/path",
            "https://u:p@x",
            "https://x\"]\n[evil]",
            "10.0.0.1:5000",
        ] {
            assert!(parse_base_url("url", bad).is_err(), "{bad}");
        }
        assert_eq!(
            upstream_of("docker.io", None).unwrap().url(),
            "https://registry-1.docker.io"
        );
        assert_eq!(
            upstream_of("ghcr.io", None).unwrap().url(),
            "https://ghcr.io"
        );
    }

    #[test]
    fn ca_pem_must_be_certificates_and_owners_plain() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(check_ca_pem(pem).unwrap(), format!("{pem}\n"));
        assert!(check_ca_pem("").is_err());
        assert!(
            check_ca_pem("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----").is_err()
        );
        assert!(check_ca_pem(&format!("{pem}\n\"]\n")).is_err());
        assert!(validate_owner("RegistryMirror/ns/name").is_ok());
        assert!(validate_owner("x\ny").is_err());
        assert!(validate_owner("").is_err());
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
