//! Manifest media types and parsing: which kind of manifest a payload is, and which
//! blobs, child manifests and subject it references. Parsing uses `oci-spec` types;
//! Docker schema 2 manifests and manifest lists share their shape.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor as SpecDescriptor, ImageIndex, ImageManifest};

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for {media_type}: {reason}")]
    Invalid { media_type: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
}

/// Image manifests reference blobs; indexes reference other manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

/// A content descriptor with a digest this registry understands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What the registry needs to know about a manifest to store and index it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    pub media_type: String,
    pub kind: ManifestKind,
    /// Blobs that must exist in the repository (config and non-foreign layers).
    pub blobs: Vec<Descriptor>,
    /// Manifests that must exist in the repository (index entries).
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for image manifests without one, the config media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ParsedManifest {
    /// The digests it references: blobs, then child manifests.
    pub fn references(&self) -> Vec<Digest> {
        self.blobs
            .iter()
            .chain(&self.manifests)
            .map(|d| d.digest.clone())
            .collect()
    }
}

/// Strips parameters (`; charset=...`) and whitespace from a Content-Type value.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// True for the media types this registry stores as manifests.
pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST
    )
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
    config: Option<serde::de::IgnoredAny>,
}

/// The `mediaType` field of a manifest, if it has one.
pub fn declared_media_type(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}

/// The media type of a manifest read from its own content: the `mediaType` field, else
/// the OCI type its fields imply.
pub fn detect_media_type(bytes: &[u8]) -> Option<String> {
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = probe.media_type {
        return Some(mt);
    }
    if probe.manifests.is_some() {
        Some(OCI_INDEX.into())
    } else if probe.config.is_some() {
        Some(OCI_MANIFEST.into())
    } else {
        None
    }
}

/// Parses a pushed manifest. `content_type` is the request's Content-Type header.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid {
        media_type: content_type.map(essence).unwrap_or("manifest").to_owned(),
        reason: e.to_string(),
    })?;
    let header = content_type.map(essence).filter(|ct| !ct.is_empty());
    if probe.schema_version.as_ref().and_then(|v| v.as_u64()) == Some(1)
        || header.is_some_and(|h| DOCKER_SCHEMA1.contains(&h))
    {
        return Err(ManifestError::Unsupported(
            "Docker schema 1 manifests are not supported; push the image as Docker schema 2 or OCI"
                .into(),
        ));
    }
    let media_type = match (probe.media_type.as_deref(), header) {
        (Some(field), Some(h)) if is_manifest_type(h) && field != h => {
            return Err(ManifestError::Unsupported(format!(
                "manifest mediaType {field:?} does not match Content-Type {h:?}"
            )));
        }
        (Some(field), _) => field.to_owned(),
        (None, Some(h)) if is_manifest_type(h) => h.to_owned(),
        (None, _) => detect_media_type(bytes).ok_or_else(|| {
            ManifestError::Unsupported(
                "cannot tell the manifest type: no mediaType, config or manifests field".into(),
            )
        })?,
    };
    let invalid = |e: serde_json::Error| ManifestError::Invalid {
        media_type: media_type.clone(),
        reason: e.to_string(),
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifest = serde_json::from_slice(bytes).map_err(invalid)?;
            check_schema_version(m.schema_version())?;
            let config = descriptor(m.config())?;
            let mut blobs = vec![config.clone()];
            for layer in m.layers() {
                // Foreign (non-distributable) layers with URLs live elsewhere.
                if layer.urls().as_ref().is_none_or(|u| u.is_empty()) {
                    blobs.push(descriptor(layer)?);
                }
            }
            Ok(ParsedManifest {
                kind: ManifestKind::Image,
                blobs,
                manifests: vec![],
                subject: m.subject().as_ref().map(descriptor).transpose()?,
                artifact_type: m
                    .artifact_type()
                    .as_ref()
                    .map(|t| t.to_string())
                    .or(Some(config.media_type)),
                annotations: sorted(m.annotations().as_ref()),
                media_type,
            })
        }
        OCI_INDEX | DOCKER_LIST => {
            let i: ImageIndex = serde_json::from_slice(bytes).map_err(invalid)?;
            check_schema_version(i.schema_version())?;
            Ok(ParsedManifest {
                kind: ManifestKind::Index,
                blobs: vec![],
                manifests: i
                    .manifests()
                    .iter()
                    .map(descriptor)
                    .collect::<Result<_, _>>()?,
                subject: i.subject().as_ref().map(descriptor).transpose()?,
                artifact_type: i.artifact_type().as_ref().map(|t| t.to_string()),
                annotations: sorted(i.annotations().as_ref()),
                media_type,
            })
        }
        other => Err(ManifestError::Unsupported(format!(
            "unsupported manifest media type {other:?} (supported: {OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST})"
        ))),
    }
}

fn check_schema_version(v: u32) -> Result<(), ManifestError> {
    if v == 2 {
        Ok(())
    } else {
        Err(ManifestError::Unsupported(format!(
            "schemaVersion must be 2, got {v}"
        )))
    }
}

fn sorted(
    map: Option<&std::collections::HashMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn descriptor(d: &SpecDescriptor) -> Result<Descriptor, ManifestError> {
    let digest: Digest = d.digest().to_string().parse().map_err(|e| {
        ManifestError::Unsupported(format!("descriptor digest {}: {e}", d.digest()))
    })?;
    Ok(Descriptor {
        media_type: d.media_type().to_string(),
        digest,
        size: d.size(),
        artifact_type: d.artifact_type().as_ref().map(|t| t.to_string()),
        annotations: sorted(d.annotations().as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const D2: &str = "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

    fn image(media_type: Option<&str>, extra: &str) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":0}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":1}},
                      {{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D2}","size":1,"urls":["https://x"]}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest_references() {
        let m = parse(image(Some(OCI_MANIFEST), "").as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.blobs.len(), 2, "foreign layer is not required locally");
        assert_eq!(m.blobs[0].digest.to_string(), D1);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(m.subject.is_none());
    }

    #[test]
    fn media_type_from_header_or_shape() {
        let body = image(None, "");
        assert_eq!(
            parse(body.as_bytes(), Some(DOCKER_MANIFEST))
                .unwrap()
                .media_type,
            DOCKER_MANIFEST
        );
        assert_eq!(
            parse(body.as_bytes(), Some("application/json"))
                .unwrap()
                .media_type,
            OCI_MANIFEST
        );
        assert_eq!(
            detect_media_type(body.as_bytes()).as_deref(),
            Some(OCI_MANIFEST)
        );
    }

    #[test]
    fn subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/vnd.example+json","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":7}},"annotations":{{"b":"2","a":"1"}}"#
        );
        let m = parse(image(Some(OCI_MANIFEST), &extra).as_bytes(), None).unwrap();
        assert_eq!(m.subject.unwrap().digest.to_string(), D2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example+json")
        );
        assert_eq!(
            m.annotations.unwrap().keys().cloned().collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn index_references_manifests() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":3,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let m = parse(body.as_bytes(), Some(DOCKER_LIST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
    }

    #[test]
    fn rejects_bad_manifests() {
        assert!(matches!(
            parse(b"{not json", Some(OCI_MANIFEST)),
            Err(ManifestError::Invalid { .. })
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":1,"name":"x"}"#, None),
            Err(ManifestError::Unsupported(_))
        ));
        let mismatch = image(Some(DOCKER_MANIFEST), "");
        assert!(matches!(
            parse(mismatch.as_bytes(), Some(OCI_MANIFEST)),
            Err(ManifestError::Unsupported(_))
        ));
        let no_config =
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#);
        assert!(matches!(
            parse(no_config.as_bytes(), None),
            Err(ManifestError::Invalid { .. })
        ));
        let bad_digest = image(Some(OCI_MANIFEST), "").replace(D1, "sha256:1234");
        assert!(parse(bad_digest.as_bytes(), None).is_err());
        assert!(matches!(
            parse(br#"{"schemaVersion":2}"#, None),
            Err(ManifestError::Unsupported(_))
        ));
    }
}
