//! Registry hosts as image references spell them (`docker.io`, `registry.example.com:5000`,
//! `10.96.0.12:5000`, `[fd00::1]:5000`): the grammar every place that turns a host into a
//! path, a file name or a config key checks first, so `../`, slashes, spaces, quotes and
//! newlines never get that far.

use std::net::Ipv6Addr;

/// Why a host is not a registry host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error(
        "a registry host is a name or an IP address with an optional :port, without a scheme, path or spaces (like docker.io or registry.example.com:5000)"
    )]
    Grammar,
    #[error("the port must be a number from 1 to 65535")]
    Port,
    #[error("a registry host is at most 253 characters before its port")]
    TooLong,
}

/// Checks `host` (with an optional port) against the registry host grammar.
pub fn validate_host(host: &str) -> Result<(), HostError> {
    let (name, port) = split(host)?;
    if let Some(port) = port
        && !matches!(port.parse::<u32>(), Ok(1..=65535))
    {
        return Err(HostError::Port);
    }
    if let Some(v6) = name.strip_prefix('[') {
        let inner = v6.strip_suffix(']').ok_or(HostError::Grammar)?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| HostError::Grammar);
    }
    if name.is_empty() {
        return Err(HostError::Grammar);
    }
    if name.len() > 253 {
        return Err(HostError::TooLong);
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(HostError::Grammar)
    }
}

/// `host` as its name (an IPv6 address kept in brackets) and its port.
fn split(host: &str) -> Result<(&str, Option<&str>), HostError> {
    if host.starts_with('[') {
        let end = host.find(']').ok_or(HostError::Grammar)?;
        let (name, rest) = host.split_at(end + 1);
        return match rest {
            "" => Ok((name, None)),
            _ => rest
                .strip_prefix(':')
                .map(|p| (name, Some(p)))
                .ok_or(HostError::Grammar),
        };
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => Ok((name, Some(port))),
        Some(_) => Err(HostError::Grammar),
        None => Ok((host, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_pass_and_hostile_ones_do_not() {
        for ok in [
            "docker.io",
            "ghcr.io",
            "registry.example.com:5000",
            "10.96.0.12:5000",
            "[fd00::1]:5000",
            "[fd00::1]",
            "localhost",
            "upstream.test",
        ] {
            assert_eq!(validate_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            "a b",
            "docker.io\n",
            "\"x\"",
            "x:0",
            "x:65536",
            "x:port",
            "-a.io",
            "a..io",
            "https://docker.io",
            "fd00::1",
            "[nothex]:5000",
            "a.io:5000:1",
        ] {
            assert!(validate_host(bad).is_err(), "{bad:?} passed");
        }
    }
}
