//! S3-compatible object storage on `object_store` (AWS S3, SeaweedFS, any service speaking the S3
//! API with SigV4). Keys are Distribution's layout under `storage.s3.rootdirectory`, so a bucket
//! written by `registry:2` is served as is.
//!
//! The same driver also runs on object_store's `InMemory` store (`storage.inmemory`, as
//! Distribution's `inmemory` driver): multipart uploads and conditional writes included, no
//! presigned URLs. Tests use it to drive the object-store code paths without an S3 service.
//!
//! What differs from the filesystem, and how the rest of Wharf copes:
//! - no append and no rename: upload data goes through [`Multipart`] (parts by upload id, so any
//!   replica continues a session) and finished objects are written in place or copied server-side;
//! - no directories: a "directory" exists while some key has it as a prefix; `list` uses the
//!   delimiter listing, and deleting a directory deletes every key under it;
//! - conditional writes (`If-None-Match: *`, `If-Match: <etag>`) stand in for locks where
//!   replicas must agree (upload session state, the garbage-collection lock).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};

use super::fence::{self, Fence, FenceError, FenceRole};
use super::{ByteStream, Capabilities, Driver, DriverError, FileInfo, Multipart, Precondition, StoragePath, Version};
use crate::config::S3Config;

/// How long a presigned redirect URL stays valid (Distribution uses 20 minutes).
const REDIRECT_TTL: Duration = Duration::from_secs(20 * 60);

#[derive(Clone)]
pub struct S3Driver {
    inner: Arc<Inner>,
}

/// What the driver needs of an object store: objects, multipart uploads by id and, where the
/// store has them, presigned URLs.
trait Backend: ObjectStore + MultipartStore {
    fn signer(&self) -> Option<&dyn Signer>;
}

impl Backend for AmazonS3 {
    fn signer(&self) -> Option<&dyn Signer> {
        Some(self)
    }
}

impl Backend for InMemory {
    fn signer(&self) -> Option<&dyn Signer> {
        None
    }
}

struct Inner {
    store: Arc<dyn Backend>,
    /// `s3` or `inmemory`.
    name: &'static str,
    /// Key prefix without leading or trailing `/` (may be empty).
    prefix: String,
    part_size: usize,
    conditional: bool,
    bucket: String,
    /// Objects above this size are copied by streaming (CopyObject's limit; lowered in tests).
    copy_limit: u64,
}

impl S3Driver {
    pub fn new(c: &S3Config) -> Result<Self, DriverError> {
        // The environment's AWS_* settings first (credentials, session token), then the config.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_virtual_hosted_style_request(false)
            // Parts are already hashed once for the digest; signing them too would hash every
            // byte a second time. UNSIGNED-PAYLOAD is part of SigV4 and accepted by S3.
            .with_unsigned_payload(true)
            .with_client_options(
                ClientOptions::new()
                    // A blob GET streams for as long as the client reads; only connecting and
                    // silences are bounded.
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_read_timeout(Duration::from_secs(120))
                    .with_pool_idle_timeout(Duration::from_secs(50))
                    .with_allow_http(c.regionendpoint.starts_with("http://") || !c.secure),
            );
        if !c.accesskey.is_empty() {
            b = b.with_access_key_id(&c.accesskey).with_secret_access_key(&c.secretkey);
        }
        let endpoint = if !c.regionendpoint.is_empty() {
            Some(c.regionendpoint.trim_end_matches('/').to_owned())
        } else if !c.secure {
            Some(format!("http://s3.{}.amazonaws.com", c.region))
        } else {
            None
        };
        if let Some(ep) = endpoint {
            if c.forcepathstyle {
                b = b.with_endpoint(&ep);
            } else {
                // Virtual-hosted style: object_store wants the bucket in the endpoint's host.
                let (scheme, host) = ep.split_once("://").unwrap_or(("https", &ep));
                b = b
                    .with_endpoint(format!("{scheme}://{}.{host}", c.bucket))
                    .with_virtual_hosted_style_request(true);
            }
            if ep.starts_with("http://") {
                b = b.with_allow_http(true);
            }
        } else if !c.forcepathstyle {
            b = b.with_virtual_hosted_style_request(true);
        }
        let store = b.build().map_err(|e| DriverError::Backend {
            path: format!("s3://{}", c.bucket),
            message: e.to_string(),
        })?;
        Ok(S3Driver {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                name: "s3",
                prefix: c.rootdirectory.trim_matches('/').to_owned(),
                part_size: c.chunksize as usize,
                conditional: c.conditionalwrites,
                bucket: c.bucket.clone(),
                copy_limit: COPY_OBJECT_LIMIT,
            }),
        })
    }

    /// An empty store in this process's memory (`storage.inmemory`), gone when it exits.
    pub fn in_memory() -> Self {
        S3Driver {
            inner: Arc::new(Inner {
                store: Arc::new(InMemory::new()),
                name: "inmemory",
                prefix: String::new(),
                // The smallest part S3 accepts, so tests cross part boundaries with small blobs.
                part_size: 5 << 20,
                conditional: true,
                bucket: String::new(),
                copy_limit: COPY_OBJECT_LIMIT,
            }),
        }
    }

    #[cfg(test)]
    pub(crate) fn set_copy_limit(&mut self, limit: u64) {
        Arc::get_mut(&mut self.inner).expect("not shared yet").copy_limit = limit;
    }

    /// Where the store is, for logs: `s3://bucket/prefix` (or `inmemory`).
    pub fn describe(&self) -> String {
        if self.inner.name == "inmemory" {
            return "inmemory".to_owned();
        }
        format!("s3://{}/{}", self.inner.bucket, self.inner.prefix)
    }

    fn key(&self, p: &StoragePath) -> Path {
        let s = if self.inner.prefix.is_empty() {
            p.as_str().to_owned()
        } else if p.as_str().is_empty() {
            self.inner.prefix.clone()
        } else {
            format!("{}/{}", self.inner.prefix, p.as_str())
        };
        // Components come from validated names (no empty segments, no `..`), so this cannot fail.
        Path::parse(&s).unwrap_or_else(|_| Path::from(s.as_str()))
    }

    fn err(&self, p: &StoragePath, e: object_store::Error) -> DriverError {
        match e {
            object_store::Error::NotFound { .. } => DriverError::NotFound(p.clone()),
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                DriverError::Conflict(p.clone())
            }
            e => DriverError::Backend {
                path: p.to_string(),
                message: e.to_string(),
            },
        }
    }
}

fn to_io(e: object_store::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

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

    async fn append_writer(&self, _p: &StoragePath) -> Result<Box<dyn super::BlobWriter>, DriverError> {
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

#[async_trait]
impl Multipart for S3Driver {
    fn part_size(&self) -> usize {
        self.inner.part_size
    }

    async fn create(&self, p: &StoragePath) -> Result<String, DriverError> {
        self.inner
            .store
            .create_multipart(&self.key(p))
            .await
            .map_err(|e| self.err(p, e))
    }

    async fn put_part(&self, p: &StoragePath, id: &str, idx: usize, data: Vec<Bytes>) -> Result<String, DriverError> {
        let payload: PutPayload = data.into_iter().collect();
        let part = self
            .inner
            .store
            .put_part(&self.key(p), &id.to_owned(), idx, payload)
            .await
            .map_err(|e| self.err(p, e))?;
        Ok(part.content_id)
    }

    async fn complete(&self, p: &StoragePath, id: &str, etags: Vec<String>) -> Result<(), DriverError> {
        let parts = etags.into_iter().map(|content_id| PartId { content_id }).collect();
        self.inner
            .store
            .complete_multipart(&self.key(p), &id.to_owned(), parts)
            .await
            .map_err(|e| self.err(p, e))?;
        Ok(())
    }

    async fn abort(&self, p: &StoragePath, id: &str) -> Result<(), DriverError> {
        match self.inner.store.abort_multipart(&self.key(p), &id.to_owned()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            // The in-memory store's only abort failure: an unknown upload id.
            Err(object_store::Error::Generic { store: "InMemory", .. }) => Ok(()),
            Err(e) => Err(self.err(p, e)),
        }
    }

    async fn copy(&self, from: &StoragePath, to: &StoragePath, size: u64) -> Result<(), DriverError> {
        if size > self.inner.copy_limit {
            return self.stream_copy(from, to, size).await;
        }
        self.inner
            .store
            .copy(&self.key(from), &self.key(to))
            .await
            .map_err(|e| self.err(from, e))
    }
}

/// S3's CopyObject copies at most 5 GiB (AWS enforces it; SeaweedFS does not).
const COPY_OBJECT_LIMIT: u64 = 5 << 30;

impl S3Driver {
    /// Copy a large object by streaming it through a multipart upload: object_store has no
    /// UploadPartCopy, so the bytes pass through this process, with about three parts in memory.
    async fn stream_copy(&self, from: &StoragePath, to: &StoragePath, size: u64) -> Result<(), DriverError> {
        // At most 10,000 parts per upload.
        let part_size = (self.inner.part_size as u64).max(size.div_ceil(9_000)) as usize;
        let mut src = self.reader(from, None).await?;
        let id = Multipart::create(self, to).await?;
        let result = async {
            let mut etags = Vec::new();
            let mut in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<String, DriverError>>> =
                Default::default();
            let mut buf: Vec<Bytes> = Vec::new();
            let mut len = 0usize;
            let mut done = false;
            while !done {
                match src.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(|e| DriverError::io(from, e))?;
                        len += chunk.len();
                        buf.push(chunk);
                    }
                    None => done = true,
                }
                if len >= part_size || (done && len > 0) {
                    while in_flight.len() >= 2 {
                        let h = in_flight.pop_front().expect("non-empty");
                        etags.push(h.await.map_err(|e| DriverError::io(to, std::io::Error::other(e)))??);
                    }
                    let (me, key, id, idx) = (self.clone(), to.clone(), id.clone(), etags.len() + in_flight.len());
                    let data = std::mem::take(&mut buf);
                    len = 0;
                    in_flight.push_back(tokio::spawn(async move {
                        Multipart::put_part(&me, &key, &id, idx, data).await
                    }));
                }
            }
            for h in in_flight {
                etags.push(h.await.map_err(|e| DriverError::io(to, std::io::Error::other(e)))??);
            }
            Multipart::complete(self, to, &id, etags).await
        }
        .await;
        if result.is_err() {
            let _ = Multipart::abort(self, to, &id).await;
        }
        result
    }
}
