//! The storage driver: a small key/object API in the style of Distribution's `storagedriver.go`.
//!
//! Everything above this module addresses storage through [`StoragePath`] values that only
//! `registry::paths` builds from validated names, so no request can reach outside the root.
//! Implementations: [`fs::FsDriver`] (the embedded default) and [`s3::S3Driver`] (S3-compatible
//! object storage on `object_store`). A driver says what it can do in [`Capabilities`]: object
//! stores cannot append or rename, so they offer conditional writes ([`Precondition`]) and
//! [`Multipart`] (multipart uploads by id), on which [`resumable::ResumableWriter`] keeps upload
//! data that any replica can continue. The fence between writers and garbage collection is a
//! driver operation too ([`fence`]).

pub mod fence;
pub mod fs;
pub mod resumable;
pub mod s3;
#[cfg(test)]
mod testsuite;

use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A relative, `/`-separated key under the storage root. Built only by `registry::paths`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoragePath(String);

impl StoragePath {
    /// Callers must only pass components that were validated against the spec grammars.
    pub(crate) fn from_validated(s: String) -> Self {
        debug_assert!(!s.starts_with('/') && !s.split('/').any(|c| c.is_empty() || c == ".." || c == "."));
        StoragePath(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The directory that holds this key (the root's own parent is the root).
    pub fn parent(&self) -> StoragePath {
        StoragePath(self.0[..self.0.rfind('/').unwrap_or(0)].to_owned())
    }
    pub fn join(&self, component: &str) -> StoragePath {
        StoragePath::from_validated(format!("{}/{}", self.0, component))
    }
}

impl fmt::Debug for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("not found: {0}")]
    NotFound(StoragePath),
    #[error("invalid range")]
    InvalidRange,
    /// A conditional write found the object changed (or present, for `Precondition::Absent`).
    #[error("precondition failed: {0} was changed by someone else")]
    Conflict(StoragePath),
    #[error("not supported by the {driver} driver: {what}")]
    Unsupported { driver: &'static str, what: &'static str },
    #[error("object store error on {path}: {message}")]
    Backend { path: String, message: String },
    #[error("storage i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        DriverError::Io {
            path: path.to_string(),
            source,
        }
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, DriverError::NotFound(_))
    }
    /// The storage is on a read-only filesystem (a server can still serve pulls from it).
    pub fn is_read_only(&self) -> bool {
        matches!(self, DriverError::Io { source, .. } if source.kind() == std::io::ErrorKind::ReadOnlyFilesystem)
    }
}

#[derive(Debug, Clone)]
pub struct FileInfo {
    pub size: u64,
    pub modified: SystemTime,
    pub is_dir: bool,
}

/// An object's version for conditional writes (its ETag on S3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(pub String);

/// The condition of [`Driver::put_if`].
#[derive(Clone, Debug)]
pub enum Precondition {
    /// Only if no object exists at the key (`If-None-Match: *`).
    Absent,
    /// Only if the object is still at this version (`If-Match`).
    Matches(Version),
}

/// What a driver can do, so the layers above ask for a capability instead of a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Keys in a flat namespace shared by replicas: no directories of their own (an emptied
    /// prefix may still be listed for a while), no directory times, no process-level locks.
    pub object_store: bool,
    /// [`Driver::put_if`] is available.
    pub conditional_writes: bool,
    /// Upload data goes through a [`resumable::ResumableWriter`] (multipart uploads by id)
    /// instead of [`Driver::append_writer`].
    pub resumable_writer: bool,
    /// [`Driver::redirect_url`] can hand clients a presigned URL.
    pub redirect: bool,
}

/// A stream of body chunks read from storage.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The storage backend. Dyn-safe so the backend is chosen at runtime.
/// Requests the default batched reads (`get_content_many`, `stat_many`) keep in flight.
pub const MANY_IN_FLIGHT: usize = 32;

#[async_trait]
pub trait Driver: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Where the data is, for logs and messages (a directory, `s3://bucket/prefix`).
    fn describe(&self) -> String {
        self.name().to_owned()
    }
    /// What this driver can do; the filesystem's default is none of the object-store extras.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    /// Read a small object whole (links, hash states, manifests).
    async fn get_content(&self, p: &StoragePath) -> Result<Bytes, DriverError>;
    /// Atomically replace a small object; durable when this returns.
    async fn put_content(&self, p: &StoragePath, data: Bytes) -> Result<(), DriverError>;
    /// `put_content` of each item, durable when this returns, but not in any order among
    /// themselves (a caller that needs one durable before another calls twice): the driver may
    /// make them durable together, and may skip an object that already holds exactly its
    /// data and is known durable (so its modification time is not refreshed; a caller that
    /// wants that calls `put_content`). On an error, some of the items may have been written.
    async fn ensure_contents(&self, items: Vec<(StoragePath, Bytes)>) -> Result<(), DriverError> {
        for (p, data) in items {
            self.put_content(&p, data).await?;
        }
        Ok(())
    }
    /// Atomically replace a small object without waiting for it to be durable: after a crash
    /// of the machine it may be missing or empty (never another object's bytes). For state that
    /// is cheap to lose, such as a just-opened upload session. Drivers whose writes are always
    /// durable keep this default.
    async fn put_content_volatile(&self, p: &StoragePath, data: Bytes) -> Result<(), DriverError> {
        self.put_content(p, data).await
    }
    async fn stat(&self, p: &StoragePath) -> Result<FileInfo, DriverError>;
    /// Names of the direct children of a directory, sorted. `NotFound` when it does not exist.
    async fn list(&self, p: &StoragePath) -> Result<Vec<String>, DriverError>;
    /// `list` of several directories at once, results in the same order. The default runs them
    /// concurrently; the filesystem does them all in one blocking task (one thread hand-off for
    /// a batch instead of one per directory, which is what a catalog page's cost was made of).
    async fn list_many(&self, ps: &[StoragePath]) -> Vec<Result<Vec<String>, DriverError>> {
        futures::future::join_all(ps.iter().map(|p| self.list(p))).await
    }
    /// `get_content` of several small objects, results in the same order; `stat_many` the same
    /// for `stat`. The defaults run at most [`MANY_IN_FLIGHT`] at once; the filesystem does a
    /// batch in a few blocking tasks (a manifest PUT checks 1,000 layers with two calls).
    async fn get_content_many(&self, ps: &[StoragePath]) -> Vec<Result<Bytes, DriverError>> {
        use futures::StreamExt;
        futures::stream::iter(0..ps.len())
            .map(|i| self.get_content(&ps[i]))
            .buffered(MANY_IN_FLIGHT)
            .collect()
            .await
    }
    async fn stat_many(&self, ps: &[StoragePath]) -> Vec<Result<FileInfo, DriverError>> {
        use futures::StreamExt;
        futures::stream::iter(0..ps.len())
            .map(|i| self.stat(&ps[i]))
            .buffered(MANY_IN_FLIGHT)
            .collect()
            .await
    }
    /// Stream `range` (start, end exclusive) or the whole object.
    async fn reader(&self, p: &StoragePath, range: Option<(u64, u64)>) -> Result<ByteStream, DriverError>;
    /// Open (creating if needed) an object for appending. The writer is blocking: use it from
    /// `spawn_blocking`, where hashing happens beside the write.
    async fn append_writer(&self, p: &StoragePath) -> Result<Box<dyn BlobWriter>, DriverError>;
    /// Atomically move an object into place (creating parents); durable when this returns.
    async fn move_(&self, from: &StoragePath, to: &StoragePath) -> Result<(), DriverError>;
    /// Delete an object or a whole directory tree. Deleting what is absent is not an error.
    async fn delete(&self, p: &StoragePath) -> Result<(), DriverError>;

    /// Keys of every object below `p`, relative to it, in no particular order (empty when none).
    /// Unlike [`Driver::list`], never shows an emptied directory: some S3-compatible services
    /// (SeaweedFS) keep listing a deleted object's folder as a common prefix for a while.
    async fn list_recursive(&self, p: &StoragePath) -> Result<Vec<String>, DriverError>;

    // ---- object-store capabilities (the filesystem driver has none of them)

    /// Multipart uploads by id; `None` when upload data is appended in place instead. Used
    /// through [`resumable::ResumableWriter`], which is what the layers above see.
    fn multipart(&self) -> Option<&dyn Multipart> {
        None
    }
    /// Read a small object with its version, for a later [`Driver::put_if`].
    async fn get_versioned(&self, p: &StoragePath) -> Result<(Bytes, Option<Version>), DriverError> {
        Ok((self.get_content(p).await?, None))
    }
    /// Write a small object only if `cond` holds; `Conflict` otherwise. Returns the new version.
    async fn put_if(
        &self,
        _p: &StoragePath,
        _data: Bytes,
        _cond: Precondition,
    ) -> Result<Option<Version>, DriverError> {
        Err(DriverError::Unsupported {
            driver: self.name(),
            what: "conditional writes",
        })
    }
    /// A URL the client can GET the object from directly (presigned), when the driver has one.
    async fn redirect_url(&self, _p: &StoragePath) -> Result<Option<String>, DriverError> {
        Ok(None)
    }

    // ---- the fence between writers and garbage collection (see `fence`)

    /// Take the fence as `role`. `lock` is the lock object's key, for drivers that fence with
    /// one; a driver that needs no fence keeps this default (nothing held).
    async fn fence(&self, _role: fence::FenceRole, _lock: &StoragePath) -> Result<fence::Fence, fence::FenceError> {
        Ok(fence::Fence::default())
    }
    /// Whether a collection's fence is up where writers must check it before each write.
    /// Drivers whose writers hold the fence instead (the filesystem) keep this default.
    async fn fenced(&self, _lock: &StoragePath) -> Result<bool, DriverError> {
        Ok(false)
    }
    /// Take the fence down: delete its lock object, or drop its lock.
    async fn release_fence(&self, fence: fence::Fence) -> Result<(), DriverError> {
        match &fence.lock_object {
            Some(lock) => self.delete(lock).await,
            None => Ok(()),
        }
    }
}

/// Multipart uploads addressed by id, so any process can continue one another started
/// (object_store's `MultipartStore`). Every part but the last must be at least 5 MiB.
#[async_trait]
pub trait Multipart: Send + Sync {
    /// The configured part size (`storage.s3.chunksize`).
    fn part_size(&self) -> usize;
    /// Start an upload that will become the object at `p`; returns its id.
    async fn create(&self, p: &StoragePath) -> Result<String, DriverError>;
    /// Upload part `idx` (from 0); returns the part's ETag.
    async fn put_part(&self, p: &StoragePath, id: &str, idx: usize, data: Vec<Bytes>) -> Result<String, DriverError>;
    /// Assemble the parts (ETags in order) into the object at `p`.
    async fn complete(&self, p: &StoragePath, id: &str, etags: Vec<String>) -> Result<(), DriverError>;
    /// Discard an upload and its parts. Aborting an unknown upload is not an error.
    async fn abort(&self, p: &StoragePath, id: &str) -> Result<(), DriverError>;
    /// Server-side copy of an object of `size` bytes (no bytes flow through Wharf).
    async fn copy(&self, from: &StoragePath, to: &StoragePath, size: u64) -> Result<(), DriverError>;
}

/// A blocking, append-only writer for upload data.
pub trait BlobWriter: Send {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), DriverError>;
    /// Current size of the object, including what this writer appended.
    fn size(&self) -> u64;
    /// Cut the object back to `len` bytes (used to roll back a rejected chunk).
    fn truncate(&mut self, len: u64) -> Result<(), DriverError>;
    /// Make everything written so far durable.
    fn commit(&mut self) -> Result<(), DriverError>;
}
