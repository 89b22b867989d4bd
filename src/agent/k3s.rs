//! k3s / rke2: which registry hosts their `registries.yaml` manages. k3s writes
//! `hosts.toml` for those hosts itself on every start and removes only its own directories
//! (k3s#10823), so the agent writes drop-ins for other hosts and reports these. Pure.

use std::collections::BTreeSet;

/// The hosts named under `mirrors:` and `configs:` in a `registries.yaml` (`"*"`, k3s's
/// default-mirror key, is not a host and is left out).
pub(crate) fn managed_hosts(yaml: &str) -> Result<BTreeSet<String>, String> {
    if yaml.trim().is_empty() {
        return Ok(BTreeSet::new());
    }
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    let mut hosts = BTreeSet::new();
    for section in ["mirrors", "configs"] {
        match doc.get(section) {
            None | Some(serde_yaml::Value::Null) => {}
            Some(serde_yaml::Value::Mapping(map)) => {
                for key in map.keys() {
                    if let Some(host) = key.as_str().filter(|h| *h != "*") {
                        hosts.insert(host.to_owned());
                    }
                }
            }
            Some(_) => return Err(format!("`{section}` is not a mapping")),
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_and_configs_keys_are_managed_hosts() {
        let yaml = "mirrors:\n  docker.io:\n    endpoint: [\"https://m.example\"]\n  \"*\":\n    endpoint: [\"https://x\"]\nconfigs:\n  \"registry.example:5000\":\n    tls:\n      insecure_skip_verify: true\n";
        let hosts = managed_hosts(yaml).unwrap();
        assert_eq!(
            hosts.into_iter().collect::<Vec<_>>(),
            ["docker.io", "registry.example:5000"]
        );
        assert!(managed_hosts("").unwrap().is_empty());
        assert!(managed_hosts("mirrors: [1, 2]").is_err());
        assert!(managed_hosts("mirrors: {").is_err());
    }
}
