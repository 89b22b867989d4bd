//! Deserializers that accept what `REGISTRY_*` environment overrides produce (strings)
//! as well as native YAML values, and that tell a present-but-empty key from a missing one.

use serde::{Deserialize, Deserializer, de::Error};
use serde_yaml::Value;

/// A bool given as YAML bool or as the strings "true"/"false".
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::Null => Ok(false),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" | "" => Ok(false),
            other => Err(D::Error::custom(format!(
                "expected true or false, got {other:?}"
            ))),
        },
        other => Err(D::Error::custom(format!(
            "expected true or false, got {other:?}"
        ))),
    }
}

/// An optional bool, `None` when the key is absent or empty.
pub fn bool_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        other => bool(other).map(Some).map_err(D::Error::custom),
    }
}

/// An optional unsigned integer given as a YAML number or a numeric string.
pub fn u64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a positive integer, got {n}"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected a positive integer, got {s:?}"))),
        other => Err(D::Error::custom(format!(
            "expected a positive integer, got {other:?}"
        ))),
    }
}

/// `Some` whenever the key is present, even as `inmemory:` with no value.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A list of strings given as a YAML sequence or a comma-separated string (the form an
/// environment variable takes); `true` means every repository (`**`).
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null | Value::Bool(false) => Ok(vec![]),
        Value::Bool(true) => Ok(vec!["**".to_owned()]),
        Value::String(s) => match s.trim() {
            "true" => Ok(vec!["**".to_owned()]),
            "false" | "" => Ok(vec![]),
            list => Ok(list
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()),
        },
        Value::Sequence(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(D::Error::custom(format!(
                    "expected a repository pattern string, got {other:?}"
                ))),
            })
            .collect(),
        other => Err(D::Error::custom(format!(
            "expected a list of repository patterns, got {other:?}"
        ))),
    }
}

/// A list of paths given as a YAML sequence, or as a string (the form an environment
/// variable takes): `[/a.pem, /b.pem]` as registry:2 reads it, or `/a.pem,/b.pem`.
pub fn path_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<std::path::PathBuf>, D::Error> {
    let items = match Value::deserialize(d)? {
        Value::Null => vec![],
        Value::Sequence(items) => items,
        Value::String(s) => {
            let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
            inner
                .split(',')
                .map(|p| Value::String(p.trim().trim_matches(['"', '\'']).to_owned()))
                .collect()
        }
        other => {
            return Err(D::Error::custom(format!(
                "expected a list of file paths, got {other:?}"
            )));
        }
    };
    items
        .into_iter()
        .filter(|v| v.as_str() != Some(""))
        .map(|v| match v {
            Value::String(p) => Ok(std::path::PathBuf::from(p)),
            other => Err(D::Error::custom(format!(
                "expected a file path, got {other:?}"
            ))),
        })
        .collect()
}
