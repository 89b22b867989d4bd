//! `storage.s3` checked against the Secrets it names: which keys of the credentials Secret
//! hold the access key and secret key, that the CA is a PEM certificate, and the part size in
//! bytes. CEL has already refused what the spec alone shows to be wrong.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use super::{Invalid, invalid, secret_value};
use crate::operator::crd::{S3Storage, SecretKeyRef};

/// A bucket as the registry pods will use it.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Plan {
    pub spec: S3Storage,
    /// `chunkSize` in bytes.
    pub chunk_size: Option<u64>,
    pub credentials: Option<S3Credentials>,
    /// A digest of the credentials' and CA's values: when one is rotated the pods roll
    /// (environment from a Secret and a CA read at start are not reloaded).
    pub fingerprint: String,
}

/// Where the pods read their S3 keys: a Secret and the names of its two keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub secret: String,
    pub access_key: String,
    pub secret_key: String,
}

/// The key pairs a credentials Secret may hold: registry:2's names, then AWS's.
const KEY_PAIRS: [(&str, &str); 2] = [
    ("accessKey", "secretKey"),
    ("accessKeyID", "secretAccessKey"),
];

/// Checks `spec` against the fetched `secrets` (by name).
pub fn plan(spec: &S3Storage, secrets: &BTreeMap<String, Secret>) -> Result<S3Plan, Invalid> {
    let mut fingerprint = Sha256::new();
    let credentials = match &spec.credentials_secret_ref {
        None => None,
        Some(r) => {
            let what = "storage.s3.credentialsSecretRef";
            let secret = secrets.get(&r.name).ok_or_else(|| {
                invalid(
                    "SecretNotFound",
                    format!(
                        "{what}: Secret {:?} does not exist in this namespace",
                        r.name
                    ),
                )
            })?;
            let (access_key, secret_key) = key_names(secret).ok_or_else(|| {
                invalid(
                    "SecretKeyNotFound",
                    format!(
                        "{what}: Secret {:?} needs the keys accessKey and secretKey (or accessKeyID and secretAccessKey); it has {}",
                        r.name,
                        listed(secret)
                    ),
                )
            })?;
            for key in [access_key, secret_key] {
                let value = secret_value(
                    secrets,
                    &SecretKeyRef {
                        name: r.name.clone(),
                        key: key.to_owned(),
                    },
                    what,
                )?;
                if value.trim().is_empty() {
                    return Err(invalid(
                        "EmptyCredentials",
                        format!("{what}: key {key:?} of Secret {:?} is empty", r.name),
                    ));
                }
                hash_part(&mut fingerprint, &value);
            }
            Some(S3Credentials {
                secret: r.name.clone(),
                access_key: access_key.to_owned(),
                secret_key: secret_key.to_owned(),
            })
        }
    };
    if let Some(r) = &spec.ca_secret_ref {
        let pem = secret_value(secrets, r, "storage.s3.caSecretRef")?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(invalid(
                "CaInvalid",
                format!(
                    "storage.s3.caSecretRef: key {:?} of Secret {:?} holds no PEM certificate",
                    r.key, r.name
                ),
            ));
        }
        hash_part(&mut fingerprint, &pem);
    }
    let chunk_size = match &spec.chunk_size {
        None => None,
        Some(text) => Some(bytes(text).ok_or_else(|| {
            invalid(
                "ChunkSizeInvalid",
                format!("storage.s3.chunkSize {text:?} is not a size like 16Mi"),
            )
        })?),
    };
    Ok(S3Plan {
        spec: spec.clone(),
        chunk_size,
        credentials,
        fingerprint: hex::encode(&fingerprint.finalize()[..8]),
    })
}

/// The first pair of [`KEY_PAIRS`] the Secret holds both of.
fn key_names(secret: &Secret) -> Option<(&'static str, &'static str)> {
    let has = |key: &str| {
        secret.data.as_ref().is_some_and(|d| d.contains_key(key))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(key))
    };
    KEY_PAIRS.into_iter().find(|(a, s)| has(a) && has(s))
}

/// The Secret's key names (never its values), for a message.
fn listed(secret: &Secret) -> String {
    let keys: Vec<&str> = secret
        .data
        .iter()
        .flat_map(|d| d.keys())
        .chain(secret.string_data.iter().flat_map(|d| d.keys()))
        .map(String::as_str)
        .collect();
    if keys.is_empty() {
        "no keys".to_owned()
    } else {
        format!("only {}", keys.join(", "))
    }
}

fn hash_part(h: &mut Sha256, value: &str) {
    h.update((value.len() as u64).to_le_bytes());
    h.update(value.as_bytes());
}

/// `16Mi`, `5G`, `10485760`: a whole number with an optional k, M, G, Ki, Mi or Gi suffix
/// (what the CRD admits), in bytes.
fn bytes(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::registry::validate::tests::secret;

    fn s3(spec: serde_json::Value) -> S3Storage {
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn sizes_are_read_as_the_crd_admits_them() {
        assert_eq!(bytes("16Mi"), Some(16 << 20));
        assert_eq!(bytes("5G"), Some(5_000_000_000));
        assert_eq!(bytes("10485760"), Some(10 << 20));
        assert_eq!(bytes("16MB"), None);
        assert_eq!(bytes("Mi"), None);
    }

    #[test]
    fn credentials_come_from_either_spelling_and_a_rotation_changes_the_fingerprint() {
        let spec = s3(
            serde_json::json!({"bucket": "b", "credentialsSecretRef": {"name": "keys"}, "chunkSize": "16Mi"}),
        );
        let ours = BTreeMap::from([secret("keys", &[("accessKey", "AK"), ("secretKey", "SK")])]);
        let plan1 = plan(&spec, &ours).unwrap();
        assert_eq!(
            plan1.credentials,
            Some(S3Credentials {
                secret: "keys".into(),
                access_key: "accessKey".into(),
                secret_key: "secretKey".into()
            })
        );
        assert_eq!(plan1.chunk_size, Some(16 << 20));
        let aws = BTreeMap::from([secret(
            "keys",
            &[("accessKeyID", "AK"), ("secretAccessKey", "SK")],
        )]);
        let plan2 = plan(&spec, &aws).unwrap();
        assert_eq!(
            plan2.credentials.unwrap().secret_key,
            "secretAccessKey",
            "the AWS spelling is read too"
        );
        let rotated =
            BTreeMap::from([secret("keys", &[("accessKey", "AK"), ("secretKey", "SK2")])]);
        assert_ne!(
            plan(&spec, &rotated).unwrap().fingerprint,
            plan1.fingerprint
        );
    }

    #[test]
    fn what_only_the_secrets_reveal_is_reported_without_their_values() {
        let spec = s3(serde_json::json!({"bucket": "b", "credentialsSecretRef": {"name": "keys"}}));
        let e = plan(&spec, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.reason, "SecretNotFound");
        let half = BTreeMap::from([secret(
            "keys",
            &[("accessKey", "AK"), ("password", "hunter2")],
        )]);
        let e = plan(&spec, &half).unwrap_err();
        assert_eq!(e.reason, "SecretKeyNotFound");
        assert!(
            e.message.contains("needs the keys accessKey and secretKey")
                && e.message.contains("it has only accessKey, password"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("hunter2"));
        let empty = BTreeMap::from([secret("keys", &[("accessKey", "AK"), ("secretKey", " ")])]);
        assert_eq!(plan(&spec, &empty).unwrap_err().reason, "EmptyCredentials");
        let ca =
            s3(serde_json::json!({"bucket": "b", "caSecretRef": {"name": "ca", "key": "ca.crt"}}));
        let not_pem = BTreeMap::from([secret("ca", &[("ca.crt", "not a certificate")])]);
        assert_eq!(plan(&ca, &not_pem).unwrap_err().reason, "CaInvalid");
    }
}
