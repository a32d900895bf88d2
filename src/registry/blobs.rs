//! Blobs: one content-addressed copy (`blobs/…/data`) shared by every repository, and per-repository
//! `_layers` links that decide what each repository may serve.

use super::Registry;
use super::digest::Digest;
use super::names::RepoName;
use super::paths;
use crate::error::{Error, Result};
use crate::storage::{ByteStream, DriverError, StoragePath};

#[derive(Clone, Debug)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

impl Registry {
    /// Size of a blob the repository may serve; `BLOB_UNKNOWN` if it is not linked there.
    pub async fn stat_blob(&self, repo: &RepoName, d: &Digest) -> Result<BlobInfo> {
        if self.read_link(&paths::layer_link(repo, d)).await?.as_ref() != Some(d) {
            return Err(Error::BlobUnknown(d.clone()));
        }
        self.stat_cas(d).await?.ok_or_else(|| Error::BlobUnknown(d.clone()))
    }

    /// Stream a blob, or the byte range `[start, end)` of it.
    pub async fn open_blob(&self, info: &BlobInfo, range: Option<(u64, u64)>) -> Result<ByteStream> {
        match self.driver.reader(&paths::blob_data(&info.digest), range).await {
            Ok(s) => Ok(s),
            Err(DriverError::NotFound(_)) => Err(Error::BlobUnknown(info.digest.clone())),
            Err(DriverError::InvalidRange) => Err(Error::RangeNotSatisfiable { size: info.size }),
            Err(e) => Err(e.into()),
        }
    }

    /// A presigned URL to send a blob GET to (`storage.redirect`), when the driver has one.
    pub async fn blob_redirect(&self, info: &BlobInfo) -> Result<Option<String>> {
        if !self.opts.redirect {
            return Ok(None);
        }
        Ok(self.driver.redirect_url(&paths::blob_data(&info.digest)).await?)
    }

    /// Unlink a blob from a repository. The data stays until garbage collection.
    pub async fn delete_blob(&self, repo: &RepoName, d: &Digest) -> Result<()> {
        self.require_delete()?;
        self.check_gc_lock().await?;
        let link = paths::layer_link(repo, d);
        if self.read_link(&link).await?.as_ref() != Some(d) {
            return Err(Error::BlobUnknown(d.clone()));
        }
        self.driver.delete(&link.parent()).await?;
        Ok(())
    }

    /// Cross-repository mount: link `d` into `repo` when `from` serves it. Without `from`, any
    /// stored copy is mounted (the spec allows it; authorization narrows it when auth is on).
    /// `None` means the blob could not be mounted and the caller should start an upload.
    pub async fn mount_blob(&self, repo: &RepoName, d: &Digest, from: Option<&RepoName>) -> Result<Option<BlobInfo>> {
        self.check_gc_lock().await?;
        let info = match from {
            Some(from) => match self.stat_blob(from, d).await {
                Ok(info) => info,
                Err(Error::BlobUnknown(_)) => return Ok(None),
                Err(e) => return Err(e),
            },
            None => match self.stat_cas(d).await? {
                Some(info) => info,
                None => return Ok(None),
            },
        };
        self.write_link(&paths::layer_link(repo, d), d).await?;
        tracing::info!(repo = %repo, digest = %d, from = from.map(|f| f.as_str()).unwrap_or("*"), "blob mounted");
        Ok(Some(info))
    }

    /// Mount without `from` for a caller who may pull only some repositories (auth on): link
    /// `d` from the first repository, in catalog order, that `may_pull` accepts and that serves
    /// it. `None`: no such repository (or the blob is stored nowhere), so the caller uploads.
    /// Costs one stat per pullable repository until one serves it; only this request pays it.
    pub async fn mount_blob_from_pullable(
        &self,
        repo: &RepoName,
        d: &Digest,
        may_pull: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Option<BlobInfo>> {
        if self.stat_cas(d).await?.is_none() {
            return Ok(None);
        }
        let mut last: Option<String> = None;
        loop {
            let page = self.catalog_filtered(last.as_deref(), Some(1000), may_pull).await?;
            for name in &page.items {
                let Ok(from) = RepoName::parse(name) else { continue };
                if let Some(info) = self.mount_blob(repo, d, Some(&from)).await? {
                    return Ok(Some(info));
                }
            }
            if !page.more {
                return Ok(None);
            }
            last = page.items.last().cloned();
        }
    }

    /// The stored copy of a blob, whatever repository it belongs to.
    pub(crate) async fn stat_cas(&self, d: &Digest) -> Result<Option<BlobInfo>> {
        match self.driver.stat(&paths::blob_data(d)).await {
            Ok(fi) if !fi.is_dir => Ok(Some(BlobInfo {
                digest: d.clone(),
                size: fi.size,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Move verified upload data into the content-addressable store (unless a copy is already
    /// there), then link it into the repository. The data must already be durable.
    pub(crate) async fn commit_blob(&self, repo: &RepoName, d: &Digest, data: &StoragePath, size: u64) -> Result<()> {
        match self.stat_cas(d).await? {
            Some(existing) if existing.size == size => {} // the same bytes are stored already
            _ => self.driver.move_(data, &paths::blob_data(d)).await?,
        }
        self.failpoint("blob-after-commit");
        self.write_link(&paths::layer_link(repo, d), d).await
    }
}
