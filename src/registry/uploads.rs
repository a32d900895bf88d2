//! Upload sessions: one flow, two backends. This module is the flow every session follows,
//! whatever the storage: open it (counted against the caps in `limits`), check each chunk
//! against the session's offset (416 otherwise), run one request at a time per session, read
//! the body through the one body loop (`body`: the configured idle timeout, hashing in
//! batches on the blocking pool beside the store's copy, the same error messages), check the digest, and
//! link the blob. Where the bytes and the hash state live between requests is the backend's,
//! chosen once by the driver's capabilities ([`Backend`]):
//!
//! - [`Backend::Appended`] (`append`, the filesystem): `_uploads/<id>/{startedat, data,
//!   hashstates/<alg>/<offset>}` as registry:2 keeps them; the data file is appended in place,
//!   its durability lags one chunk behind the answer (see `append`).
//! - [`Backend::Resumable`] (`objectstore`, object stores): `_uploads/<id>/{startedat,
//!   state.json}` and the driver's resumable writer (`storage::resumable`), so any replica can
//!   take any request of a session.

mod append;
pub(crate) mod body;

use std::time::Duration;

use futures::StreamExt;

use super::blobs::BlobInfo;
use super::digest::{Algorithm, Digest, Hasher};
use super::names::{RepoName, UploadId};
use super::{BodyStream, Registry, paths};
use crate::error::{Error, Result};
use crate::storage::DriverError;
pub(super) use append::Session;

/// How long a request waits for another request on the same session to finish.
const SESSION_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct UploadStatus {
    pub id: UploadId,
    /// Bytes received so far.
    pub size: u64,
}

/// What a chunk request says about its bytes (`Content-Range`, `Content-Length`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkInfo {
    /// First byte offset claimed by `Content-Range`; must equal the session's current size.
    pub start: Option<u64>,
    /// Length the chunk must have (from `Content-Range`).
    pub len: Option<u64>,
    /// Why the request's numbers cannot describe its body (a `Content-Range` whose length
    /// overflows, a `Content-Length` that disagrees with it): refused with 416 before any
    /// byte is read.
    pub invalid: Option<&'static str>,
}

impl ChunkInfo {
    /// The chunk against a session now at `size`: 416 with the session's range when it does
    /// not start there, or when its numbers cannot describe its body.
    pub(super) fn check(&self, size: u64, repo: &RepoName, id: &UploadId) -> Result<()> {
        if let Some(start) = self.start
            && start != size
        {
            return Err(Error::UploadRangeInvalid {
                repo: repo.clone(),
                upload_id: id.clone(),
                size,
                start,
            });
        }
        if let Some(reason) = self.invalid {
            return Err(self.refused(size, repo, id, reason.to_owned()));
        }
        Ok(())
    }

    /// The 416 for a chunk whose body did not have the length its `Content-Range` announced.
    pub(super) fn length_mismatch(&self, size: u64, repo: &RepoName, id: &UploadId, received: u64) -> Error {
        let len = self.len.unwrap_or_default();
        self.refused(
            size,
            repo,
            id,
            format!("Content-Range announced {len} bytes but the body had {received}; the chunk was discarded"),
        )
    }

    fn refused(&self, size: u64, repo: &RepoName, id: &UploadId, reason: String) -> Error {
        Error::ChunkRangeInvalid {
            repo: repo.clone(),
            upload_id: id.clone(),
            size,
            reason,
        }
    }
}

/// One request on an open session: which session (the 416 answers name it; the HTTP layer
/// turns it into a `Location`).
#[derive(Clone, Copy)]
pub(crate) struct SessionAt<'a> {
    pub repo: &'a RepoName,
    pub id: &'a UploadId,
}

/// Where a session's bytes and hash state live between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Appended in place, with hash-state checkpoints (`append`).
    Appended,
    /// The driver's resumable writer and a conditionally written `state.json` (`objectstore`).
    Resumable,
}

impl Registry {
    /// The session backend this registry's driver calls for.
    pub(crate) fn upload_backend(&self) -> Backend {
        if self.driver.capabilities().resumable_writer {
            Backend::Resumable
        } else {
            Backend::Appended
        }
    }

    /// Open a new session. `alg` is the session's digest algorithm (`?digest-algorithm=`).
    ///
    /// A new session holds no data yet, so its files are written without waiting for the disk
    /// (two fewer fsync rounds per blob pushed with POST + PUT): after a machine crash the
    /// session is either there or cleanly unknown (404 BLOB_UPLOAD_UNKNOWN, and the client
    /// starts over), and the offset-0 hash state is never read back (see `load_session`), so a
    /// lost or empty one does no harm. Chunks are fsync'd as before.
    ///
    /// The session counts against the caps on open sessions (`registry::limits`) of `repo` and
    /// of `client` (who asks: a user, else an address) until it ends; beyond either cap the
    /// answer is 429 TOOMANYREQUESTS and nothing is written.
    pub async fn start_upload(&self, repo: &RepoName, alg: Algorithm, client: &str) -> Result<UploadStatus> {
        let id = UploadId::new();
        let slot = self.reserve_upload(repo, client, &id).await?;
        let st = self.open_session(repo, id, alg).await?;
        slot.keep();
        Ok(st)
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<UploadStatus> {
        let r = self.upload_status_inner(repo, id).await;
        self.track_session(repo, id, r, false).await
    }

    /// Append a chunk (PATCH); see `append_upload_inner`.
    pub async fn append_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        chunk: ChunkInfo,
        body: BodyStream,
    ) -> Result<UploadStatus> {
        let r = self.append_upload_inner(SessionAt { repo, id }, chunk, body).await;
        self.track_session(repo, id, r, false).await
    }

    /// Close a session (PUT `?digest=`); see `finish_upload_inner`. A session that ended
    /// (stored, or discarded on a mismatch) no longer counts against the caps.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        chunk: ChunkInfo,
        body: BodyStream,
    ) -> Result<BlobInfo> {
        let r = self
            .finish_upload_inner(SessionAt { repo, id }, digest, chunk, body)
            .await;
        self.track_session(repo, id, r, true).await
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        let r = self.cancel_upload_inner(repo, id).await;
        self.track_session(repo, id, r, true).await
    }

    /// Monolithic upload in one request (POST `?digest=` with the body): no session files,
    /// since nobody can resume or query it.
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        len: Option<u64>,
        body: BodyStream,
    ) -> Result<BlobInfo> {
        self.check_gc_lock().await?;
        let chunk = ChunkInfo {
            len,
            ..ChunkInfo::default()
        };
        match self.upload_backend() {
            Backend::Appended => self.append_put_blob(repo, digest, chunk, body).await,
            Backend::Resumable => self.mp_finish(repo, None, digest, chunk, body).await,
        }
    }

    async fn open_session(&self, repo: &RepoName, id: UploadId, alg: Algorithm) -> Result<UploadStatus> {
        let now = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
        self.driver
            .put_content_volatile(&paths::upload_startedat(repo, &id), bytes::Bytes::from(now))
            .await?;
        match self.upload_backend() {
            Backend::Appended => self.append_open(repo, &id, alg).await?,
            Backend::Resumable => self.mp_start(repo, &id, alg).await?,
        }
        Ok(UploadStatus { id, size: 0 })
    }

    async fn upload_status_inner(&self, repo: &RepoName, id: &UploadId) -> Result<UploadStatus> {
        if !self.exists(&paths::upload_startedat(repo, id)).await? {
            return Err(Error::BlobUploadUnknown(id.clone().into()));
        }
        match self.upload_backend() {
            Backend::Appended => self.append_status(repo, id).await,
            Backend::Resumable => self.mp_status(repo, id).await,
        }
    }

    /// Append a chunk (PATCH). A chunk that does not start at the current offset is refused
    /// with 416; one whose length disagrees with its `Content-Range` is rolled back.
    async fn append_upload_inner(&self, at: SessionAt<'_>, chunk: ChunkInfo, body: BodyStream) -> Result<UploadStatus> {
        let _guard = self.lock_session(at.repo, at.id).await?;
        match self.upload_backend() {
            Backend::Appended => self.append_chunk(at, chunk, body).await,
            Backend::Resumable => self.mp_append(at, chunk, body).await,
        }
    }

    /// Close a session (PUT `?digest=`), with an optional last chunk. On a digest mismatch the
    /// session is discarded and nothing is stored.
    async fn finish_upload_inner(
        &self,
        at: SessionAt<'_>,
        digest: &Digest,
        chunk: ChunkInfo,
        body: BodyStream,
    ) -> Result<BlobInfo> {
        let _guard = self.lock_session(at.repo, at.id).await?;
        self.check_gc_lock().await?;
        match self.upload_backend() {
            Backend::Appended => self.append_finish(at, digest, chunk, body).await,
            Backend::Resumable => self.mp_finish(at.repo, Some(at.id), digest, chunk, body).await,
        }
    }

    async fn cancel_upload_inner(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        let _guard = self.lock_session(repo, id).await?;
        self.forget_warm(repo, id);
        if !self.exists(&paths::upload_startedat(repo, id)).await? {
            return Err(Error::BlobUploadUnknown(id.clone().into()));
        }
        self.discard_upload(repo, id).await
    }

    /// Remove a session and everything it holds in storage (cancel, the upload purger, GC).
    pub(crate) async fn discard_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.forget_warm(repo, id);
        match self.upload_backend() {
            Backend::Appended => Ok(self.driver.delete(&paths::upload_dir(repo, id)).await?),
            Backend::Resumable => self.mp_discard(repo, id).await,
        }
    }

    async fn lock_session(&self, repo: &RepoName, id: &UploadId) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        let key = session_key(repo, id);
        let mutex = {
            let mut sessions = self.sessions.lock().expect("session map poisoned");
            if let Some(m) = sessions.get(&key).and_then(|w| w.upgrade()) {
                m
            } else {
                if sessions.len() > 1024 {
                    sessions.retain(|_, w| w.strong_count() > 0);
                }
                let m = std::sync::Arc::new(tokio::sync::Mutex::new(()));
                sessions.insert(key, std::sync::Arc::downgrade(&m));
                m
            }
        };
        tokio::time::timeout(SESSION_WAIT, mutex.lock_owned())
            .await
            .map_err(|_| Error::BlobUploadInvalid("another request is still writing to this upload".into()))
    }

    pub(crate) async fn hash_range(
        &self,
        p: &crate::storage::StoragePath,
        mut h: Hasher,
        start: u64,
        end: u64,
    ) -> Result<Hasher> {
        if start == end {
            return Ok(h);
        }
        let mut stream = self.driver.reader(p, Some((start, end))).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| DriverError::io(p, e))?;
            h = tokio::task::spawn_blocking(move || {
                h.update(&chunk);
                h
            })
            .await
            .map_err(Error::internal)?;
        }
        Ok(h)
    }
}

fn session_key(repo: &RepoName, id: &UploadId) -> String {
    format!("{repo}/{id}")
}
