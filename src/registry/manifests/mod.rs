//! Manifests: exact bytes stored content-addressed beside the blobs, linked into a repository by
//! a revision link; tags are `current/link` files replaced atomically; manifests with a
//! `subject` are indexed under `_referrers/` so the referrers API never scans the repository.
//!
//! Split by noun: [`format`] parses and classifies bytes, [`signals`] holds every reading of
//! them, [`tags`] and [`referrers`] the two indexes; this module stores, reads and deletes.

mod format;
mod referrers;
mod signals;
mod tags;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

pub use format::{
    DOCKER_LIST, DOCKER_MANIFEST, MAX_JSON_DEPTH, ManifestInfo, OCI_INDEX, OCI_MANIFEST, nesting_exceeds,
    parse_manifest, read_stored,
};
pub use referrers::Descriptor;
pub use signals::{References, references};

use super::Registry;
use super::content::Reference;
use super::digest::{Algorithm, Digest};
use super::names::{RepoName, Tag};
use super::paths;
use crate::error::{Error, Result};
use crate::storage::StoragePath;

/// A stored manifest: its exact bytes and what the registry reads from them. Immutable for a
/// digest, so it is cached by digest.
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub subject: Option<Digest>,
}

pub struct PutOutcome {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

impl Registry {
    /// Whether the repository exists at all (for NAME_UNKNOWN versus MANIFEST_UNKNOWN).
    pub async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        if self.exists(&paths::repo(repo).join("_manifests")).await? {
            return Ok(true);
        }
        // Object stores have no empty directories: once its last manifest is deleted, a
        // repository is known by its layer links (the filesystem keeps `_manifests/` itself).
        Ok(self.driver.capabilities().object_store && self.exists(&paths::repo(repo).join("_layers")).await?)
    }

    async fn manifest_unknown(&self, repo: &RepoName, reference: Reference) -> Error {
        match self.repo_exists(repo).await {
            Ok(false) => Error::NameUnknown(repo.clone()),
            _ => Error::ManifestUnknown(reference.into()),
        }
    }

    /// A manifest of the repository, by digest.
    pub async fn get_manifest(&self, repo: &RepoName, d: &Digest) -> Result<Arc<StoredManifest>> {
        if self.read_link(&paths::revision_link(repo, d)).await?.as_ref() != Some(d) {
            return Err(self.manifest_unknown(repo, Reference::Digest(d.clone())).await);
        }
        if let Some(m) = self.manifest_cache.get(d) {
            return Ok(m);
        }
        // Concurrent misses wait for one read (a burst of GETs of a 4 MiB manifest reads it once).
        let _loading = self.manifest_cache.loading(d).await;
        if let Some(m) = self.manifest_cache.get(d) {
            return Ok(m);
        }
        let bytes = match self.driver.get_content(&paths::blob_data(d)).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(Error::ManifestUnknown(Reference::Digest(d.clone()).into())),
            Err(e) => return Err(e.into()),
        };
        let m = Arc::new(match read_stored(&bytes) {
            Ok(info) => StoredManifest {
                digest: d.clone(),
                media_type: info.media_type,
                bytes,
                artifact_type: info.artifact_type,
                annotations: info.annotations,
                subject: info.subject,
            },
            // Stored by another registry and not understood: serve the bytes as they are.
            Err(_) => StoredManifest {
                digest: d.clone(),
                media_type: OCI_MANIFEST.into(),
                bytes,
                artifact_type: None,
                annotations: None,
                subject: None,
            },
        });
        Ok(self.manifest_cache.insert(m))
    }

    /// Store a manifest by digest (`url_digest`), and under `tags` (the tag of the URL, or `?tag=`s).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        tags: &[Tag],
        url_digest: Option<&Digest>,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutOutcome> {
        let alg = url_digest.map_or(Algorithm::Sha256, |d| d.algorithm());
        let digest = Digest::of(alg, &bytes);
        if let Some(expected) = url_digest
            && expected != &digest
        {
            return Err(Error::ManifestDigestMismatch {
                computed: digest,
                expected: expected.clone(),
            });
        }
        let info = parse_manifest(&bytes, content_type)?;
        self.check_gc_lock().await?;

        let missing = self.missing_references(repo, &info).await?;
        if !missing.is_empty() {
            return Err(Error::ManifestBlobUnknown(missing));
        }

        self.store_manifest(repo, tags, &digest, &info, bytes).await?;
        Ok(PutOutcome {
            digest,
            subject: info.subject,
        })
    }

    /// What a manifest references that the repository lacks, in the manifest's order: blobs
    /// (config, layers) not linked into the repository or not in the content store, index
    /// children without a revision link. Batched reads, so the cost grows little with the count.
    async fn missing_references(&self, repo: &RepoName, info: &ManifestInfo) -> Result<Vec<Digest>> {
        let mut blobs: Vec<&Digest> = Vec::with_capacity(info.blobs.len());
        let mut seen = std::collections::HashSet::new();
        blobs.extend(info.blobs.iter().filter(|b| seen.insert(*b)));
        let links: Vec<StoragePath> = blobs.iter().map(|b| paths::layer_link(repo, b)).collect();
        let linked = self.read_links(&links).await?;
        let data: Vec<StoragePath> = blobs.iter().map(|b| paths::blob_data(b)).collect();
        let stored = self.driver.stat_many(&data).await;
        let mut missing = Vec::new();
        for ((b, link), stat) in blobs.iter().zip(linked).zip(stored) {
            let in_store = match stat {
                Ok(fi) => !fi.is_dir,
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(e.into()),
            };
            if link.as_ref() != Some(*b) || !in_store {
                missing.push((*b).clone());
            }
        }
        let revisions: Vec<StoragePath> = info.children.iter().map(|c| paths::revision_link(repo, c)).collect();
        for (c, link) in info.children.iter().zip(self.read_links(&revisions).await?) {
            if link.as_ref() != Some(c) {
                missing.push(c.clone());
            }
        }
        missing.dedup();
        Ok(missing)
    }

    /// Write a verified manifest: bytes, revision link, referrer entry, tags. The only code
    /// that creates a repository's `_manifests/`, that is, a repository of the catalog: when
    /// this PUT may be creating one, the catalog's generation marker is renewed after the
    /// writes (even failed ones: they may have created the directory) and before the answer.
    async fn store_manifest(
        &self,
        repo: &RepoName,
        tags: &[Tag],
        digest: &Digest,
        info: &ManifestInfo,
        bytes: Bytes,
    ) -> Result<()> {
        let may_grow = self.catalog_may_grow(repo).await;
        let written = self.write_manifest(repo, tags, digest, info, bytes).await;
        let renewed = if may_grow { self.catalog_changed().await } else { Ok(()) };
        written.and(renewed)
    }

    async fn write_manifest(
        &self,
        repo: &RepoName,
        tags: &[Tag],
        digest: &Digest,
        info: &ManifestInfo,
        bytes: Bytes,
    ) -> Result<()> {
        // Order (invariant I3): bytes, revision link, referrer entry, tag.
        let data = paths::blob_data(digest);
        if self.stat_cas(digest).await?.is_none() {
            self.driver.put_content(&data, bytes).await?;
        }
        // With tags, the revision link and the tags are written under the repository's lock, so
        // a concurrent DELETE of this manifest comes wholly before (the PUT restores the
        // revision) or after (it removes the tags too), never between: a tag never points at a
        // manifest that is not in the repository.
        let _g = if tags.is_empty() {
            None
        } else {
            Some(self.repo_lock_shared(repo).await)
        };
        self.write_link(&paths::revision_link(repo, digest), digest).await?;
        if let Some(subject) = &info.subject {
            self.write_link(&paths::referrer_link(repo, subject, digest), digest)
                .await?;
        }
        self.failpoint("manifest-before-tag");
        if !tags.is_empty() {
            self.tag_index.invalidate(repo);
            // A tag's index entry and its current link are one step of the order: both are
            // durable before the answer, together (only `current` is read to resolve a tag or
            // to find a manifest's tags, by Distribution as here).
            let mut links = Vec::with_capacity(2 * tags.len());
            for tag in tags {
                links.push((paths::tag_index_link(repo, tag, digest), digest));
                links.push((paths::tag_current(repo, tag), digest));
            }
            self.failpoint("tag-link-write");
            self.write_links(links).await?;
        }
        Ok(())
    }

    /// Pull-through cache: store a manifest fetched from an upstream (whose digest the caller
    /// verified), under `tag` if given. Unlike a push, the blobs it names need not be here
    /// yet: they are fetched when a client asks for them.
    pub(crate) async fn cache_manifest(
        &self,
        repo: &RepoName,
        tag: Option<&Tag>,
        digest: &Digest,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<()> {
        let info = parse_manifest(&bytes, content_type)?;
        self.check_gc_lock().await?;
        self.store_manifest(
            repo,
            tag.map(std::slice::from_ref).unwrap_or_default(),
            digest,
            &info,
            bytes,
        )
        .await
    }

    /// Delete a manifest and every tag pointing at it. Its bytes stay until garbage collection.
    pub async fn delete_manifest(&self, repo: &RepoName, d: &Digest) -> Result<()> {
        self.require_delete()?;
        self.check_gc_lock().await?;
        let m = self.get_manifest(repo, d).await?;
        let _g = self.repo_lock(repo).await;
        self.tag_index.invalidate(repo);
        for tag in self.all_tags(repo).await? {
            if self.read_link(&paths::tag_current(repo, &tag)).await?.as_ref() == Some(d) {
                self.driver.delete(&paths::tag_dir(repo, &tag)).await?;
            }
        }
        if let Some(subject) = &m.subject {
            self.driver
                .delete(&paths::referrer_link(repo, subject, d).parent())
                .await?;
        }
        self.driver.delete(&paths::revision_link(repo, d).parent()).await?;
        Ok(())
    }
}
