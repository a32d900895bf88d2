//! The appended session backend (drivers without a resumable writer: the filesystem). Sessions
//! are kept in storage so they survive restarts: `_uploads/<id>/{startedat, data,
//! hashstates/<alg>/<offset>}`. Bytes are hashed as they arrive (one pass, no re-read).
//!
//! Durability of chunks lags one chunk behind their `202` (filesystem store): a PATCH answers
//! once its bytes are written and hashed, while their `fdatasync` runs on in the background;
//! the next request on the session waits for it and only then checkpoints the hasher at that
//! offset. So the disk flushes chunk k while chunk k+1 crosses the network, instead of the
//! client waiting for every flush. What this promises:
//! - a process crash (SIGKILL, panic) loses nothing acknowledged: the bytes are in the page
//!   cache, and a restarted server resumes the hash from the newest checkpoint, rehashing what
//!   lies past it;
//! - a machine crash may lose at most the last acknowledged chunk of a session: the session
//!   then reports the shorter offset it holds (GET its URL for `Range`) and the client resumes
//!   from there, as the spec's recovery says. A checkpoint never claims bytes that were not
//!   durable when it was written;
//! - the closing PUT is durable before its `201`, as every blob is: it flushes the whole file.
//!
//! The hasher state after a chunk stays in memory (`Registry::warm`) for the session's next
//! request, used only while the data file still has the size it had (another replica
//! appending, cancelling or completing the session changes or removes it), so a chunk costs no
//! session reload.

mod write;

use bytes::Bytes;

use super::super::blobs::BlobInfo;
use super::super::digest::{Algorithm, Digest, Hasher};
use super::super::names::{RepoName, UploadId};
use super::super::{BodyStream, Registry, paths};
use super::{ChunkInfo, SessionAt, UploadStatus, body, session_key};
use crate::error::{Error, Result};
use crate::storage::DriverError;

/// A session as loaded from storage, or as this process's last request on it left it (kept in
/// `Registry::warm`, see the module docs): its algorithm, size and a hasher positioned there.
pub(crate) struct Session {
    alg: Algorithm,
    size: u64,
    hasher: Hasher,
    /// Offsets of the hash-state checkpoints in storage.
    checkpoints: Vec<u64>,
    /// The previous chunk's flush, still running: once it succeeds, the data through `size` is
    /// durable and `state` (the hasher at `size`) may be checkpointed.
    pending: Option<Pending>,
}

struct Pending {
    flush: tokio::task::JoinHandle<std::result::Result<(), DriverError>>,
    state: Bytes,
}

/// What `write_body` does once the bytes are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Flush before answering, no checkpoint (the session ends with this request).
    Final,
    /// Answer once written; flush in the background, checkpoint on the next request.
    Lagged,
}

/// Sessions whose hasher this process keeps in memory, at most.
const WARM_SESSIONS: usize = 256;

impl Registry {
    /// A new session's offset-0 hash state, which only records its algorithm (see
    /// `start_upload`: written without waiting for the disk, and never read back). A sha256
    /// session writes none, as registry:2's POST writes none: a session without `hashstates/`
    /// is sha256 (what Distribution assumes of every session). That spares each monolithic
    /// push two directories and a file to create and remove, and a data block to allocate,
    /// free and discard: on ext4, a quarter of the small-blob push's kernel time.
    pub(super) async fn append_open(&self, repo: &RepoName, id: &UploadId, alg: Algorithm) -> Result<()> {
        if alg == Algorithm::Sha256 {
            return Ok(());
        }
        let initial = Hasher::new(alg).serialize();
        self.driver
            .put_content_volatile(&paths::upload_hashstate(repo, id, alg, 0), Bytes::from(initial))
            .await?;
        Ok(())
    }

    pub(super) async fn append_status(&self, repo: &RepoName, id: &UploadId) -> Result<UploadStatus> {
        let size = match self.driver.stat(&paths::upload_data(repo, id)).await {
            Ok(fi) => fi.size,
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(UploadStatus { id: id.clone(), size })
    }

    /// PATCH: append the chunk to the data file; its flush lags one request behind.
    pub(super) async fn append_chunk(
        &self,
        at: SessionAt<'_>,
        chunk: ChunkInfo,
        body: BodyStream,
    ) -> Result<UploadStatus> {
        let SessionAt { repo, id } = at;
        let session = self.resume_session(at, chunk).await?;
        let session = self
            .write_body(repo, id, session, body, chunk, true, Durability::Lagged)
            .await?;
        let size = session.size;
        self.keep_warm(repo, id, session);
        Ok(UploadStatus { id: id.clone(), size })
    }

    /// The session's state, checked against where `chunk` says it starts (416 otherwise).
    async fn resume_session(&self, at: SessionAt<'_>, chunk: ChunkInfo) -> Result<Session> {
        let SessionAt { repo, id } = at;
        let session = self.current_session(repo, id).await?;
        if let Err(e) = chunk.check(session.size, repo, id) {
            self.keep_warm(repo, id, session);
            return Err(e);
        }
        Ok(session)
    }

    /// The session's state: from memory when this process wrote its last chunk and the data
    /// file still has that size, else loaded from storage.
    async fn current_session(&self, repo: &RepoName, id: &UploadId) -> Result<Session> {
        let warm = self
            .warm
            .lock()
            .expect("warm sessions poisoned")
            .remove(&session_key(repo, id));
        if let Some(session) = warm {
            match self.driver.stat(&paths::upload_data(repo, id)).await {
                Ok(fi) if fi.size == session.size => return Ok(session),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.load_session(repo, id).await
    }

    fn keep_warm(&self, repo: &RepoName, id: &UploadId, session: Session) {
        let mut warm = self.warm.lock().expect("warm sessions poisoned");
        if warm.len() >= WARM_SESSIONS {
            // Forget one: its next request reloads it from storage (a detached flush still
            // completes; only its checkpoint is not written).
            if let Some(k) = warm.keys().next().cloned() {
                warm.remove(&k);
            }
        }
        warm.insert(session_key(repo, id), session);
    }

    pub(super) fn forget_warm(&self, repo: &RepoName, id: &UploadId) {
        self.warm
            .lock()
            .expect("warm sessions poisoned")
            .remove(&session_key(repo, id));
    }

    /// Closing PUT: append the last chunk (flushed before the answer), then complete.
    pub(super) async fn append_finish(
        &self,
        at: SessionAt<'_>,
        digest: &Digest,
        chunk: ChunkInfo,
        body: BodyStream,
    ) -> Result<BlobInfo> {
        let SessionAt { repo, id } = at;
        let session = self.resume_session(at, chunk).await?;
        // The session ends here, so its hash state need not be checkpointed.
        let session = self
            .write_body(repo, id, session, body, chunk, true, Durability::Final)
            .await?;
        self.complete_upload(repo, id, digest, session).await
    }

    /// Verify the digest of a fully written upload, then move it into the store and link it.
    async fn complete_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        session: Session,
    ) -> Result<BlobInfo> {
        let data = paths::upload_data(repo, id);
        let computed = if session.alg == digest.algorithm() {
            session.hasher.finalize()
        } else {
            // The session hashed with another algorithm: hash the data again with the one asked for.
            self.hash_range(&data, Hasher::new(digest.algorithm()), 0, session.size)
                .await?
                .finalize()
        };
        if let Err(e) = body::check_digest(&computed, digest) {
            self.driver.delete(&paths::upload_dir(repo, id)).await?;
            return Err(e);
        }
        self.commit_blob(repo, digest, &data, session.size).await?;
        self.driver.delete(&paths::upload_dir(repo, id)).await?;
        Ok(BlobInfo {
            digest: digest.clone(),
            size: session.size,
        })
    }

    /// A one-request upload: written under a fresh id with no session files, then completed.
    pub(super) async fn append_put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        expected: ChunkInfo,
        body: BodyStream,
    ) -> Result<BlobInfo> {
        let id = UploadId::new();
        let alg = digest.algorithm();
        let fresh = Session {
            alg,
            size: 0,
            hasher: Hasher::new(alg),
            checkpoints: Vec::new(),
            pending: None,
        };
        let result = match self
            .write_body(repo, &id, fresh, body, expected, false, Durability::Final)
            .await
        {
            Ok(session) => self.complete_upload(repo, &id, digest, session).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = self.driver.delete(&paths::upload_dir(repo, &id)).await;
        }
        result
    }

    /// Load a session: its size, and a hasher resumed from the newest checkpoint at or below
    /// that size (hashing any bytes past the checkpoint, which only a crash leaves behind).
    async fn load_session(&self, repo: &RepoName, id: &UploadId) -> Result<Session> {
        let unknown = || Error::BlobUploadUnknown(id.clone().into());
        let (alg, has_states): (Algorithm, bool) = match self.driver.list(&paths::upload_hashstates(repo, id)).await {
            Ok(algs) => (algs.iter().find_map(|a| a.parse().ok()).ok_or_else(unknown)?, true),
            // no checkpoint yet: a sha256 session (`append_open`), if it exists at all
            Err(e) if e.is_not_found() => {
                if !self.exists(&paths::upload_startedat(repo, id)).await? {
                    return Err(unknown());
                }
                (Algorithm::Sha256, false)
            }
            Err(e) => return Err(e.into()),
        };
        let data = paths::upload_data(repo, id);
        let size = match self.driver.stat(&data).await {
            Ok(fi) => fi.size,
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e.into()),
        };
        let dir = paths::upload_hashstate(repo, id, alg, 0).parent();
        // (without `hashstates/` there is nothing to list)
        let listed = if has_states {
            self.driver.list(&dir).await
        } else {
            Ok(Vec::new())
        };
        let mut checkpoints: Vec<u64> = match listed {
            Ok(names) => names.iter().filter_map(|n| n.parse().ok()).collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        checkpoints.sort_unstable();
        let mut resumed = None;
        for &offset in checkpoints.iter().rev().filter(|&&o| o <= size) {
            if offset == 0 {
                // The state at offset 0 is a fresh hasher; its file only records the algorithm.
                resumed = Some((0, Hasher::new(alg)));
                break;
            }
            match self
                .driver
                .get_content(&paths::upload_hashstate(repo, id, alg, offset))
                .await
            {
                Ok(state) => {
                    if let Some(h) = Hasher::deserialize(alg, &state) {
                        resumed = Some((offset, h));
                        break;
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (offset, hasher) = resumed.unwrap_or((0, Hasher::new(alg)));
        let hasher = if offset < size {
            tracing::info!(upload = %id, offset, size, "rehashing upload data past the last checkpoint");
            self.hash_range(&data, hasher, offset, size).await?
        } else {
            hasher
        };
        Ok(Session {
            alg,
            size,
            hasher,
            checkpoints,
            pending: None,
        })
    }
}
