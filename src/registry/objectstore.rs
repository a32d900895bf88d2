//! Upload sessions on object stores (drivers whose capabilities name a resumable writer), where
//! data cannot be appended in place. Any replica can take any request of a session, because
//! everything lives in the store:
//!
//! - `_uploads/<id>/state.json`: size and the serialized hash state (this module's), and the
//!   resumable writer's state (`storage::resumable::WriterState`: part size, the multipart
//!   upload's id, the ETags of the whole parts so far, the name of the tail object). Each request
//!   ends by rewriting it with `If-Match: <etag it read>`, so of two requests racing on one
//!   session only one commits; the other gets `BLOB_UPLOAD_INVALID` and changes nothing.
//! - the part pipeline, fixed-offset cutting and tail objects (`_uploads/<id>/tail-<uuid>`)
//!   are the writer's, under `storage/`.
//! - bytes are hashed as they stream through; the digest is checked before anything is written at
//!   the blob's content address. A blob under one part size is written there with a single PUT. A
//!   larger one whose digest is known before its first part (`POST ?digest=`, or a `PUT ?digest=`
//!   carrying the bytes) is a multipart upload created at the content address and completed only
//!   after the digest matched (aborted otherwise). A session whose parts came in PATCHes was
//!   assembled at `_uploads/<id>/data`, and is copied to the content address server-side.
//! - a request that fails or is cut short during the closing PUT leaves the session as the last
//!   PATCH committed it, so the client can retry the PUT.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::blobs::BlobInfo;
use super::digest::{Algorithm, Digest, Hasher};
use super::names::{RepoName, UploadId};
use super::uploads::body::{self, Pumped, Sink};
use super::uploads::{ChunkInfo, SessionAt, UploadStatus};
use super::{BodyStream, Registry, paths};
use crate::error::{Error, Result};
use crate::storage::resumable::{ResumableWriter, WriterState};
use crate::storage::{DriverError, Precondition, StoragePath, Version};

/// What `_uploads/<id>/state.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SessionState {
    pub alg: String,
    pub size: u64,
    /// Serialized hasher state after `size` bytes, hex.
    pub hashstate: String,
    /// Where the bytes are (the same JSON fields as before the writer moved to `storage/`).
    #[serde(flatten)]
    pub writer: WriterState,
}

impl SessionState {
    fn fresh(alg: Algorithm, writer: WriterState) -> Self {
        SessionState {
            alg: alg.as_str().to_owned(),
            size: 0,
            hashstate: hex::encode(Hasher::new(alg).serialize()),
            writer,
        }
    }

    fn algorithm(&self) -> Result<Algorithm> {
        self.alg.parse().map_err(Error::internal)
    }

    fn hasher(&self) -> Result<Hasher> {
        let alg = self.algorithm()?;
        hex::decode(&self.hashstate)
            .ok()
            .and_then(|b| Hasher::deserialize(alg, &b))
            .ok_or_else(|| Error::internal("unreadable hash state in an upload session"))
    }

    fn to_json(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("state serializes"))
    }
}

/// The resumable writer as the body loop's sink: a part upload's failure stops the loop.
struct Parts<'a> {
    writer: &'a mut ResumableWriter,
    failed: Option<DriverError>,
}

impl Sink for Parts<'_> {
    async fn accept(&mut self, chunk: Bytes) -> bool {
        match self.writer.write(chunk).await {
            Ok(()) => true,
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }
}

impl Registry {
    pub(crate) async fn mp_start(&self, repo: &RepoName, id: &UploadId, alg: Algorithm) -> Result<()> {
        let state = SessionState::fresh(alg, WriterState::fresh(self.driver.as_ref()));
        self.driver
            .put_if(&paths::upload_state(repo, id), state.to_json(), Precondition::Absent)
            .await?;
        Ok(())
    }

    async fn mp_load(&self, repo: &RepoName, id: &UploadId) -> Result<(SessionState, Option<Version>)> {
        match self.driver.get_versioned(&paths::upload_state(repo, id)).await {
            Ok((b, v)) => {
                let s: SessionState = serde_json::from_slice(&b)
                    .map_err(|e| Error::internal(format!("unreadable upload state for {id}: {e}")))?;
                Ok((s, v))
            }
            Err(e) if e.is_not_found() => Err(Error::BlobUploadUnknown(id.clone().into())),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn mp_status(&self, repo: &RepoName, id: &UploadId) -> Result<UploadStatus> {
        let (s, _) = self.mp_load(repo, id).await?;
        Ok(UploadStatus {
            id: id.clone(),
            size: s.size,
        })
    }

    /// Abort the session's multipart upload (if any) and delete its objects.
    pub(crate) async fn mp_discard(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        if let Ok((s, _)) = self.mp_load(repo, id).await
            && let Err(e) = s
                .writer
                .abort(self.driver.as_ref(), &paths::upload_data(repo, id))
                .await
        {
            tracing::warn!(upload = %id, "could not abort the multipart upload: {e}");
        }
        Ok(self.driver.delete(&paths::upload_dir(repo, id)).await?)
    }

    /// PATCH on an object store: stream the chunk into the session's writer, then commit the
    /// state naming its new parts and tail (conditionally). Whatever fails is abandoned.
    pub(crate) async fn mp_append(
        &self,
        at: SessionAt<'_>,
        chunk: ChunkInfo,
        body: BodyStream,
    ) -> Result<UploadStatus> {
        let SessionAt { repo, id } = at;
        let (state, version) = self.mp_load(repo, id).await?;
        chunk.check(state.size, repo, id)?;
        let tails = |name: &str| paths::upload_tail(repo, id, name);
        let data = paths::upload_data(repo, id);
        let mut writer = ResumableWriter::resume(self.driver.clone(), data, &state.writer, state.size, &tails).await?;
        let streamed = self
            .mp_pump(&state, &mut writer, body)
            .await
            .and_then(|p| match chunk.len {
                Some(len) if p.interrupted.is_none() && len != p.received => {
                    Err(chunk.length_mismatch(state.size, repo, id, p.received))
                }
                _ => Ok(p),
            });
        let committed = match streamed {
            Ok(p) => self.mp_commit(repo, id, &state, version, &mut writer, p).await,
            Err(e) => Err(e),
        };
        let (size, interrupted) = match committed {
            Ok(c) => c,
            Err(e) => {
                writer.abandon(&tails).await;
                return Err(e);
            }
        };
        writer.committed(&state.writer, &tails).await;
        if let Some(why) = interrupted {
            tracing::warn!(upload = %id, kept = size, "upload body interrupted: {why}");
            return Err(body::interrupted(&why));
        }
        Ok(UploadStatus { id: id.clone(), size })
    }

    /// Suspend the writer and write the state naming its parts and tail, if the state is still
    /// the version this request read. The session's new size, and why its body was cut short.
    async fn mp_commit(
        &self,
        repo: &RepoName,
        id: &UploadId,
        state: &SessionState,
        version: Option<Version>,
        writer: &mut ResumableWriter,
        streamed: Pumped,
    ) -> Result<(u64, Option<String>)> {
        let tails = |name: &str| paths::upload_tail(repo, id, name);
        let next = SessionState {
            alg: state.alg.clone(),
            size: state.size + streamed.received,
            hashstate: hex::encode(streamed.hasher.serialize()),
            writer: writer.suspend(&tails).await?,
        };
        let at = paths::upload_state(repo, id);
        let committed = match version {
            Some(v) => self
                .driver
                .put_if(&at, next.to_json(), Precondition::Matches(v))
                .await
                .map(|_| ()),
            None => self.driver.put_content(&at, next.to_json()).await,
        };
        match committed {
            Ok(()) => Ok((next.size, streamed.interrupted)),
            Err(DriverError::Conflict(_)) => Err(body::lost_race()),
            Err(e) => Err(e.into()),
        }
    }

    /// Closing PUT on an object store (with `session` = None: a monolithic `POST ?digest=`).
    pub(crate) async fn mp_finish(
        &self,
        repo: &RepoName,
        session: Option<&UploadId>,
        digest: &Digest,
        chunk: ChunkInfo,
        body: BodyStream,
    ) -> Result<BlobInfo> {
        let cas = paths::blob_data(digest);
        let (state, mut writer) = match session {
            Some(id) => {
                let (state, _) = self.mp_load(repo, id).await?;
                chunk.check(state.size, repo, id)?;
                // Without earlier parts, and hashing with the digest's algorithm, the bytes can
                // go straight to the content address: the multipart upload there is completed
                // only if the digest matches.
                let direct = !state.writer.has_parts() && state.algorithm()? == digest.algorithm();
                let key = if direct {
                    cas.clone()
                } else {
                    paths::upload_data(repo, id)
                };
                let tails = |name: &str| paths::upload_tail(repo, id, name);
                let writer =
                    ResumableWriter::resume(self.driver.clone(), key, &state.writer, state.size, &tails).await?;
                (state, writer)
            }
            None => {
                let state = SessionState::fresh(digest.algorithm(), WriterState::fresh(self.driver.as_ref()));
                let writer = ResumableWriter::create(self.driver.clone(), cas.clone(), &state.writer);
                (state, writer)
            }
        };
        let streamed = match self.mp_pump(&state, &mut writer, body).await {
            Ok(p) => p,
            Err(e) => {
                writer.abort_created().await;
                return Err(e);
            }
        };
        if let Err(e) = closing_body(&state, repo, session, chunk, &streamed) {
            writer.abort_created().await;
            return Err(e);
        }
        let size = state.size + streamed.received;
        let computed = if state.algorithm()? == digest.algorithm() {
            let computed = streamed.hasher.finalize();
            if let Err(e) = body::check_digest(&computed, digest) {
                writer.abort_created().await;
                return Err(self.mp_discarded(repo, session, e).await);
            }
            writer.finish().await?;
            computed
        } else {
            // The session hashed with another algorithm: assemble, then hash the result once.
            writer.finish().await?;
            self.hash_range(writer.key(), Hasher::new(digest.algorithm()), 0, size)
                .await?
                .finalize()
        };
        if let Err(e) = body::check_digest(&computed, digest) {
            return Err(self.mp_discarded(repo, session, e).await);
        }
        self.mp_link(repo, session, digest, &writer, &cas, size).await
    }

    /// Put the assembled blob at its content address and link it into `repo`.
    async fn mp_link(
        &self,
        repo: &RepoName,
        session: Option<&UploadId>,
        digest: &Digest,
        writer: &ResumableWriter,
        cas: &StoragePath,
        size: u64,
    ) -> Result<BlobInfo> {
        if writer.key() != cas {
            // Always written (never skipped as a duplicate), so the blob's modification time is
            // fresh and a garbage collection running now does not sweep it.
            writer.copy_to(cas, size).await?;
        }
        self.write_link(&paths::layer_link(repo, digest), digest).await?;
        if let Some(id) = session {
            self.driver.delete(&paths::upload_dir(repo, id)).await?;
        }
        Ok(BlobInfo {
            digest: digest.clone(),
            size,
        })
    }

    /// Discard the session (if any) after `e`, and answer `e`.
    async fn mp_discarded(&self, repo: &RepoName, session: Option<&UploadId>, e: Error) -> Error {
        if let Some(id) = session
            && let Err(discard) = self.mp_discard(repo, id).await
        {
            return discard;
        }
        e
    }

    /// Stream a body into `writer` through the shared body loop, then wait for its parts.
    async fn mp_pump(&self, state: &SessionState, writer: &mut ResumableWriter, body: BodyStream) -> Result<Pumped> {
        let hasher = state.hasher()?;
        let mut parts = Parts { writer, failed: None };
        let pumped = body::pump(body, hasher, self.opts.hooks.timeouts.body_idle, &mut parts).await;
        let failed = parts.failed.take();
        let flushed = parts.writer.flush().await;
        if let Some(e) = failed {
            return Err(e.into());
        }
        flushed?;
        pumped
    }
}

/// The closing PUT's body must be whole and of the announced length.
fn closing_body(
    state: &SessionState,
    repo: &RepoName,
    session: Option<&UploadId>,
    chunk: ChunkInfo,
    p: &Pumped,
) -> Result<()> {
    if let Some(why) = &p.interrupted {
        return Err(body::interrupted_close(why));
    }
    match (chunk.len, session) {
        (Some(len), Some(id)) if len != p.received => Err(chunk.length_mismatch(state.size, repo, id, p.received)),
        // A one-request upload has no session to resume.
        (Some(len), None) if len != p.received => Err(body::size_mismatch(len, p.received)),
        _ => Ok(()),
    }
}
