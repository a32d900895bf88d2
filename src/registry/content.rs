//! The content interface: what the pull handlers (`GET`/`HEAD` of manifests and blobs) and the
//! write gate ask of a repository. [`Registry`] implements it over its own store; the
//! pull-through cache (the `proxy` module's `Proxy`) wraps a `Registry` and implements it again,
//! answering cached repositories from their upstream and delegating every other repository to
//! the registry, as Distribution's proxy decorates its local registry. The HTTP layer holds an
//! `Arc<dyn Content>` and never knows which one it has.

use std::sync::Arc;

use async_trait::async_trait;

use super::blobs::BlobInfo;
use super::digest::Digest;
use super::manifests::StoredManifest;
use super::names::{RepoName, Tag};
use super::{BodyStream, Registry};
use crate::error::Result;
use crate::storage::ByteStream;

/// Manifests larger than this are refused (413 on a push, as Distribution's 4 MiB default) and
/// are not cached from an upstream.
pub const MANIFEST_LIMIT: usize = 4 << 20;

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// A manifest with, when it is served stale because its source failed, the reason.
pub struct ManifestAnswer {
    pub manifest: Arc<StoredManifest>,
    /// The text of a warning for the client (HTTP sends it as `Warning: 299 - "…"`).
    pub warning: Option<String>,
}

impl ManifestAnswer {
    /// A manifest served as it is, with no warning.
    pub fn fresh(manifest: Arc<StoredManifest>) -> Self {
        ManifestAnswer {
            manifest,
            warning: None,
        }
    }
}

/// What a blob request wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobRead {
    /// Metadata only (a `HEAD`).
    Head,
    /// The whole body.
    Whole,
    /// Part of the body (a `Range` request): served from the store once the blob is there.
    Range,
}

/// How a blob request is answered.
pub enum BlobAnswer {
    /// From the store, as any blob: read it with [`Content::open_blob`].
    Stored(BlobInfo),
    /// A `HEAD` answered by another source (nothing fetched): its size, if it said.
    Remote { size: Option<u64> },
    /// Arriving from another source right now; the body fails if the digest does not verify.
    Streaming { size: Option<u64>, body: BodyStream },
}

/// The content of repositories, as the pull handlers see it.
#[async_trait]
pub trait Content: Send + Sync {
    /// A manifest by tag or digest. `accept` holds the client's `Accept` values.
    async fn manifest(&self, repo: &RepoName, reference: &Reference, accept: &[&str]) -> Result<ManifestAnswer>;
    /// A blob the repository may serve; `BLOB_UNKNOWN` if it has none of that digest.
    async fn blob(&self, repo: &RepoName, digest: &Digest, read: BlobRead) -> Result<BlobAnswer>;
    /// The bytes of a stored blob, all or the half-open `range`.
    async fn open_blob(&self, info: &BlobInfo, range: Option<(u64, u64)>) -> Result<ByteStream>;
    /// A URL the client may fetch a stored blob from directly (`storage.redirect`).
    async fn blob_redirect(&self, info: &BlobInfo) -> Result<Option<String>>;
    /// Whether the repository takes writes (pushes, deletes): `UNSUPPORTED` where its content
    /// is not this registry's own.
    fn check_write(&self, repo: &RepoName) -> Result<()>;
}

#[async_trait]
impl Content for Registry {
    async fn manifest(&self, repo: &RepoName, reference: &Reference, _accept: &[&str]) -> Result<ManifestAnswer> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => self.resolve_tag(repo, t).await?,
        };
        Ok(ManifestAnswer::fresh(self.get_manifest(repo, &digest).await?))
    }

    async fn blob(&self, repo: &RepoName, digest: &Digest, _read: BlobRead) -> Result<BlobAnswer> {
        Ok(BlobAnswer::Stored(self.stat_blob(repo, digest).await?))
    }

    async fn open_blob(&self, info: &BlobInfo, range: Option<(u64, u64)>) -> Result<ByteStream> {
        Registry::open_blob(self, info, range).await
    }

    async fn blob_redirect(&self, info: &BlobInfo) -> Result<Option<String>> {
        Registry::blob_redirect(self, info).await
    }

    fn check_write(&self, _repo: &RepoName) -> Result<()> {
        Ok(())
    }
}
