//! `storage.s3`, as registry:2 reads it (from YAML or `REGISTRY_STORAGE_S3_*`), turned into
//! the S3 driver's settings, with a clear error for what cannot work and a warning for what
//! Dockyard accepts but does not act on.

use serde::Deserialize;
use serde_yaml::Value;

use super::lenient;
use crate::storage::s3::S3Options;

/// S3's part size limits.
const MIN_CHUNK: u64 = 5 << 20;
const MAX_CHUNK: u64 = 5 << 30;
const DEFAULT_CHUNK: u64 = 10 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct S3Config {
    accesskey: Option<String>,
    secretkey: Option<String>,
    sessiontoken: Option<String>,
    region: Option<String>,
    regionendpoint: Option<String>,
    bucket: Option<String>,
    rootdirectory: Option<String>,
    #[serde(deserialize_with = "lenient::bool_opt")]
    secure: Option<bool>,
    #[serde(deserialize_with = "lenient::bool_opt")]
    skipverify: Option<bool>,
    #[serde(deserialize_with = "lenient::bool_opt")]
    forcepathstyle: Option<bool>,
    #[serde(deserialize_with = "lenient::u64_opt")]
    chunksize: Option<u64>,
    #[serde(deserialize_with = "lenient::bool_opt")]
    encrypt: Option<bool>,
    keyid: Option<String>,
    storageclass: Option<String>,
    useragent: Option<String>,
    #[serde(deserialize_with = "lenient::bool_opt")]
    v4auth: Option<bool>,
    objectacl: Option<String>,
    #[serde(deserialize_with = "lenient::bool_opt")]
    usedualstack: Option<bool>,
    #[serde(deserialize_with = "lenient::bool_opt")]
    accelerate: Option<bool>,
    /// Accepted for compatibility; Dockyard copies with CopyObject (or streams past 5 GiB).
    multipartcopychunksize: Option<Value>,
    multipartcopymaxconcurrency: Option<Value>,
    multipartcopythresholdsize: Option<Value>,
    loglevel: Option<Value>,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The driver settings and the warnings for `storage.s3`'s value.
pub fn parse(value: &Value) -> Result<(S3Options, Vec<String>), String> {
    let c: S3Config = match value {
        Value::Null => S3Config::default(),
        v => serde_yaml::from_value(v.clone()).map_err(|e| format!("storage.s3: {e}"))?,
    };
    let mut warnings = Vec::new();
    let bucket = non_empty(c.bucket).ok_or(
        "storage.s3.bucket is required (REGISTRY_STORAGE_S3_BUCKET): the bucket every replica shares",
    )?;
    let endpoint = non_empty(c.regionendpoint);
    let region = non_empty(c.region);
    let (access_key, secret_key) = match (non_empty(c.accesskey), non_empty(c.secretkey)) {
        (Some(a), Some(s)) => (Some(a), Some(s)),
        (None, None) => (None, None),
        _ => {
            return Err("storage.s3: set both accesskey and secretkey, or neither (then credentials come from the AWS environment, web identity or instance role)".into());
        }
    };
    let chunk = c.chunksize.unwrap_or(DEFAULT_CHUNK);
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
        return Err(format!(
            "storage.s3.chunksize must be between {MIN_CHUNK} (5 MiB, S3's smallest part) and {MAX_CHUNK} bytes, got {chunk}"
        ));
    }
    if c.v4auth == Some(false) {
        warnings.push(
            "storage.s3.v4auth: false is not supported; requests are signed with AWS Signature V4"
                .into(),
        );
    }
    if let Some(acl) = non_empty(c.objectacl)
        && acl != "private"
    {
        warnings.push(format!(
            "storage.s3.objectacl {acl:?} is not supported; objects get the bucket's default ACL"
        ));
    }
    for (key, on) in [
        ("usedualstack", c.usedualstack),
        ("accelerate", c.accelerate),
    ] {
        if on == Some(true) {
            warnings.push(format!(
                "storage.s3.{key} is not supported by Dockyard, ignored"
            ));
        }
    }
    for (key, set) in [
        ("multipartcopychunksize", c.multipartcopychunksize.is_some()),
        (
            "multipartcopymaxconcurrency",
            c.multipartcopymaxconcurrency.is_some(),
        ),
        (
            "multipartcopythresholdsize",
            c.multipartcopythresholdsize.is_some(),
        ),
        ("loglevel", c.loglevel.is_some()),
    ] {
        if set {
            warnings.push(format!(
                "storage.s3.{key} has no effect in Dockyard, ignored"
            ));
        }
    }
    let storage_class = non_empty(c.storageclass).filter(|s| !s.eq_ignore_ascii_case("none"));
    let options = S3Options {
        bucket,
        force_path_style: c.forcepathstyle.unwrap_or(endpoint.is_some()),
        region,
        endpoint,
        access_key,
        secret_key,
        session_token: non_empty(c.sessiontoken),
        root: c
            .rootdirectory
            .unwrap_or_default()
            .trim_matches('/')
            .to_owned(),
        secure: c.secure.unwrap_or(true),
        skip_verify: c.skipverify.unwrap_or(false),
        chunk_size: usize::try_from(chunk).unwrap_or(usize::MAX),
        encrypt: c.encrypt.unwrap_or(false),
        key_id: non_empty(c.keyid),
        storage_class,
        user_agent: non_empty(c.useragent),
    };
    Ok((options, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn reads_registry_2_keys() {
        let (o, w) = parse(&yaml(
            "accesskey: AK\nsecretkey: SK\nregion: eu-west-1\nregionendpoint: minio:9000\nbucket: images\nrootdirectory: /reg/\nsecure: 'false'\nchunksize: '6291456'\nencrypt: true\nkeyid: k1\nstorageclass: REDUCED_REDUNDANCY\nv4auth: true",
        ))
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.bucket, "images");
        assert_eq!(o.root, "reg");
        assert_eq!(o.endpoint_url().as_deref(), Some("http://minio:9000"));
        assert!(o.force_path_style, "an endpoint defaults to path style");
        assert_eq!(o.chunk_size, 6 << 20);
        assert_eq!((o.encrypt, o.key_id.as_deref()), (true, Some("k1")));
        assert_eq!(o.storage_class.as_deref(), Some("REDUCED_REDUNDANCY"));
        let shown = format!("{o:?}");
        assert!(shown.contains("AK") && !shown.contains("SK"), "{shown}");
    }

    #[test]
    fn aws_defaults_and_the_credential_chain() {
        let (o, _) = parse(&yaml("bucket: b\nregion: us-west-2")).unwrap();
        assert_eq!((&o.access_key, &o.secret_key), (&None, &None));
        assert!(!o.force_path_style);
        assert!(o.secure);
        assert_eq!(o.chunk_size, 10 << 20);
        assert_eq!(o.endpoint_url(), None);
        let (o, _) = parse(&yaml("bucket: b\nregionendpoint: https://s3.example:9000/")).unwrap();
        assert_eq!(o.endpoint_url().as_deref(), Some("https://s3.example:9000"));
    }

    #[test]
    fn refuses_what_cannot_work_and_warns_about_the_rest() {
        for (bad, says) in [
            ("region: x", "bucket is required"),
            ("bucket: b\naccesskey: a", "both accesskey and secretkey"),
            ("bucket: b\nchunksize: 1000", "chunksize must be between"),
            ("bucket: b\nsecure: maybe", "expected true or false"),
        ] {
            let err = parse(&yaml(bad)).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let (_, w) = parse(&yaml(
            "bucket: b\nobjectacl: public-read\nv4auth: false\nmultipartcopychunksize: 33554432",
        ))
        .unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
    }
}
