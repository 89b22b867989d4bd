//! Reading manifests and image configs for display: lenient (any media type, unknown fields,
//! artifacts without an image config), so that whatever is stored renders as a page rather
//! than an error. Pure: bytes in, [`Detail`] and friends out.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::pages::{ConfigView, Detail, HistoryRow, LayerRow, PlatformRow, human_size, timestamp};

/// The media types of image configs (anything else is an artifact's config).
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The largest image config read for display.
pub(crate) const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A manifest as far as the UI reads it: an image (config and layers), an index
/// (manifests), or neither.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawManifest {
    pub(crate) artifact_type: Option<String>,
    pub(crate) config: Option<RawDescriptor>,
    pub(crate) layers: Option<Vec<RawDescriptor>>,
    pub(crate) manifests: Option<Vec<RawDescriptor>>,
    pub(crate) subject: Option<RawDescriptor>,
    pub(crate) annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDescriptor {
    #[serde(default)]
    pub(crate) media_type: String,
    #[serde(default)]
    pub(crate) digest: String,
    #[serde(default)]
    pub(crate) size: u64,
    pub(crate) platform: Option<RawPlatform>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RawPlatform {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    pub(crate) variant: Option<String>,
}

impl RawPlatform {
    /// `os/architecture[/variant]`, as `docker` names platforms.
    pub(crate) fn text(&self) -> String {
        let mut s = format!("{}/{}", self.os, self.architecture);
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            s.push('/');
            s.push_str(v);
        }
        s
    }

    /// Build attestations sit in indexes as `unknown/unknown`: not a platform to run.
    pub(crate) fn is_runnable(&self) -> bool {
        self.os != "unknown" && self.architecture != "unknown"
    }
}

/// The manifest's fields, if it is a JSON object.
pub(crate) fn read_manifest(bytes: &[u8]) -> Option<RawManifest> {
    serde_json::from_slice(bytes).ok()
}

pub(crate) fn is_image_config(media_type: &str) -> bool {
    IMAGE_CONFIGS.contains(&media_type)
}

#[derive(Debug, Default, Deserialize)]
struct ImageConfig {
    created: Option<String>,
    architecture: Option<String>,
    os: Option<String>,
    variant: Option<String>,
    config: Option<ContainerConfig>,
    history: Option<Vec<History>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct History {
    created: Option<String>,
    created_by: Option<String>,
    comment: Option<String>,
    empty_layer: Option<bool>,
}

/// The creation time an image config records.
pub(crate) fn config_created(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Created {
        created: Option<String>,
    }
    known_time(serde_json::from_slice::<Created>(bytes).ok()?.created)
}

/// A recorded time, unless it is Go's zero time (tools write it for "not set").
fn known_time(t: Option<String>) -> Option<String> {
    t.filter(|t| !t.is_empty() && !t.starts_with("0001-01-01"))
}

/// The platform an image config names, `os/architecture[/variant]`.
pub(crate) fn config_platform(bytes: &[u8]) -> Option<String> {
    let c: ImageConfig = serde_json::from_slice(bytes).ok()?;
    let p = RawPlatform {
        architecture: c.architecture.filter(|a| !a.is_empty())?,
        os: c.os.filter(|o| !o.is_empty())?,
        variant: c.variant,
    };
    Some(p.text())
}

/// An image config as shown; `None` when it is not one.
pub(crate) fn config_view(bytes: &[u8]) -> Option<ConfigView> {
    let c: ImageConfig = serde_json::from_slice(bytes).ok()?;
    let platform = config_platform(bytes);
    let run = c.config.unwrap_or_default();
    let list = |v: Option<Vec<String>>| match v {
        Some(v) if !v.is_empty() => serde_json::to_string(&v).unwrap_or_default(),
        _ => "—".to_owned(),
    };
    Some(ConfigView {
        platform,
        created: known_time(c.created).as_deref().map(timestamp),
        entrypoint: list(run.entrypoint),
        cmd: list(run.cmd),
        working_dir: run.working_dir.filter(|w| !w.is_empty()),
        user: run.user.filter(|u| !u.is_empty()),
        env: run.env.unwrap_or_default(),
        labels: run.labels.unwrap_or_default().into_iter().collect(),
        history: c
            .history
            .unwrap_or_default()
            .into_iter()
            .map(|h| HistoryRow {
                created_by: h
                    .created_by
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "(no command recorded)".to_owned()),
                created: known_time(h.created).as_deref().map(|t| timestamp(t).human),
                comment: h.comment.filter(|c| !c.is_empty()),
                empty_layer: h.empty_layer.unwrap_or(false),
            })
            .collect(),
    })
}

/// The config blob's state when a page is built.
pub(crate) enum Config<'a> {
    /// Not an image (an index, or a manifest without a config).
    None,
    /// Its bytes.
    Read(&'a [u8]),
    /// Not stored here (a mirror that has not fetched it) or too large.
    Unavailable,
}

/// Everything a manifest page shows but referrers. `sizes` holds the total size of child
/// manifests by digest, and `total` this manifest's as shown (see `summary`).
pub(crate) fn detail(
    digest: &str,
    media_type: &str,
    bytes: &[u8],
    config: Config<'_>,
    total: Option<String>,
    sizes: &HashMap<String, u64>,
) -> Detail {
    let raw = read_manifest(bytes);
    let mut d = Detail {
        digest: digest.to_owned(),
        media_type: media_type.to_owned(),
        total_size: total.unwrap_or_else(|| "—".to_owned()),
        ..Detail::default()
    };
    let Some(raw) = raw else {
        d.note = Some(format!(
            "This manifest ({} bytes) is not JSON this page can read.",
            bytes.len()
        ));
        return d;
    };
    d.subject = raw.subject.as_ref().map(|s| s.digest.clone());
    d.annotations = raw
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let config_type = raw.config.as_ref().map(|c| c.media_type.clone());
    d.artifact_type = raw
        .artifact_type
        .clone()
        .or_else(|| config_type.clone().filter(|t| !is_image_config(t)));
    if let Some(children) = &raw.manifests {
        d.platforms = children
            .iter()
            .map(|c| PlatformRow {
                platform: c
                    .platform
                    .as_ref()
                    .map_or_else(|| "—".to_owned(), RawPlatform::text),
                digest: c.digest.clone(),
                bytes: sizes.get(&c.digest).copied().unwrap_or(c.size),
                size: human_size(sizes.get(&c.digest).copied().unwrap_or(c.size)),
            })
            .collect();
    }
    let artifact = config_type.as_deref().is_some_and(|t| !is_image_config(t));
    d.layers_title = if artifact { "Blobs" } else { "Layers" }.to_owned();
    d.layers = raw
        .layers
        .iter()
        .flatten()
        .map(|l| LayerRow {
            digest: l.digest.clone(),
            bytes: l.size,
            size: human_size(l.size),
            media_type: l.media_type.clone(),
        })
        .collect();
    match (config, config_type) {
        (Config::Read(bytes), Some(t)) if is_image_config(&t) => {
            d.config = config_view(bytes);
            if d.config.is_none() {
                d.note = Some("The image configuration cannot be read.".to_owned());
            }
        }
        (Config::Unavailable, Some(t)) if is_image_config(&t) => {
            d.note = Some("The image configuration is not stored here.".to_owned());
        }
        (_, Some(t)) if !is_image_config(&t) => {
            d.note = Some(format!("An artifact: its configuration is of type {t}."));
        }
        _ if raw.manifests.is_none() && raw.config.is_none() => {
            d.note = Some("Neither an image nor an index: no layers or platforms to show.".into());
        }
        _ => {}
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"created":"2024-05-01T12:34:56Z","architecture":"arm64","os":"linux","variant":"v8",
        "config":{"Entrypoint":["/bin/sh","-c"],"Cmd":null,"Env":["PATH=/bin"],"Labels":{"b":"2","a":"<script>alert(1)</script>"},"WorkingDir":"/app"},
        "history":[{"created":"2024-05-01T12:00:00Z","created_by":"ADD rootfs /"},{"created_by":"ENV X=1","empty_layer":true}]}"#;

    fn image(config_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"{config_type}","digest":"sha256:c","size":10}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l","size":2500}}],
            "annotations":{{"org.opencontainers.image.source":"https://x"}}}}"#
        )
    }

    #[test]
    fn image_configs_show_entrypoint_env_labels_and_history() {
        let c = config_view(CONFIG.as_bytes()).unwrap();
        assert_eq!(c.platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(c.entrypoint, r#"["/bin/sh","-c"]"#);
        assert_eq!(c.cmd, "—");
        assert_eq!(c.env, ["PATH=/bin"]);
        assert_eq!(
            c.labels[0],
            ("a".into(), "<script>alert(1)</script>".into())
        );
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(c.history.len(), 2);
        assert!(c.history[1].empty_layer);
        assert_eq!(c.created.unwrap().human, "2024-05-01 12:34 UTC");
        assert_eq!(
            config_created(CONFIG.as_bytes()).as_deref(),
            Some("2024-05-01T12:34:56Z")
        );
        // Go's zero time and empty platforms (as crane writes them) mean "not recorded".
        let blank = r#"{"created":"0001-01-01T00:00:00Z","architecture":"","os":"","config":{}}"#;
        assert_eq!(config_created(blank.as_bytes()), None);
        assert_eq!(config_platform(blank.as_bytes()), None);
        assert_eq!(config_view(blank.as_bytes()).unwrap().created, None);
    }

    #[test]
    fn an_image_page_has_config_layers_and_annotations() {
        let m = image(IMAGE_CONFIGS[0]);
        let d = detail(
            "sha256:m",
            "application/vnd.oci.image.manifest.v1+json",
            m.as_bytes(),
            Config::Read(CONFIG.as_bytes()),
            Some(human_size(2510)),
            &HashMap::new(),
        );
        assert!(d.config.is_some());
        assert_eq!(d.total_size, "2.5 kB");
        assert_eq!(d.layers_title, "Layers");
        assert_eq!(d.layers[0].size, "2.5 kB");
        assert_eq!(d.annotations[0].0, "org.opencontainers.image.source");
        assert_eq!(d.artifact_type, None);
        assert_eq!(d.note, None);
    }

    #[test]
    fn artifacts_and_unreadable_manifests_render_without_a_config() {
        let m = image("application/vnd.dev.cosign.artifact.sig.v1+json");
        let d = detail(
            "sha256:m",
            "x",
            m.as_bytes(),
            Config::Read(b"{}"),
            None,
            &HashMap::new(),
        );
        assert!(d.config.is_none());
        assert_eq!(
            d.artifact_type.as_deref(),
            Some("application/vnd.dev.cosign.artifact.sig.v1+json")
        );
        assert_eq!(d.layers_title, "Blobs");
        assert!(d.note.unwrap().contains("artifact"));
        let d = detail(
            "sha256:m",
            "application/x-unknown",
            b"\x00\x01",
            Config::None,
            None,
            &HashMap::new(),
        );
        assert!(d.note.unwrap().contains("not JSON"));
        assert_eq!(d.total_size, "—");
        let m = image(IMAGE_CONFIGS[1]);
        let d = detail(
            "sha256:m",
            "x",
            m.as_bytes(),
            Config::Unavailable,
            None,
            &HashMap::new(),
        );
        assert!(d.note.unwrap().contains("not stored here"));
    }

    #[test]
    fn indexes_list_platforms_with_child_sizes() {
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":500,"platform":{"architecture":"amd64","os":"linux"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":500,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:c","size":500,"platform":{"architecture":"unknown","os":"unknown"}}]}"#;
        let sizes = HashMap::from([("sha256:a".to_owned(), 3_000_000)]);
        let d = detail(
            "sha256:i",
            "x",
            index.as_bytes(),
            Config::None,
            Some(human_size(1)),
            &sizes,
        );
        let platforms: Vec<_> = d.platforms.iter().map(|p| p.platform.as_str()).collect();
        assert_eq!(
            platforms,
            ["linux/amd64", "linux/arm64/v8", "unknown/unknown"]
        );
        assert_eq!(d.platforms[0].size, "3.0 MB");
        assert_eq!(d.platforms[1].bytes, 500);
        assert!(d.layers.is_empty());
        assert_eq!(d.note, None);
    }
}
