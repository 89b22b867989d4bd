//! Making and reading OCI image layouts for client tests: deterministic pseudo-random layers
//! (gzip'd tar), configs with `rootfs.diff_ids`, OCI manifests and image indexes, plus helpers
//! to compare what a client pulled back with what was pushed, blob by blob.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A fast deterministic PRNG (xorshift64*), enough to make incompressible test data.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    XorShift::new(seed).fill(&mut buf);
    buf
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// A seed from a string, so images with different tags get different content.
pub fn seed_of(text: &str) -> u64 {
    u64::from_le_bytes(Sha256::digest(text.as_bytes())[..8].try_into().unwrap())
}

/// What was written for one image manifest.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
    pub layer_sizes: Vec<u64>,
    /// sha256 of each uncompressed layer tar, in order (the config's `rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
}

/// What was written for an image index over several platform manifests.
#[derive(Debug, Clone)]
pub struct IndexInfo {
    pub index_digest: String,
    pub index: Vec<u8>,
    pub images: Vec<ImageInfo>,
}

/// Writes (or adds to) an OCI image layout at `dir`: one image tagged `tag` whose layers hold
/// `layers[i]` bytes of pseudo-random data each (seeded from `tag`). Returns the digests.
pub fn write_oci_layout(dir: &Path, tag: &str, layers: &[usize]) -> ImageInfo {
    let image = write_image(dir, tag, "linux", "amd64", layers);
    add_to_index(
        dir,
        tag,
        OCI_MANIFEST,
        &image.manifest_digest,
        image.manifest.len(),
    );
    image
}

/// Writes an image index tagged `tag` over a linux/amd64 and a linux/arm64 image (different
/// content each), for `skopeo copy --all`.
pub fn write_oci_index_layout(dir: &Path, tag: &str, layers: &[usize]) -> IndexInfo {
    let platforms = [("linux", "amd64"), ("linux", "arm64")];
    let images: Vec<ImageInfo> = platforms
        .iter()
        .map(|(os, arch)| write_image(dir, &format!("{tag}-{arch}"), os, arch, layers))
        .collect();
    let manifests: Vec<Value> = images
        .iter()
        .zip(platforms)
        .map(|(image, (os, arch))| {
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": image.manifest_digest,
                "size": image.manifest.len(),
                "platform": {"os": os, "architecture": arch},
            })
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let index = serde_json::to_vec(&index).unwrap();
    let index_digest = write_blob(dir, &index);
    add_to_index(dir, tag, OCI_INDEX, &index_digest, index.len());
    IndexInfo {
        index_digest,
        index,
        images,
    }
}

fn write_image(dir: &Path, seed_text: &str, os: &str, arch: &str, layers: &[usize]) -> ImageInfo {
    let mut layer_digests = Vec::new();
    let mut layer_sizes = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, &size) in layers.iter().enumerate() {
        let data = random_bytes(seed_of(&format!("{seed_text}/{i}")), size);
        let tar = tar_with_file(&format!("layer{i}.bin"), &data);
        diff_ids.push(digest_of(&tar));
        let gz = gzip(&tar);
        layer_sizes.push(gz.len() as u64);
        layer_digests.push(write_blob(dir, &gz));
    }
    let config = json!({
        "architecture": arch,
        "os": os,
        "config": {"Env": ["PATH=/usr/bin"], "Labels": {"dockyard.test": seed_text}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created_by": "dockyard test"})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = write_blob(dir, &config);
    let layer_descriptors: Vec<Value> = layer_digests
        .iter()
        .zip(&layer_sizes)
        .map(|(digest, size)| json!({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layer_descriptors,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = write_blob(dir, &manifest);
    ImageInfo {
        manifest_digest,
        manifest,
        config_digest,
        layer_digests,
        layer_sizes,
        diff_ids,
    }
}

/// A deterministic tar holding one regular file.
fn tar_with_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, name, data).unwrap();
    builder.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Stores `bytes` under `blobs/sha256/<hex>` and returns its digest.
pub fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let hex = sha256_hex(bytes);
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

fn add_to_index(dir: &Path, tag: &str, media_type: &str, digest: &str, size: usize) {
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let path = dir.join("index.json");
    let mut index: Value = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(_) => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
    };
    let manifests = index["manifests"].as_array_mut().unwrap();
    manifests.retain(|m| ref_name(m) != Some(tag));
    manifests.push(json!({
        "mediaType": media_type,
        "digest": digest,
        "size": size,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

fn ref_name(descriptor: &Value) -> Option<&str> {
    descriptor["annotations"]["org.opencontainers.image.ref.name"].as_str()
}

/// The digest `index.json` of the layout at `dir` records for `tag`.
pub fn layout_ref(dir: &Path, tag: &str) -> String {
    let bytes = fs::read(dir.join("index.json")).unwrap();
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| ref_name(m) == Some(tag))
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("no tag {tag} in {}", dir.display()))
        .to_string()
}

/// The bytes of blob `digest` in the layout at `dir` (panics when missing).
pub fn layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let path = dir.join("blobs/sha256").join(hex);
    fs::read(&path).unwrap_or_else(|e| panic!("blob {digest} missing in {}: {e}", dir.display()))
}

/// Every blob reachable from `digest` in the layout (the manifest or index itself, child
/// manifests, configs, layers), with its bytes. Each blob's bytes are checked against its
/// digest on the way.
pub fn reachable_blobs(dir: &Path, digest: &str) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![digest.to_string()];
    while let Some(digest) = pending.pop() {
        if found.contains_key(&digest) {
            continue;
        }
        let bytes = layout_blob(dir, &digest);
        assert_eq!(
            digest_of(&bytes),
            digest,
            "blob content does not match its name"
        );
        if let Ok(doc) = serde_json::from_slice::<Value>(&bytes) {
            pending.extend(referenced_digests(&doc));
        }
        found.insert(digest, bytes);
    }
    found
}

/// Digests a manifest or index refers to: `config`, `layers[]`, `manifests[]`, `subject`.
pub fn referenced_digests(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["config", "subject"] {
        if let Some(d) = doc[key]["digest"].as_str() {
            out.push(d.to_string());
        }
    }
    for key in ["layers", "manifests", "blobs"] {
        for desc in doc[key].as_array().into_iter().flatten() {
            if let Some(d) = desc["digest"].as_str() {
                out.push(d.to_string());
            }
        }
    }
    out
}

/// Asserts the image `digest` is in both layouts with the same set of identical blobs.
pub fn assert_same_image(original: &Path, pulled: &Path, digest: &str) {
    let want = reachable_blobs(original, digest);
    let got = reachable_blobs(pulled, digest);
    let want_names: Vec<&String> = want.keys().collect();
    let got_names: Vec<&String> = got.keys().collect();
    assert_eq!(want_names, got_names, "pulled image has other blobs");
    for (digest, bytes) in &want {
        assert!(got[digest] == *bytes, "blob {digest} differs after pull");
    }
}
