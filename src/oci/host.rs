//! Registry hosts as image references spell them (`docker.io`, `registry.example.com:5000`,
//! `10.96.0.12:5000`, `[fd00::1]:5000`): the grammar every place that turns a host into a
//! path, a file name or a config key checks first (the mirror's upstreams, the node agent's
//! files), so `../`, slashes, spaces, quotes and newlines never get that far. Pure.

use std::net::Ipv6Addr;

/// Checks `host` against the registry host grammar image names use: a lowercase DNS name
/// (labels of `a-z`, `0-9`, `-`), an IPv4 address or `[IPv6]`, optionally `:port`. The error
/// says what is wrong.
pub fn validate_host(host: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{host:?} is not a registry host ({why}): use a name such as docker.io, registry.example.com:5000, 10.96.0.12:5000 or [fd00::1]:5000"
        ))
    };
    if host.is_empty() || host.len() > 253 {
        return bad("empty or too long");
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return bad("an IPv6 address needs its closing bracket");
        };
        if inner.parse::<Ipv6Addr>().is_err() {
            return bad("not an IPv6 address inside the brackets");
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return bad("only :port may follow the brackets"),
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !ok {
            return bad("the port must be a number from 1 to 65535");
        }
    }
    if let Some(name) = name {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !name.split('.').all(label_ok) {
            return bad("only lowercase letters, digits, '-' and '.' between labels");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_pass_and_hostile_ones_are_refused() {
        for good in [
            "docker.io",
            "ghcr.io",
            "upstream.test:5000",
            "10.96.0.12:5000",
            "localhost",
            "[fd00::1]:5000",
            "[::1]",
            "a-b.c-d.example",
        ] {
            assert_eq!(validate_host(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "..",
            "a/b",
            "docker.io/library",
            "a b",
            "a\nb",
            "ev\"il",
            "a'b",
            "Docker.io",
            "host:",
            "host:0",
            "host:65536",
            "host:5000:1",
            "-lead.example",
            "trail-.example",
            "a..b",
            ".",
            "[not-ip]:5000",
            "[::1]x",
            "host\\x",
            "host\0",
        ] {
            assert!(validate_host(bad).is_err(), "{bad:?} accepted");
        }
    }
}
