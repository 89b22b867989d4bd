//! The seam between the HTTP API and the registry's content: the [`Store`] trait that
//! `registry::AppState` holds. [`Content`] implements it over a storage driver; the
//! pull-through cache implements it as a decorator around a `Content`, so the handlers have
//! no proxy branches. Every method names the repository, so a decorator can route by it.

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::{BlobWant, ChunkRange, Content, Manifest, OpenedBlob, PutManifest, Result};
use crate::oci::manifest::Descriptor;
use crate::oci::{Digest, Reference, RepoName, Tag};

/// A request body as a store consumes it.
pub type Body = BoxStream<'static, io::Result<Bytes>>;

/// What the HTTP API reads and writes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The name this store knows a requested repository by, given containerd's `?ns=`
    /// (the registry host the client asked for). A local registry ignores `ns`; a mirror
    /// routes by it and refuses hosts it does not mirror.
    fn local_name(&self, name: RepoName, _ns: Option<&str>) -> Result<RepoName> {
        Ok(name)
    }

    /// A blob of `name`: its size and, unless `want` is a HEAD, the bytes asked for.
    async fn read_blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        want: BlobWant,
    ) -> Result<OpenedBlob>;
    /// A manifest by tag or digest. With `head`, `bytes` may be left empty (`size` is set).
    async fn read_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        head: bool,
    ) -> Result<Manifest>;
    /// The tags of `name`, sorted.
    async fn tags(&self, name: &RepoName) -> Result<Vec<Tag>>;
    /// Manifests of `name` whose subject is `subject`, optionally of one artifact type.
    async fn referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>>;
    /// Every repository's name, kept current (see [`super::NameIndex`]).
    fn names(&self) -> std::sync::Arc<super::NameIndex>;
    /// The largest manifest accepted, in bytes.
    fn max_manifest_size(&self) -> u64;

    /// Stores a manifest under `reference` and `extra_tags`.
    async fn put_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
        bytes: Bytes,
        content_type: Option<&str>,
    ) -> Result<PutManifest>;
    /// Deletes a manifest (by digest, with its tags) or a tag.
    async fn delete_manifest(&self, name: &RepoName, reference: &Reference) -> Result<()>;
    /// Links `from`'s blob into `name`; false when `from` does not have it.
    async fn mount_blob(&self, name: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool>;
    /// Unlinks a blob from `name`.
    async fn delete_blob(&self, name: &RepoName, digest: &Digest) -> Result<()>;
    /// Stores a whole blob in one request.
    async fn put_blob(&self, name: &RepoName, digest: &Digest, body: Body) -> Result<()>;
    /// Starts an upload session; returns its id.
    async fn start_upload(&self, name: &RepoName) -> Result<String>;
    /// Bytes an upload session has received.
    async fn upload_offset(&self, name: &RepoName, id: &str) -> Result<u64>;
    /// Appends a chunk; returns the new offset.
    async fn append_upload(
        &self,
        name: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        body: Body,
    ) -> Result<u64>;
    /// Appends the last chunk and commits the blob if it has `digest`.
    async fn complete_upload(
        &self,
        name: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: Body,
    ) -> Result<()>;
    /// Cancels an upload session.
    async fn cancel_upload(&self, name: &RepoName, id: &str) -> Result<()>;
}

#[async_trait]
impl Store for Content {
    async fn read_blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        want: BlobWant,
    ) -> Result<OpenedBlob> {
        Content::read_blob(self, name, digest, want).await
    }

    async fn read_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        _head: bool,
    ) -> Result<Manifest> {
        self.get_manifest(name, reference).await
    }

    async fn tags(&self, name: &RepoName) -> Result<Vec<Tag>> {
        Content::tags(self, name).await
    }

    async fn referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        Content::referrers(self, name, subject, artifact_type).await
    }

    fn names(&self) -> std::sync::Arc<super::NameIndex> {
        Content::names(self)
    }

    fn max_manifest_size(&self) -> u64 {
        self.options.max_manifest_size
    }

    async fn put_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
        bytes: Bytes,
        content_type: Option<&str>,
    ) -> Result<PutManifest> {
        Content::put_manifest(self, name, reference, extra_tags, bytes, content_type).await
    }

    async fn delete_manifest(&self, name: &RepoName, reference: &Reference) -> Result<()> {
        Content::delete_manifest(self, name, reference).await
    }

    async fn mount_blob(&self, name: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool> {
        Content::mount_blob(self, name, digest, from).await
    }

    async fn delete_blob(&self, name: &RepoName, digest: &Digest) -> Result<()> {
        Content::delete_blob(self, name, digest).await
    }

    async fn put_blob(&self, name: &RepoName, digest: &Digest, body: Body) -> Result<()> {
        Content::put_blob(self, name, digest, body).await
    }

    async fn start_upload(&self, name: &RepoName) -> Result<String> {
        Content::start_upload(self, name).await
    }

    async fn upload_offset(&self, name: &RepoName, id: &str) -> Result<u64> {
        Content::upload_offset(self, name, id).await
    }

    async fn append_upload(
        &self,
        name: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        body: Body,
    ) -> Result<u64> {
        Content::append_upload(self, name, id, range, body).await
    }

    async fn complete_upload(
        &self,
        name: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: Body,
    ) -> Result<()> {
        Content::complete_upload(self, name, id, digest, range, body).await
    }

    async fn cancel_upload(&self, name: &RepoName, id: &str) -> Result<()> {
        Content::cancel_upload(self, name, id).await
    }
}
