//! The [`Driver`] impl: objects, "directories" as key prefixes, conditional writes and
//! presigned redirects.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{REDIRECT_TTL, S3Driver, to_io};
use crate::storage::fence::{self, Fence, FenceError, FenceRole};
use crate::storage::{
    ByteStream, Capabilities, Driver, DriverError, FileInfo, Multipart, Precondition, StoragePath, Version,
};

#[async_trait]
impl Driver for S3Driver {
    fn name(&self) -> &'static str {
        self.inner.name
    }

    fn describe(&self) -> String {
        S3Driver::describe(self)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            object_store: true,
            conditional_writes: self.inner.conditional,
            resumable_writer: true,
            redirect: self.inner.store.signer().is_some(),
        }
    }

    async fn fence(&self, role: FenceRole, lock: &StoragePath) -> Result<Fence, FenceError> {
        fence::take_lock_object(self, lock, role).await
    }

    async fn fenced(&self, lock: &StoragePath) -> Result<bool, DriverError> {
        fence::lock_object_present(self, lock).await
    }

    async fn get_content(&self, p: &StoragePath) -> Result<Bytes, DriverError> {
        let r = self.inner.store.get(&self.key(p)).await.map_err(|e| self.err(p, e))?;
        r.bytes().await.map_err(|e| self.err(p, e))
    }

    async fn put_content(&self, p: &StoragePath, data: Bytes) -> Result<(), DriverError> {
        self.inner
            .store
            .put(&self.key(p), PutPayload::from(data))
            .await
            .map_err(|e| self.err(p, e))?;
        Ok(())
    }

    /// The puts run concurrently (at most [`MANY_IN_FLIGHT`](crate::storage::MANY_IN_FLIGHT)
    /// at once): each is durable when the store answers it, and the items need no order among
    /// themselves, so a tag's index and current links cost one round trip instead of two.
    async fn ensure_contents(&self, items: Vec<(StoragePath, Bytes)>) -> Result<(), DriverError> {
        futures::stream::iter(items)
            .map(|(p, data)| async move { self.put_content(&p, data).await })
            .buffer_unordered(crate::storage::MANY_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn stat(&self, p: &StoragePath) -> Result<FileInfo, DriverError> {
        let key = self.key(p);
        match self.inner.store.head(&key).await {
            Ok(meta) => Ok(FileInfo {
                size: meta.size,
                modified: SystemTime::from(meta.last_modified),
                is_dir: false,
            }),
            Err(object_store::Error::NotFound { .. }) => {
                // A "directory": some key below it exists.
                let mut below = self.inner.store.list(Some(&key));
                match below.next().await {
                    Some(Ok(meta)) => Ok(FileInfo {
                        size: 0,
                        modified: SystemTime::from(meta.last_modified),
                        is_dir: true,
                    }),
                    Some(Err(e)) => Err(self.err(p, e)),
                    None => Err(DriverError::NotFound(p.clone())),
                }
            }
            Err(e) => Err(self.err(p, e)),
        }
    }

    async fn list(&self, p: &StoragePath) -> Result<Vec<String>, DriverError> {
        let key = self.key(p);
        let r = self
            .inner
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| self.err(p, e))?;
        let mut names: Vec<String> = r
            .common_prefixes
            .iter()
            .chain(r.objects.iter().map(|o| &o.location))
            .filter_map(|path| path.filename().map(str::to_owned))
            .collect();
        if names.is_empty() {
            return Err(DriverError::NotFound(p.clone()));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn reader(&self, p: &StoragePath, range: Option<(u64, u64)>) -> Result<ByteStream, DriverError> {
        if let Some((start, end)) = range {
            if start > end {
                return Err(DriverError::InvalidRange);
            }
            if start == end {
                // S3 has no empty ranges; check the object exists and send nothing.
                self.stat(p).await?;
                return Ok(futures::stream::empty().boxed());
            }
        }
        let opts = GetOptions {
            range: range.map(|(s, e)| GetRange::Bounded(s..e)),
            ..Default::default()
        };
        let r = self
            .inner
            .store
            .get_opts(&self.key(p), opts)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => DriverError::NotFound(p.clone()),
                e if e.to_string().contains("416") || e.to_string().to_lowercase().contains("range") => {
                    DriverError::InvalidRange
                }
                e => self.err(p, e),
            })?;
        Ok(r.into_stream().map_err(to_io).boxed())
    }

    async fn append_writer(&self, _p: &StoragePath) -> Result<Box<dyn crate::storage::BlobWriter>, DriverError> {
        Err(DriverError::Unsupported {
            driver: self.inner.name,
            what: "appending to objects (upload data goes through multipart uploads)",
        })
    }

    async fn move_(&self, from: &StoragePath, to: &StoragePath) -> Result<(), DriverError> {
        let size = self.stat(from).await?.size;
        Multipart::copy(self, from, to, size).await?;
        self.delete(from).await
    }

    async fn delete(&self, p: &StoragePath) -> Result<(), DriverError> {
        let key = self.key(p);
        match self.inner.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err(p, e)),
        }
        // ... and everything below it, as deleting a directory does.
        let below: Vec<Path> = self
            .inner
            .store
            .list(Some(&key))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.err(p, e))?;
        let store = &self.inner.store;
        futures::stream::iter(below)
            .map(|k| async move {
                match store.delete(&k).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(16)
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|e| self.err(p, e))
    }

    async fn list_recursive(&self, p: &StoragePath) -> Result<Vec<String>, DriverError> {
        let key = self.key(p);
        let base = format!("{}/", key.as_ref());
        self.inner
            .store
            .list(Some(&key))
            .map_ok(|m| m.location.as_ref().strip_prefix(&base).unwrap_or("").to_owned())
            .try_filter(|k| futures::future::ready(!k.is_empty()))
            .try_collect()
            .await
            .map_err(|e| self.err(p, e))
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }

    async fn get_versioned(&self, p: &StoragePath) -> Result<(Bytes, Option<Version>), DriverError> {
        let r = self.inner.store.get(&self.key(p)).await.map_err(|e| self.err(p, e))?;
        let etag = r.meta.e_tag.clone().map(Version);
        Ok((r.bytes().await.map_err(|e| self.err(p, e))?, etag))
    }

    async fn put_if(&self, p: &StoragePath, data: Bytes, cond: Precondition) -> Result<Option<Version>, DriverError> {
        let mode = if !self.inner.conditional {
            // storage.s3.conditionalwrites = false: the service ignores or rejects preconditions.
            PutMode::Overwrite
        } else {
            match cond {
                Precondition::Absent => PutMode::Create,
                Precondition::Matches(v) => PutMode::Update(UpdateVersion {
                    e_tag: Some(v.0),
                    version: None,
                }),
            }
        };
        let r = self
            .inner
            .store
            .put_opts(&self.key(p), PutPayload::from(data), PutOptions::from(mode))
            .await
            .map_err(|e| self.err(p, e))?;
        Ok(r.e_tag.map(Version))
    }

    async fn redirect_url(&self, p: &StoragePath) -> Result<Option<String>, DriverError> {
        let Some(signer) = self.inner.store.signer() else {
            return Ok(None);
        };
        let url = signer
            .signed_url(object_store::signer::Method::GET, &self.key(p), REDIRECT_TTL)
            .await
            .map_err(|e| self.err(p, e))?;
        Ok(Some(url.to_string()))
    }
}
