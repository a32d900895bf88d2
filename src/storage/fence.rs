//! The fence between writers and garbage collection, as a driver operation.
//!
//! A collection must not sweep while pushes are linking new content. How a store keeps the two
//! apart depends on what it is:
//! - the filesystem: an advisory `flock` on `<root>/wharf.lock`. Servers that write hold it
//!   shared for their lifetime, a collection takes it exclusively; neither checks anything per
//!   request. A read-only server takes nothing.
//! - object stores shared by replicas, where no process-level lock exists: a lock object
//!   (`wharf-gc.lock` at the root) written with `If-None-Match: *`. Writers hold nothing; they
//!   check [`Driver::fenced`](super::Driver::fenced) before each write instead, and the sweep
//!   spares blobs written since the lock's time ([`Fence::since`]).

use std::any::Any;
use std::time::SystemTime;

use bytes::Bytes;

use super::{Driver, DriverError, Precondition, StoragePath};

/// Who asks for the fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceRole {
    /// A server that writes: refused while a collection runs.
    Writer,
    /// A garbage collection. `force` goes ahead although someone holds the fence (a stale lock
    /// object is replaced; a server's flock is ignored with a warning). A `dry_run` removes
    /// nothing, so where writers check per write it takes nothing and blocks no push.
    Collector { force: bool, dry_run: bool },
}

/// A fence taken; released by [`Driver::release_fence`] (or, for a flock, by dropping it).
#[derive(Default)]
pub struct Fence {
    /// The cutoff for the sweep: content written at or after it is spared, because writers that
    /// began before the fence went up may still be finishing (`None`: no such writers exist).
    pub since: Option<SystemTime>,
    /// What to tell the operator (what was taken, or which holder `--force` overrode).
    pub note: Option<String>,
    /// Writers notice this fence only at their next write (a lock object), so writes already
    /// in flight may need a grace period to finish.
    pub checked_per_write: bool,
    /// The lock object to delete on release.
    pub(crate) lock_object: Option<StoragePath>,
    /// Whatever keeps a process-level lock held (an open, locked file).
    pub(crate) _held: Option<Box<dyn Any + Send + Sync>>,
}

/// Why a fence could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// Someone else holds it; the message says who and what to do.
    #[error("{0}")]
    Held(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// The object-store fence: take the lock object at `lock` (`If-None-Match: *`, so two runs never
/// overlap; `force` replaces a stale one). Its `since` is the lock's time as the store records it.
pub async fn take_lock_object(driver: &dyn Driver, lock: &StoragePath, role: FenceRole) -> Result<Fence, FenceError> {
    let FenceRole::Collector { force, dry_run } = role else {
        // Writers hold nothing: they check the lock object before each write.
        return Ok(Fence::default());
    };
    if dry_run {
        return Ok(Fence {
            since: Some(SystemTime::now()),
            ..Fence::default()
        });
    }
    let me = format!(
        "{{\"pid\": {}, \"started\": \"{}\"}}\n",
        std::process::id(),
        humantime::format_rfc3339(SystemTime::now())
    );
    match driver.put_if(lock, Bytes::from(me.clone()), Precondition::Absent).await {
        Ok(_) => {}
        Err(DriverError::Conflict(_)) if force => driver.put_content(lock, Bytes::from(me)).await?,
        Err(DriverError::Conflict(_)) => {
            let holder = driver.get_content(lock).await.unwrap_or_default();
            return Err(FenceError::Held(format!(
                "another garbage collection holds {lock} ({}); wait for it, or pass --force if it died",
                String::from_utf8_lossy(&holder).trim()
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let since = driver.stat(lock).await?.modified;
    Ok(Fence {
        since: Some(since),
        note: Some(format!(
            "took {}/{lock} at {}",
            driver.describe(),
            humantime::format_rfc3339_seconds(since)
        )),
        checked_per_write: true,
        lock_object: Some(lock.clone()),
        _held: None,
    })
}

/// Whether a collection's lock object is up (writers on object stores ask before each write).
pub async fn lock_object_present(driver: &dyn Driver, lock: &StoragePath) -> Result<bool, DriverError> {
    match driver.get_content(lock).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The filesystem fence: `held` is the flock on `<root>/wharf.lock` if it could be taken for
/// `role` (shared for a writer, exclusive for a collection); `None` when someone holds it.
pub(crate) fn flock(root: &str, role: FenceRole, held: Option<std::fs::File>) -> Result<Fence, FenceError> {
    match (held, role) {
        (Some(file), _) => Ok(Fence {
            _held: Some(Box::new(file)),
            ..Fence::default()
        }),
        (None, FenceRole::Writer) => Err(FenceError::Held(format!(
            "garbage collection is running on {root} (it holds wharf.lock); wait for it, or start with \
             storage.maintenance.readonly.enabled = true"
        ))),
        (None, FenceRole::Collector { force: true, .. }) => Ok(Fence {
            note: Some(format!(
                "warning: a server holds {root}/wharf.lock; continuing because of --force"
            )),
            ..Fence::default()
        }),
        (None, FenceRole::Collector { .. }) => Err(FenceError::Held(format!(
            "a server is serving {root} read-write (it holds wharf.lock): stop it, or restart it with \
             storage.maintenance.readonly.enabled = true, then run garbage-collect again (or pass --force)"
        ))),
    }
}
