//! The on-disk layout, identical to distribution's (registry:2), so that an existing
//! `/var/lib/registry` is served as it is and registry:2 can read what Dockyard wrote.
//! This is the only module that builds storage keys.
//!
//! ```text
//! /docker/registry/v2/
//! ├── blobs/<alg>/<first two hex>/<hex>/data               blob and manifest bytes
//! └── repositories/<name>/
//!     ├── _layers/<alg>/<hex>/link                          blob is linked into the repository
//!     ├── _manifests/revisions/<alg>/<hex>/link             manifest is in the repository
//!     ├── _manifests/revisions/<alg>/<hex>/mediatype        Dockyard: type pushed as, if not in the bytes
//!     ├── _manifests/tags/<tag>/current/link                tag points at a manifest
//!     ├── _manifests/tags/<tag>/index/<alg>/<hex>/link      every manifest the tag has pointed at
//!     ├── _uploads/<id>/data, startedat, state              upload session in progress
//!     └── _referrers/<alg>/<subject hex>/<alg>/<hex>/link   Dockyard: manifests whose subject is <subject>
//! ```
//! distribution skips `_`-prefixed directories it does not know, so `_referrers` is safe.

use crate::oci::{Algorithm, Digest, RepoName, Tag};

const ROOT: &str = "/docker/registry/v2";

pub fn repositories_root() -> String {
    format!("{ROOT}/repositories")
}

/// A directory under `repositories/`; `""` is the root itself. For walking the tree.
pub fn repository_path(prefix: &str) -> String {
    if prefix.is_empty() {
        repositories_root()
    } else {
        format!("{ROOT}/repositories/{prefix}")
    }
}

pub fn blob_data(d: &Digest) -> String {
    format!(
        "{ROOT}/blobs/{}/{}/{}/data",
        d.algorithm().as_str(),
        &d.hex()[..2],
        d.hex()
    )
}

pub fn repository(name: &RepoName) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// The directory whose presence marks a repository.
pub fn manifests_dir(name: &RepoName) -> String {
    format!("{ROOT}/repositories/{name}/_manifests")
}

/// The directory whose presence marks a repository that has blobs linked.
pub fn layers_dir(name: &RepoName) -> String {
    format!("{ROOT}/repositories/{name}/_layers")
}

pub fn layer_link(name: &RepoName, d: &Digest) -> String {
    format!(
        "{ROOT}/repositories/{name}/_layers/{}/{}/link",
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn revision_link(name: &RepoName, d: &Digest) -> String {
    format!(
        "{}/revisions/{}/{}/link",
        manifests_dir(name),
        d.algorithm().as_str(),
        d.hex()
    )
}

/// Dockyard: the media type a manifest was pushed as, kept only when its bytes have no
/// `mediaType` field that says so (distribution reads only `link` files here).
pub fn manifest_media_type(name: &RepoName, d: &Digest) -> String {
    format!(
        "{}/revisions/{}/{}/mediatype",
        manifests_dir(name),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn tags_dir(name: &RepoName) -> String {
    format!("{}/tags", manifests_dir(name))
}

pub fn tag_dir(name: &RepoName, tag: &Tag) -> String {
    format!("{}/tags/{tag}", manifests_dir(name))
}

pub fn tag_current_link(name: &RepoName, tag: &Tag) -> String {
    format!("{}/current/link", tag_dir(name, tag))
}

pub fn tag_index_link(name: &RepoName, tag: &Tag, d: &Digest) -> String {
    format!(
        "{}/index/{}/{}/link",
        tag_dir(name, tag),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub fn uploads_dir(name: &RepoName) -> String {
    format!("{ROOT}/repositories/{name}/_uploads")
}

pub fn upload_dir(name: &RepoName, id: &str) -> String {
    format!("{}/{id}", uploads_dir(name))
}

pub fn upload_data(name: &RepoName, id: &str) -> String {
    format!("{}/data", upload_dir(name, id))
}

pub fn upload_started_at(name: &RepoName, id: &str) -> String {
    format!("{}/startedat", upload_dir(name, id))
}

/// Dockyard: a session's offset, hash state and the driver's resume point, so any replica
/// continues it (distribution keeps `hashstates/` instead and skips this file).
pub fn upload_state(name: &RepoName, id: &str) -> String {
    format!("{}/state", upload_dir(name, id))
}

/// Directory of the per-algorithm referrer links of `subject`.
pub fn referrers_dir(name: &RepoName, subject: &Digest) -> String {
    format!(
        "{ROOT}/repositories/{name}/_referrers/{}/{}",
        subject.algorithm().as_str(),
        subject.hex()
    )
}

pub fn referrer_link(name: &RepoName, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}/{}/{}/link",
        referrers_dir(name, subject),
        referrer.algorithm().as_str(),
        referrer.hex()
    )
}

/// Where every blob's bytes are (walked by garbage collection).
pub fn blobs_root() -> String {
    format!("{ROOT}/blobs")
}

/// The digest whose bytes are at `path`, if `path` is a [`blob_data`] path.
pub fn blob_of_data_path(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix(ROOT)?.strip_prefix("/blobs/")?;
    let mut parts = rest.split('/');
    let (alg, two, hex, data) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if data != "data" || parts.next().is_some() || !hex.starts_with(two) {
        return None;
    }
    let alg = match alg {
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        _ => return None,
    };
    Digest::from_parts(alg, hex).ok()
}

/// The digest whose blob directory `path` is in (its data, or anything beside it).
pub fn blob_of_path(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix(ROOT)?.strip_prefix("/blobs/")?;
    let mut parts = rest.splitn(4, '/');
    let (alg, two, hex) = (parts.next()?, parts.next()?, parts.next()?);
    blob_of_data_path(&format!("{ROOT}/blobs/{alg}/{two}/{hex}/data"))
}

/// Dockyard: when a manifest push last relied on a blob that was already stored, so that
/// garbage collection running at that moment keeps it (distribution ignores the file).
pub fn blob_last_used(d: &Digest) -> String {
    format!("{}/lastused", blob_dir(d))
}

/// Dockyard: the lock that lets one garbage collector run at a time, outside
/// distribution's tree.
pub fn gc_lock() -> String {
    "/dockyard/gc.lock".to_owned()
}

/// Dockyard: the name index's markers, one empty object per repository (its name with `/`
/// as `!`, which names cannot contain and object stores keep as it is), so replicas learn
/// of each other's repositories with one listing; outside distribution's tree.
pub fn name_markers() -> String {
    "/dockyard/names".to_owned()
}

/// Dockyard: the marker of one repository in [`name_markers`].
pub fn name_marker(name: &str) -> String {
    format!("{}/{}", name_markers(), name.replace('/', "!"))
}

/// The repository a marker's file name stands for.
pub fn name_of_marker(file: &str) -> String {
    file.replace('!', "/")
}

/// Dockyard: present once a full scan has written a marker for every repository.
pub fn name_markers_complete() -> String {
    "/dockyard/names.complete".to_owned()
}

/// The directory of a blob's bytes (removed whole when the blob goes).
pub fn blob_dir(d: &Digest) -> String {
    let data = blob_data(d);
    data.strip_suffix("/data").unwrap_or(&data).to_owned()
}

/// Directory of the layer links of one algorithm, e.g. `.../_layers/sha256`.
pub fn layer_links_dir(name: &RepoName, alg: Algorithm) -> String {
    format!("{}/{}", layers_dir(name), alg.as_str())
}

/// Directory holding links of one algorithm, e.g. `.../revisions/sha256`.
pub fn revisions_dir(name: &RepoName, alg: Algorithm) -> String {
    format!("{}/revisions/{}", manifests_dir(name), alg.as_str())
}

/// The body of a link file, as distribution writes it.
pub fn link_body(d: &Digest) -> bytes::Bytes {
    bytes::Bytes::from(d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_distribution_paths() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        let n: RepoName = "library/ubuntu".parse().unwrap();
        let t: Tag = "latest".parse().unwrap();
        assert_eq!(
            blob_data(&d),
            "/docker/registry/v2/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/data"
        );
        assert_eq!(
            layer_link(&n, &d),
            format!(
                "/docker/registry/v2/repositories/library/ubuntu/_layers/sha256/{}/link",
                d.hex()
            )
        );
        assert_eq!(
            tag_current_link(&n, &t),
            "/docker/registry/v2/repositories/library/ubuntu/_manifests/tags/latest/current/link"
        );
        assert_eq!(
            tag_index_link(&n, &t, &d),
            format!(
                "/docker/registry/v2/repositories/library/ubuntu/_manifests/tags/latest/index/sha256/{}/link",
                d.hex()
            )
        );
        assert_eq!(
            revision_link(&n, &d),
            format!(
                "/docker/registry/v2/repositories/library/ubuntu/_manifests/revisions/sha256/{}/link",
                d.hex()
            )
        );
        assert_eq!(
            upload_data(&n, "u1"),
            "/docker/registry/v2/repositories/library/ubuntu/_uploads/u1/data"
        );
        assert_eq!(&link_body(&d)[..], d.to_string().as_bytes());
        assert_eq!(blob_of_data_path(&blob_data(&d)), Some(d.clone()));
        assert_eq!(blob_of_data_path(&blob_last_used(&d)), None);
        assert_eq!(blob_of_path(&blob_last_used(&d)), Some(d.clone()));
        assert_eq!(
            blob_of_path(&format!("{}/data.dockyard-upload/multipart", blob_dir(&d))),
            Some(d.clone())
        );
        assert_eq!(blob_of_path("/docker/registry/v2/blobs/sha256/e3"), None);
        assert_eq!(
            blob_of_data_path("/docker/registry/v2/blobs/sha256/00/e3b0/data"),
            None
        );
    }
}
