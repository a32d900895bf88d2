//! Writing one request body into an appended session's data file, in steps: open the data file
//! at the session's size; stream the body through the shared body loop into the writer, a batch
//! of chunks at a time on the blocking pool (one write in flight while the next batch arrives,
//! so no thread waits on a slow client); settle the previous chunk's background flush; flush this chunk (or roll it
//! back); checkpoint what is durable; answer. With [`Durability::Lagged`] a whole, accepted
//! chunk is answered before it is flushed (see `append`'s docs); a rejected, failed or
//! interrupted one, and every [`Durability::Final`] body, is flushed before the answer (an
//! interrupted one is also checkpointed, so the client can resume without a rehash).

use bytes::Bytes;

use super::super::super::digest::{Algorithm, Hasher};
use super::super::super::names::{RepoName, UploadId};
use super::super::super::{BodyStream, Registry, paths};
use super::super::ChunkInfo;
use super::super::body::{self, Sink};
use super::{Durability, Pending, Session};
use crate::error::{Error, Result};
use crate::storage::{BlobWriter, DriverError};

type WriteResult = std::result::Result<(), DriverError>;

/// The data file's writer, fed in batches on the blocking pool ([`body::Batched`]) with the
/// first failure kept; after one, the sink refuses further chunks.
struct DataSink(body::Batched<(Box<dyn BlobWriter>, WriteResult)>);

impl DataSink {
    fn new(writer: Box<dyn BlobWriter>) -> Self {
        DataSink(body::Batched::new((writer, Ok(())), |(writer, result), batch| {
            if result.is_ok() {
                *result = batch.iter().try_for_each(|chunk| writer.write_all(chunk));
            }
        }))
    }

    /// Write what is left; the writer and the first failure, if any.
    async fn finish(self) -> Result<(Box<dyn BlobWriter>, WriteResult)> {
        self.0.finish().await
    }

    /// No failure seen so far (a batch in flight is judged when it has finished).
    fn healthy(&self) -> bool {
        self.0.settled().is_none_or(|(_, result)| result.is_ok())
    }
}

impl Sink for DataSink {
    async fn accept(&mut self, chunk: Bytes) -> bool {
        self.0.push(chunk).await.is_ok() && self.healthy()
    }

    async fn paused(&mut self) -> bool {
        self.0.send().await.is_ok() && self.healthy()
    }
}

/// What one body did to the data file.
struct Written {
    writer: Box<dyn BlobWriter>,
    /// The writer's own result (a full disk, an I/O error).
    result: std::result::Result<(), DriverError>,
    /// Bytes appended by this request.
    received: u64,
    /// Why the body ended early, if it did.
    interrupted: Option<String>,
    /// The chunk is refused: cut the file back to where it was.
    rollback: bool,
    /// The chunk is answered before it is flushed (the flush runs on in the background).
    lagged: bool,
}

impl Registry {
    /// Stream `body` into the session's data file while hashing it; see the module docs.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_body(
        &self,
        repo: &RepoName,
        id: &UploadId,
        session: Session,
        body: BodyStream,
        expected: ChunkInfo,
        in_session: bool,
        mode: Durability,
    ) -> Result<Session> {
        let Session {
            alg,
            size: start,
            hasher,
            mut checkpoints,
            pending,
        } = session;
        let mut sink = self.open_data(repo, id, start).await?;
        let pumped = body::pump(body, hasher, self.opts.hooks.timeouts.body_idle, &mut sink).await?;
        let (writer, result) = sink.finish().await?;
        let received = writer.size() - start;
        let rollback =
            result.is_err() || (pumped.interrupted.is_none() && expected.len.is_some_and(|len| len != received));
        let lagged = mode == Durability::Lagged && !rollback && pumped.interrupted.is_none();
        let w = Written {
            writer,
            result,
            received,
            interrupted: pumped.interrupted,
            rollback,
            lagged,
        };
        // The previous chunk's flush has had this whole request to finish. Once it has, the
        // bytes through `start` are durable and may be checkpointed (below, once this chunk is
        // settled, so a full disk cannot keep a rejected chunk's bytes).
        let durable_start = match settle_pending(pending, mode).await? {
            Ok(state) => state,
            Err(e) => {
                drop(w);
                return Err(self.discard_untrusted(repo, id, e).await);
            }
        };
        let w = self.settle_chunk(w, start).await?;
        self.failpoint("upload-data-written");
        if let Some(state) = durable_start {
            // Best effort: a missing checkpoint only means a longer rehash after a restart.
            if let Err(e) = self
                .checkpoint(repo, id, alg, &mut checkpoints, start, state, false)
                .await
            {
                tracing::warn!(upload = %id, offset = start, "could not checkpoint the upload's hash state: {e}");
            }
        }
        if w.rollback {
            return Err(refused(expected, start, repo, id, in_session, w.received));
        }
        let size = w.writer.size();
        if let Some(why) = &w.interrupted {
            if size != start {
                let state = Bytes::from(pumped.hasher.serialize());
                self.checkpoint(repo, id, alg, &mut checkpoints, size, state, true)
                    .await?;
            }
            tracing::warn!(upload = %id, kept = size, "upload body interrupted: {why}");
            return Err(body::interrupted(why));
        }
        let pending = (w.lagged && size != start).then(|| flush_in_background(w.writer, &pumped.hasher));
        Ok(Session {
            alg,
            size,
            hasher: pumped.hasher,
            checkpoints,
            pending,
        })
    }

    /// Open the session's data file for appending at `start`.
    async fn open_data(&self, repo: &RepoName, id: &UploadId, start: u64) -> Result<DataSink> {
        let writer = self.driver.append_writer(&paths::upload_data(repo, id)).await?;
        if writer.size() != start {
            return Err(Error::internal(format!(
                "upload {id}: data is {} bytes, expected {start}",
                writer.size()
            )));
        }
        Ok(DataSink::new(writer))
    }

    /// Flush this chunk before the answer, or cut the file back to `start` if it is refused
    /// (nothing to do for a lagged chunk). Fails with the writer's or the flush's error.
    async fn settle_chunk(&self, w: Written, start: u64) -> Result<Written> {
        let Written {
            writer,
            result,
            received,
            interrupted,
            rollback,
            lagged,
        } = w;
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
        result?;
        synced?;
        Ok(Written {
            writer,
            result: Ok(()),
            received,
            interrupted,
            rollback,
            lagged,
        })
    }

    /// Acknowledged bytes may not have reached the disk: the session cannot be trusted any
    /// more. Discard it; the client starts the upload over.
    async fn discard_untrusted(&self, repo: &RepoName, id: &UploadId, e: DriverError) -> Error {
        tracing::error!(upload = %id, "flushing upload data failed: {e}; discarding the session");
        match self.driver.delete(&paths::upload_dir(repo, id)).await {
            Ok(()) => e.into(),
            Err(delete) => delete.into(),
        }
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

/// Wait for the previous chunk's flush. `Ok(Some(state))`: it succeeded and, for a lagged
/// request, the hasher `state` at the start of this chunk may now be checkpointed.
async fn settle_pending(
    pending: Option<Pending>,
    mode: Durability,
) -> Result<std::result::Result<Option<Bytes>, DriverError>> {
    let Some(Pending { flush, state }) = pending else {
        return Ok(Ok(None));
    };
    Ok(match flush.await.map_err(Error::internal)? {
        Ok(()) => Ok((mode == Durability::Lagged).then_some(state)),
        Err(e) => Err(e),
    })
}

/// Answer the lagged chunk now; flush it on a blocking thread, checkpointed by the next request.
fn flush_in_background(mut writer: Box<dyn BlobWriter>, hasher: &Hasher) -> Pending {
    Pending {
        state: Bytes::from(hasher.serialize()),
        flush: tokio::task::spawn_blocking(move || writer.commit()),
    }
}

/// The 416 (a session) or 400 (a one-request upload) for a body of the wrong length.
fn refused(expected: ChunkInfo, start: u64, repo: &RepoName, id: &UploadId, in_session: bool, received: u64) -> Error {
    if in_session {
        expected.length_mismatch(start, repo, id, received)
    } else {
        // A one-request upload has no session to resume.
        body::size_mismatch(expected.len.unwrap_or_default(), received)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::internal)
}
