//! The domain layer: everything a handler can ask of the registry. The only module that knows
//! the storage layout (through `paths`). It sees the driver, never HTTP types.

pub mod blobs;
mod cache;
/// The content interface the pull handlers use (the pull-through cache wraps it).
pub mod content;
pub mod digest;
/// Which cached repositories garbage collection may evict from (`proxy.evictafter`, `proxy.maxsize`).
pub mod eviction;
pub mod gc;
pub mod limits;
pub mod listing;
pub mod manifests;
pub mod names;
mod objectstore;
/// Wharf's own objects at the storage root: the health probe, GC statistics.
pub mod ops;
pub mod paths;
pub mod uploads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, Weak};

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::{Error, Result};
use crate::storage::{Driver, StoragePath};
use digest::Digest;

/// A request body as the domain layer sees it.
pub type BodyStream = BoxStream<'static, std::result::Result<Bytes, std::io::Error>>;

#[derive(Clone, Debug)]
pub struct Options {
    /// `storage.delete.enabled`: whether DELETE of blobs and manifests is allowed.
    pub delete_enabled: bool,
    /// Blob GETs answer with a redirect to a presigned URL when the driver has one.
    pub redirect: bool,
    /// Test hooks and the timeouts the domain uses (body idle, catalog index age).
    pub hooks: crate::hooks::Hooks,
}

pub struct Registry {
    driver: Arc<dyn Driver>,
    opts: Options,
    /// One async mutex per live upload session: requests on one session run one at a time.
    sessions: StdMutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// Hasher state of the sessions this process wrote last, by the same key.
    warm: StdMutex<HashMap<String, uploads::Session>>,
    /// Striped per-repository locks ordering tag changes within this process: manifest PUTs
    /// share them (concurrent PUTs of different tags never wait on each other's fsyncs), what
    /// reads tags before changing them (manifest and tag DELETE, the cache's tag refresh) holds
    /// one alone.
    repo_locks: Vec<tokio::sync::RwLock<()>>,
    /// Parsed manifests by digest (immutable content, so never stale).
    manifest_cache: cache::ManifestCache,
    /// Sorted tag names per repository, for O(page) tags lists (filesystem stores).
    tag_index: cache::TagIndex,
    /// Every repository name, sorted, for O(page) catalog pages (filesystem stores).
    catalog_index: cache::CatalogIndex,
    /// Caps on open upload sessions per repository and per client, and this process's count.
    upload_limits: limits::UploadLimits,
}

impl Registry {
    pub fn new(driver: Arc<dyn Driver>, opts: Options) -> Self {
        Registry {
            driver,
            opts,
            sessions: StdMutex::new(HashMap::new()),
            warm: StdMutex::new(HashMap::new()),
            repo_locks: (0..64).map(|_| tokio::sync::RwLock::new(())).collect(),
            manifest_cache: cache::ManifestCache::default(),
            tag_index: cache::TagIndex::default(),
            catalog_index: cache::CatalogIndex::default(),
            upload_limits: limits::UploadLimits::default(),
        }
    }

    /// Cap open upload sessions at `per_repository` per repository and `per_client` per
    /// client (0: no cap); see `limits`.
    pub fn with_upload_limits(mut self, per_repository: usize, per_client: usize) -> Self {
        self.upload_limits = limits::UploadLimits::new(per_repository, per_client);
        self
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// A named crash point of the test hooks (`crate::hooks`).
    fn failpoint(&self, name: &str) {
        self.opts.hooks.failpoint(name)
    }

    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    fn repo_stripe(&self, repo: &names::RepoName) -> &tokio::sync::RwLock<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        repo.hash(&mut h);
        &self.repo_locks[(h.finish() % self.repo_locks.len() as u64) as usize]
    }

    /// The repository's lock alone: for changes that read tags before writing them.
    async fn repo_lock(&self, repo: &names::RepoName) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.repo_stripe(repo).write().await
    }

    /// The repository's lock, shared with other manifest PUTs.
    async fn repo_lock_shared(&self, repo: &names::RepoName) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.repo_stripe(repo).read().await
    }

    fn require_delete(&self) -> Result<()> {
        if self.opts.delete_enabled {
            Ok(())
        } else {
            Err(Error::Unsupported(
                "deletion is disabled (storage.delete.enabled = false)".into(),
            ))
        }
    }

    /// Read a link file; a link that does not parse as a digest counts as absent (invariant I2).
    async fn read_link(&self, p: &StoragePath) -> Result<Option<Digest>> {
        parse_link(p, self.driver.get_content(p).await)
    }

    /// `read_link` of several links at once (one batched driver read), in order.
    async fn read_links(&self, ps: &[StoragePath]) -> Result<Vec<Option<Digest>>> {
        let read = self.driver.get_content_many(ps).await;
        ps.iter().zip(read).map(|(p, r)| parse_link(p, r)).collect()
    }

    /// Make the link at `p` hold `d`, durably (a link already holding it may be left as it is).
    async fn write_link(&self, p: &StoragePath, d: &Digest) -> Result<()> {
        self.write_links(vec![(p.clone(), d)]).await
    }

    /// `write_link` of each, durable together, in no order among themselves.
    async fn write_links(&self, links: Vec<(StoragePath, &Digest)>) -> Result<()> {
        let items = links
            .into_iter()
            .map(|(p, d)| (p, Bytes::from(d.to_string())))
            .collect();
        Ok(self.driver.ensure_contents(items).await?)
    }

    async fn exists(&self, p: &StoragePath) -> Result<bool> {
        match self.driver.stat(p).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A link's digest; `None` when it is missing or does not hold one (logged: it is ignored).
fn parse_link(
    p: &StoragePath,
    read: std::result::Result<Bytes, crate::storage::DriverError>,
) -> Result<Option<Digest>> {
    match read {
        Ok(b) => match std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.trim().parse::<Digest>().ok())
        {
            Some(d) => Ok(Some(d)),
            None => {
                tracing::warn!(path = %p, "ignoring a link that does not hold a digest");
                Ok(None)
            }
        },
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
