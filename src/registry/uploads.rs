//! Upload sessions, kept in storage so they survive restarts and can move between replicas:
//! `_uploads/<id>/{startedat, data, hashstates/<alg>/<offset>}`. Bytes are hashed as they
//! arrive (one pass, no re-read).
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

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::blobs::BlobInfo;
use super::digest::{Algorithm, Digest, Hasher};
use super::names::{RepoName, UploadId};
use super::{BodyStream, Registry, paths};
use crate::error::{Error, Result};
use crate::storage::DriverError;

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
    pub(super) fn check(&self, size: u64, id: &UploadId, location: &str) -> Result<()> {
        if let Some(start) = self.start
            && start != size
        {
            return Err(Error::UploadRangeInvalid {
                location: location.to_owned(),
                upload_id: id.to_string(),
                size,
                start,
            });
        }
        if let Some(reason) = self.invalid {
            return Err(self.refused(size, id, location, reason.to_owned()));
        }
        Ok(())
    }

    /// The 416 for a chunk whose body did not have the length its `Content-Range` announced.
    pub(super) fn length_mismatch(&self, size: u64, id: &UploadId, location: &str, received: u64) -> Error {
        let len = self.len.unwrap_or_default();
        self.refused(
            size,
            id,
            location,
            format!("Content-Range announced {len} bytes but the body had {received}; the chunk was discarded"),
        )
    }

    fn refused(&self, size: u64, id: &UploadId, location: &str, reason: String) -> Error {
        Error::ChunkRangeInvalid {
            location: location.to_owned(),
            upload_id: id.to_string(),
            size,
            reason,
        }
    }
}

/// A session as loaded from storage, or as this process's last request on it left it (kept in
/// `Registry::warm`, see the module docs): its algorithm, size and a hasher positioned there.
pub(super) struct Session {
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
        location: &str,
    ) -> Result<UploadStatus> {
        let r = self.append_upload_inner(repo, id, chunk, body, location).await;
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
        location: &str,
    ) -> Result<BlobInfo> {
        let r = self.finish_upload_inner(repo, id, digest, chunk, body, location).await;
        self.track_session(repo, id, r, true).await
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        let r = self.cancel_upload_inner(repo, id).await;
        self.track_session(repo, id, r, true).await
    }

    async fn open_session(&self, repo: &RepoName, id: UploadId, alg: Algorithm) -> Result<UploadStatus> {
        let now = humantime::format_rfc3339(SystemTime::now()).to_string();
        self.driver
            .put_content_volatile(&paths::upload_startedat(repo, &id), Bytes::from(now))
            .await?;
        if self.resumable() {
            self.mp_start(repo, &id, alg).await?;
            return Ok(UploadStatus { id, size: 0 });
        }
        let initial = Hasher::new(alg).serialize();
        self.driver
            .put_content_volatile(&paths::upload_hashstate(repo, &id, alg, 0), Bytes::from(initial))
            .await?;
        Ok(UploadStatus { id, size: 0 })
    }

    async fn upload_status_inner(&self, repo: &RepoName, id: &UploadId) -> Result<UploadStatus> {
        if !self.exists(&paths::upload_startedat(repo, id)).await? {
            return Err(Error::BlobUploadUnknown(id.to_string()));
        }
        if self.resumable() {
            return self.mp_status(repo, id).await;
        }
        let size = match self.driver.stat(&paths::upload_data(repo, id)).await {
            Ok(fi) => fi.size,
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(UploadStatus { id: id.clone(), size })
    }

    /// Append a chunk (PATCH). A chunk that does not start at the current offset is refused
    /// with 416; one whose length disagrees with its `Content-Range` is rolled back.
    async fn append_upload_inner(
        &self,
        repo: &RepoName,
        id: &UploadId,
        chunk: ChunkInfo,
        body: BodyStream,
        location: &str,
    ) -> Result<UploadStatus> {
        let _guard = self.lock_session(repo, id).await?;
        if self.resumable() {
            return self.mp_append(repo, id, chunk, body, location).await;
        }
        let session = self.resume_session(repo, id, chunk, location).await?;
        let session = self
            .write_body(repo, id, session, body, chunk, Some(location), Durability::Lagged)
            .await?;
        let size = session.size;
        self.keep_warm(repo, id, session);
        Ok(UploadStatus { id: id.clone(), size })
    }

    /// The session's state, checked against where `chunk` says it starts (416 otherwise).
    async fn resume_session(
        &self,
        repo: &RepoName,
        id: &UploadId,
        chunk: ChunkInfo,
        location: &str,
    ) -> Result<Session> {
        let session = self.current_session(repo, id).await?;
        if let Err(e) = chunk.check(session.size, id, location) {
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

    fn forget_warm(&self, repo: &RepoName, id: &UploadId) {
        self.warm
            .lock()
            .expect("warm sessions poisoned")
            .remove(&session_key(repo, id));
    }

    /// Close a session (PUT `?digest=`), with an optional last chunk. On a digest mismatch the
    /// session is discarded and nothing is stored.
    async fn finish_upload_inner(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        chunk: ChunkInfo,
        body: BodyStream,
        location: &str,
    ) -> Result<BlobInfo> {
        let _guard = self.lock_session(repo, id).await?;
        if self.resumable() {
            self.check_gc_lock().await?;
            return self.mp_finish(repo, Some((id, location)), digest, chunk, body).await;
        }
        let session = self.resume_session(repo, id, chunk, location).await?;
        // The session ends here, so its hash state need not be checkpointed.
        let session = self
            .write_body(repo, id, session, body, chunk, Some(location), Durability::Final)
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
        if &computed != digest {
            self.driver.delete(&paths::upload_dir(repo, id)).await?;
            return Err(Error::DigestInvalid(format!(
                "the uploaded content has digest {computed}, not {digest}; the upload was discarded"
            )));
        }
        self.commit_blob(repo, digest, &data, session.size).await?;
        self.driver.delete(&paths::upload_dir(repo, id)).await?;
        Ok(BlobInfo {
            digest: digest.clone(),
            size: session.size,
        })
    }

    /// Monolithic upload in one request (POST `?digest=` with the body).
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        len: Option<u64>,
        body: BodyStream,
    ) -> Result<BlobInfo> {
        if self.resumable() {
            self.check_gc_lock().await?;
            let chunk = ChunkInfo {
                len,
                ..ChunkInfo::default()
            };
            return self.mp_finish(repo, None, digest, chunk, body).await;
        }
        // A one-request upload needs no session files: nobody can resume or query it.
        let id = UploadId::new();
        let alg = digest.algorithm();
        let fresh = Session {
            alg,
            size: 0,
            hasher: Hasher::new(alg),
            checkpoints: Vec::new(),
            pending: None,
        };
        let expected = ChunkInfo {
            len,
            ..ChunkInfo::default()
        };
        let result = match self
            .write_body(repo, &id, fresh, body, expected, None, Durability::Final)
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

    async fn cancel_upload_inner(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        let _guard = self.lock_session(repo, id).await?;
        self.forget_warm(repo, id);
        if !self.exists(&paths::upload_startedat(repo, id)).await? {
            return Err(Error::BlobUploadUnknown(id.to_string()));
        }
        if self.resumable() {
            return self.mp_discard(repo, id).await;
        }
        Ok(self.driver.delete(&paths::upload_dir(repo, id)).await?)
    }

    /// Remove a session and everything it holds in storage (the upload purger, GC).
    pub(crate) async fn discard_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.forget_warm(repo, id);
        if self.resumable() {
            return self.mp_discard(repo, id).await;
        }
        Ok(self.driver.delete(&paths::upload_dir(repo, id)).await?)
    }

    /// Whether upload data goes through the driver's resumable writer (object stores) rather
    /// than being appended in place.
    fn resumable(&self) -> bool {
        self.driver.capabilities().resumable_writer
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

    /// Load a session: its size, and a hasher resumed from the newest checkpoint at or below
    /// that size (hashing any bytes past the checkpoint, which only a crash leaves behind).
    async fn load_session(&self, repo: &RepoName, id: &UploadId) -> Result<Session> {
        let unknown = || Error::BlobUploadUnknown(id.to_string());
        let algs = match self.driver.list(&paths::upload_hashstates(repo, id)).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        let alg: Algorithm = algs.iter().find_map(|a| a.parse().ok()).ok_or_else(unknown)?;
        let data = paths::upload_data(repo, id);
        let size = match self.driver.stat(&data).await {
            Ok(fi) => fi.size,
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e.into()),
        };
        let dir = paths::upload_hashstate(repo, id, alg, 0).parent();
        let mut checkpoints: Vec<u64> = match self.driver.list(&dir).await {
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
            .map_err(|e| Error::Internal(e.to_string()))?;
        }
        Ok(h)
    }

    /// Stream `body` into the session's data file while hashing it on a blocking thread. With
    /// [`Durability::Lagged`] a whole, accepted chunk is answered before it is flushed (see the
    /// module docs); a rejected, failed or interrupted one, and every [`Durability::Final`]
    /// body, is flushed before the answer (an interrupted one is also checkpointed, so the
    /// client can resume without a rehash).
    #[allow(clippy::too_many_arguments)]
    async fn write_body(
        &self,
        repo: &RepoName,
        id: &UploadId,
        session: Session,
        mut body: BodyStream,
        expected: ChunkInfo,
        location: Option<&str>,
        mode: Durability,
    ) -> Result<Session> {
        let Session {
            alg,
            size: start,
            hasher,
            mut checkpoints,
            pending,
        } = session;
        let mut writer = self.driver.append_writer(&paths::upload_data(repo, id)).await?;
        if writer.size() != start {
            return Err(Error::Internal(format!(
                "upload {id}: data is {} bytes, expected {start}",
                writer.size()
            )));
        }
        // Writing and hashing run on two blocking threads fed the same (reference-counted)
        // chunks, so the disk copy and the hash overlap instead of adding up.
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let (htx, mut hrx) = mpsc::channel::<Bytes>(4);
        let sink = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = rx.blocking_recv() {
                if let Err(e) = writer.write_all(&chunk) {
                    return (writer, Err(e));
                }
            }
            (writer, Ok(()))
        });
        let hashing = tokio::task::spawn_blocking(move || {
            let mut hasher = hasher;
            while let Some(chunk) = hrx.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher
        });

        let mut interrupted = None;
        let idle = crate::hooks::body_idle_timeout();
        loop {
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    if tx.send(chunk.clone()).await.is_err() || htx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    interrupted = Some(e.to_string());
                    break;
                }
                Err(_) => {
                    interrupted = Some(format!("no body bytes received for {idle:?}"));
                    break;
                }
            }
        }
        drop((tx, htx));
        let (writer, written) = sink.await.map_err(|e| Error::Internal(e.to_string()))?;
        let hasher = hashing.await.map_err(|e| Error::Internal(e.to_string()))?;

        let received = writer.size() - start;
        let rollback = written.is_err() || (interrupted.is_none() && expected.len.is_some_and(|len| len != received));
        let lagged = mode == Durability::Lagged && !rollback && interrupted.is_none();

        // The previous chunk's flush has had this whole request to finish. Once it has, the
        // bytes through `start` are durable and may be checkpointed (below, once this chunk
        // is settled, so a full disk cannot keep a rejected chunk's bytes).
        let mut durable_start = None;
        if let Some(Pending { flush, state }) = pending {
            match flush.await.map_err(|e| Error::Internal(e.to_string()))? {
                Ok(()) => durable_start = (mode == Durability::Lagged).then_some(state),
                Err(e) => {
                    // Acknowledged bytes may not have reached the disk: the session cannot be
                    // trusted any more. Discard it; the client starts the upload over.
                    tracing::error!(upload = %id, "flushing upload data failed: {e}; discarding the session");
                    drop(writer);
                    self.driver.delete(&paths::upload_dir(repo, id)).await?;
                    return Err(e.into());
                }
            }
        }

        let (writer, synced) = if lagged {
            (writer, Ok(()))
        } else {
            blocking(move || {
                let mut writer = writer;
                let result = if rollback {
                    writer.truncate(start)
                } else {
                    writer.commit()
                };
                (writer, result)
            })
            .await?
        };
        written?;
        synced?;
        crate::hooks::failpoint("upload-data-written");
        if let Some(state) = durable_start {
            // Best effort: a missing checkpoint only means a longer rehash after a restart.
            if let Err(e) = self
                .checkpoint(repo, id, alg, &mut checkpoints, start, state, false)
                .await
            {
                tracing::warn!(upload = %id, offset = start, "could not checkpoint the upload's hash state: {e}");
            }
        }
        if rollback {
            return Err(match location {
                Some(location) => expected.length_mismatch(start, id, location, received),
                // A one-request upload has no session to resume.
                None => Error::SizeInvalid(format!(
                    "the request announced {} bytes but the body had {received}",
                    expected.len.unwrap_or_default()
                )),
            });
        }
        let size = writer.size();
        if let Some(why) = interrupted {
            if size != start {
                let state = Bytes::from(hasher.serialize());
                self.checkpoint(repo, id, alg, &mut checkpoints, size, state, true)
                    .await?;
            }
            tracing::warn!(upload = %id, kept = size, "upload body interrupted: {why}");
            return Err(Error::BlobUploadInvalid(format!(
                "the request body was interrupted: {why}"
            )));
        }
        let pending = (lagged && size != start).then(|| {
            let mut writer = writer;
            Pending {
                state: Bytes::from(hasher.serialize()),
                flush: tokio::task::spawn_blocking(move || writer.commit()),
            }
        });
        Ok(Session {
            alg,
            size,
            hasher,
            checkpoints,
            pending,
        })
    }

    /// Save the hasher's `state` at `offset` (whose bytes are durable), then delete the older
    /// checkpoints. `durable`: wait for the state itself to be durable too (a lost state only
    /// costs a rehash from an older one, or from the start).
    #[allow(clippy::too_many_arguments)]
    async fn checkpoint(
        &self,
        repo: &RepoName,
        id: &UploadId,
        alg: Algorithm,
        checkpoints: &mut Vec<u64>,
        offset: u64,
        state: Bytes,
        durable: bool,
    ) -> Result<()> {
        let p = paths::upload_hashstate(repo, id, alg, offset);
        if durable {
            self.driver.put_content(&p, state).await?;
        } else {
            self.driver.put_content_volatile(&p, state).await?;
        }
        for old in std::mem::take(checkpoints) {
            if old != offset {
                self.driver.delete(&paths::upload_hashstate(repo, id, alg, old)).await?;
            }
        }
        checkpoints.push(offset);
        Ok(())
    }
}

fn session_key(repo: &RepoName, id: &UploadId) -> String {
    format!("{repo}/{id}")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(e.to_string()))
}
