//! Upload sessions on object stores (drivers with [`Multipart`]), where data cannot be appended
//! in place. Any replica can take any request of a session, because everything lives in the store:
//!
//! - `_uploads/<id>/state.json`: size, the serialized hash state, the part size, the multipart
//!   upload's id and the ETags of the whole parts uploaded so far, and the name of the tail object.
//!   Each request ends by rewriting it with `If-Match: <etag it read>`, so of two requests racing on
//!   one session only one commits; the other gets `BLOB_UPLOAD_INVALID` and changes nothing.
//! - parts are cut at fixed offsets (`k * part_size`), so part `k` always holds the same bytes of
//!   the blob, whichever request sent them. Only whole parts are uploaded before the end; the bytes
//!   past the last whole part (under one part size, so a small PATCH never needs a 5 MiB part) are
//!   kept in `_uploads/<id>/tail-<uuid>`, a new object per request, and are prepended to the next
//!   request's bytes. At most one part (plus the parts in flight) is ever buffered in memory.
//! - bytes are hashed as they stream through; the digest is checked before anything is written at
//!   the blob's content address. A blob under one part size is written there with a single PUT. A
//!   larger one whose digest is known before its first part (`POST ?digest=`, or a `PUT ?digest=`
//!   carrying the bytes) is a multipart upload created at the content address and completed only
//!   after the digest matched (aborted otherwise). A session whose parts came in PATCHes was
//!   assembled at `_uploads/<id>/data`, and is copied to the content address server-side.
//! - a request that fails or is cut short during the closing PUT leaves the session as the last
//!   PATCH committed it, so the client can retry the PUT.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::blobs::BlobInfo;
use super::digest::{Algorithm, Digest, Hasher};
use super::names::{RepoName, UploadId};
use super::uploads::{ChunkInfo, UploadStatus};
use super::{BodyStream, Registry, paths};
use crate::error::{Error, Result};
use crate::storage::{Driver, DriverError, Precondition, StoragePath, Version};

/// Part uploads in flight while the next part is received.
const PARTS_IN_FLIGHT: usize = 2;
/// Hash in batches of this many bytes on a blocking thread.
const HASH_BATCH: usize = 1 << 20;

/// What `_uploads/<id>/state.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SessionState {
    pub alg: String,
    pub size: u64,
    /// Serialized hasher state after `size` bytes, hex.
    pub hashstate: String,
    pub part_size: u64,
    /// The multipart upload at `_uploads/<id>/data`, once a whole part was sent.
    #[serde(default)]
    pub multipart: Option<String>,
    /// ETags of parts 0.. (each exactly `part_size` bytes).
    #[serde(default)]
    pub parts: Vec<String>,
    /// Name of the tail object holding bytes `parts.len() * part_size .. size`.
    #[serde(default)]
    pub tail: Option<String>,
}

impl SessionState {
    fn fresh(alg: Algorithm, part_size: usize) -> Self {
        SessionState {
            alg: alg.as_str().to_owned(),
            size: 0,
            hashstate: hex::encode(Hasher::new(alg).serialize()),
            part_size: part_size as u64,
            multipart: None,
            parts: Vec::new(),
            tail: None,
        }
    }

    fn algorithm(&self) -> Result<Algorithm> {
        self.alg.parse().map_err(Error::Internal)
    }

    fn hasher(&self) -> Result<Hasher> {
        let alg = self.algorithm()?;
        hex::decode(&self.hashstate)
            .ok()
            .and_then(|b| Hasher::deserialize(alg, &b))
            .ok_or_else(|| Error::Internal("unreadable hash state in an upload session".into()))
    }
}

/// Where the multipart upload of one request lives, and the parts sent so far.
struct Parts {
    key: StoragePath,
    id: Option<String>,
    etags: Vec<String>,
    in_flight: VecDeque<JoinHandle<std::result::Result<String, DriverError>>>,
}

/// The outcome of streaming one request body.
struct Streamed {
    hasher: Hasher,
    /// Bytes past the last whole part (tail of earlier requests included).
    rest: Vec<Bytes>,
    rest_len: usize,
    received: u64,
    interrupted: Option<String>,
}

impl Registry {
    fn mp_part_size(&self) -> usize {
        self.driver.multipart().map_or(10 << 20, |m| m.part_size())
    }

    pub(crate) async fn mp_start(&self, repo: &RepoName, id: &UploadId, alg: Algorithm) -> Result<()> {
        let state = SessionState::fresh(alg, self.mp_part_size());
        let json = Bytes::from(serde_json::to_vec(&state).expect("state serializes"));
        self.driver
            .put_if(&paths::upload_state(repo, id), json, Precondition::Absent)
            .await?;
        Ok(())
    }

    async fn mp_load(&self, repo: &RepoName, id: &UploadId) -> Result<(SessionState, Option<Version>)> {
        match self.driver.get_versioned(&paths::upload_state(repo, id)).await {
            Ok((b, v)) => {
                let s: SessionState = serde_json::from_slice(&b)
                    .map_err(|e| Error::Internal(format!("unreadable upload state for {id}: {e}")))?;
                Ok((s, v))
            }
            Err(e) if e.is_not_found() => Err(Error::BlobUploadUnknown(id.to_string())),
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
            && let (Some(mp_id), Some(mp)) = (&s.multipart, self.driver.multipart())
            && let Err(e) = mp.abort(&paths::upload_data(repo, id), mp_id).await
        {
            tracing::warn!(upload = %id, "could not abort the multipart upload: {e}");
        }
        Ok(self.driver.delete(&paths::upload_dir(repo, id)).await?)
    }

    async fn mp_tail(&self, repo: &RepoName, id: &UploadId, s: &SessionState) -> Result<Vec<Bytes>> {
        let Some(name) = &s.tail else { return Ok(Vec::new()) };
        let b = self.driver.get_content(&paths::upload_tail(repo, id, name)).await?;
        let expected = s.size - s.parts.len() as u64 * s.part_size;
        if b.len() as u64 != expected {
            return Err(Error::Internal(format!(
                "upload {id}: tail object has {} bytes, the state says {expected}",
                b.len()
            )));
        }
        Ok(vec![b])
    }

    /// PATCH on an object store.
    pub(crate) async fn mp_append(
        &self,
        repo: &RepoName,
        id: &UploadId,
        chunk: ChunkInfo,
        body: BodyStream,
        location: &str,
    ) -> Result<UploadStatus> {
        let (state, version) = self.mp_load(repo, id).await?;
        chunk.check(state.size, id, location)?;
        let tail = self.mp_tail(repo, id, &state).await?;
        let mut parts = Parts {
            key: paths::upload_data(repo, id),
            id: state.multipart.clone(),
            etags: state.parts.clone(),
            in_flight: VecDeque::new(),
        };
        let streamed = self.mp_stream(&state, tail, body, &mut parts).await;
        let flushed = self.mp_flush(&mut parts).await;
        // A multipart upload this request created and did not commit to the state is aborted,
        // so failed or losing requests leave no incomplete upload behind.
        let abandon = |parts: &Parts| {
            let id = if state.multipart.is_none() {
                parts.id.clone()
            } else {
                None
            };
            let key = parts.key.clone();
            async move {
                if let (Some(id), Some(mp)) = (id, self.driver.multipart()) {
                    let _ = mp.abort(&key, &id).await;
                }
            }
        };
        let streamed = match (streamed, flushed) {
            (Ok(s), Ok(())) => s,
            (Err(e), _) | (_, Err(e)) => {
                abandon(&parts).await;
                return Err(e);
            }
        };
        if streamed.interrupted.is_none()
            && let Some(len) = chunk.len
            && len != streamed.received
        {
            abandon(&parts).await;
            return Err(chunk.length_mismatch(state.size, id, location, streamed.received));
        }
        // Commit: a new tail object, then the state naming it (conditionally), then drop the old tail.
        let new_tail = if streamed.rest_len > 0 {
            let name = uuid::Uuid::new_v4().simple().to_string();
            self.driver
                .put_content(&paths::upload_tail(repo, id, &name), concat(&streamed.rest))
                .await?;
            Some(name)
        } else {
            None
        };
        let next = SessionState {
            alg: state.alg.clone(),
            size: state.size + streamed.received,
            hashstate: hex::encode(streamed.hasher.serialize()),
            part_size: state.part_size,
            multipart: parts.id.clone(),
            parts: parts.etags.clone(),
            tail: new_tail.clone(),
        };
        let json = Bytes::from(serde_json::to_vec(&next).expect("state serializes"));
        let committed = match version {
            Some(v) => self
                .driver
                .put_if(&paths::upload_state(repo, id), json, Precondition::Matches(v))
                .await
                .map(|_| ()),
            None => self.driver.put_content(&paths::upload_state(repo, id), json).await,
        };
        if let Err(e) = committed {
            if let Some(name) = &new_tail {
                let _ = self.driver.delete(&paths::upload_tail(repo, id, name)).await;
            }
            abandon(&parts).await;
            return Err(match e {
                DriverError::Conflict(_) => Error::BlobUploadInvalid(
                    "another request changed this upload at the same time; ask for its status and resume".into(),
                ),
                e => e.into(),
            });
        }
        if let Some(old) = &state.tail
            && new_tail.as_ref() != Some(old)
        {
            let _ = self.driver.delete(&paths::upload_tail(repo, id, old)).await;
        }
        if let Some(why) = streamed.interrupted {
            tracing::warn!(upload = %id, kept = next.size, "upload body interrupted: {why}");
            return Err(Error::BlobUploadInvalid(format!(
                "the request body was interrupted: {why}"
            )));
        }
        Ok(UploadStatus {
            id: id.clone(),
            size: next.size,
        })
    }

    /// Closing PUT on an object store (with `session` = None: a monolithic `POST ?digest=`).
    pub(crate) async fn mp_finish(
        &self,
        repo: &RepoName,
        session: Option<(&UploadId, &str)>,
        digest: &Digest,
        chunk: ChunkInfo,
        body: BodyStream,
    ) -> Result<BlobInfo> {
        let (state, tail) = match session {
            Some((id, location)) => {
                let (state, _) = self.mp_load(repo, id).await?;
                chunk.check(state.size, id, location)?;
                let tail = self.mp_tail(repo, id, &state).await?;
                (state, tail)
            }
            None => (SessionState::fresh(digest.algorithm(), self.mp_part_size()), Vec::new()),
        };
        let same_alg = state.algorithm()? == digest.algorithm();
        let cas = paths::blob_data(digest);
        // Without earlier parts, and hashing with the digest's algorithm, the bytes can go straight
        // to the content address: the multipart upload there is completed only if the digest matches.
        let staging = session.map(|(id, _)| paths::upload_data(repo, id));
        let direct = state.multipart.is_none() && same_alg;
        let mut parts = Parts {
            key: if direct {
                cas.clone()
            } else {
                staging.clone().expect("a session")
            },
            id: state.multipart.clone(),
            etags: state.parts.clone(),
            in_flight: VecDeque::new(),
        };
        let created_here = state.multipart.is_none();
        let streamed = self.mp_stream(&state, tail, body, &mut parts).await;
        let flushed = self.mp_flush(&mut parts).await;
        let fail = |parts: &Parts| {
            let (key, id) = (parts.key.clone(), parts.id.clone());
            async move {
                if created_here && let (Some(id), Some(mp)) = (id, self.driver.multipart()) {
                    let _ = mp.abort(&key, &id).await;
                }
            }
        };
        let streamed = match (streamed, flushed) {
            (Ok(s), Ok(())) => s,
            (Err(e), _) | (_, Err(e)) => {
                fail(&parts).await;
                return Err(e);
            }
        };
        if let Some(why) = &streamed.interrupted {
            fail(&parts).await;
            return Err(Error::BlobUploadInvalid(format!(
                "the request body was interrupted: {why}; the upload is as the last PATCH left it"
            )));
        }
        if let Some(len) = chunk.len
            && len != streamed.received
        {
            fail(&parts).await;
            return Err(match session {
                Some((id, location)) => chunk.length_mismatch(state.size, id, location, streamed.received),
                // A one-request upload has no session to resume.
                None => Error::SizeInvalid(format!(
                    "the request announced {len} bytes but the body had {}",
                    streamed.received
                )),
            });
        }
        let size = state.size + streamed.received;
        let mp = self.driver.multipart().expect("object store");

        // Assemble: the whole blob in one PUT, or the last part and CompleteMultipartUpload.
        let assembled_at = parts.key.clone();
        let assemble = async {
            if parts.id.is_none() {
                self.driver.put_content(&assembled_at, concat(&streamed.rest)).await
            } else {
                let id = parts.id.clone().expect("multipart");
                let mut etags = parts.etags.clone();
                if streamed.rest_len > 0 {
                    etags.push(
                        mp.put_part(&assembled_at, &id, etags.len(), streamed.rest.clone())
                            .await?,
                    );
                }
                mp.complete(&assembled_at, &id, etags).await
            }
        };
        let computed = if same_alg {
            let computed = streamed.hasher.finalize();
            if &computed != digest {
                fail(&parts).await;
                if let Some((id, _)) = session {
                    self.mp_discard(repo, id).await?;
                }
                return Err(digest_mismatch(&computed, digest));
            }
            assemble.await?;
            computed
        } else {
            // The session hashed with another algorithm: assemble, then hash the result once.
            assemble.await?;
            self.hash_range(&assembled_at, Hasher::new(digest.algorithm()), 0, size)
                .await?
                .finalize()
        };
        if &computed != digest {
            if let Some((id, _)) = session {
                self.mp_discard(repo, id).await?;
            }
            return Err(digest_mismatch(&computed, digest));
        }
        if assembled_at != cas {
            // Always written (never skipped as a duplicate), so the blob's modification time is
            // fresh and a garbage collection running now does not sweep it.
            mp.copy(&assembled_at, &cas, size).await?;
        }
        self.write_link(&paths::layer_link(repo, digest), digest).await?;
        if let Some((id, _)) = session {
            self.driver.delete(&paths::upload_dir(repo, id)).await?;
        }
        Ok(BlobInfo {
            digest: digest.clone(),
            size,
        })
    }

    /// Stream a body: hash it, cut whole parts off the front and upload them (creating the
    /// multipart upload at `parts.key` before the first), keep the rest.
    async fn mp_stream(
        &self,
        state: &SessionState,
        tail: Vec<Bytes>,
        mut body: BodyStream,
        parts: &mut Parts,
    ) -> Result<Streamed> {
        let part_size = state.part_size as usize;
        let mut hasher = state.hasher()?;
        let mut rest: VecDeque<Bytes> = tail.into();
        let mut rest_len: usize = rest.iter().map(|b| b.len()).sum();
        let mut unhashed: Vec<Bytes> = Vec::new();
        let mut unhashed_len = 0usize;
        let mut received = 0u64;
        let mut interrupted = None;
        loop {
            let frame = match tokio::time::timeout(crate::hooks::body_idle_timeout(), body.next()).await {
                Ok(Some(Ok(f))) => f,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    interrupted = Some(e.to_string());
                    break;
                }
                Err(_) => {
                    interrupted = Some("no body bytes received for 60 s".into());
                    break;
                }
            };
            if frame.is_empty() {
                continue;
            }
            received += frame.len() as u64;
            unhashed_len += frame.len();
            unhashed.push(frame.clone());
            rest_len += frame.len();
            rest.push_back(frame);
            if unhashed_len >= HASH_BATCH {
                hasher = hash_batch(hasher, std::mem::take(&mut unhashed)).await?;
                unhashed_len = 0;
            }
            while rest_len >= part_size {
                let part = cut(&mut rest, part_size);
                rest_len -= part_size;
                self.mp_send(parts, part).await?;
            }
        }
        let hasher = hash_batch(hasher, unhashed).await?;
        Ok(Streamed {
            hasher,
            rest: rest.into(),
            rest_len,
            received,
            interrupted,
        })
    }

    /// Queue one whole part; wait for the oldest when too many are in flight.
    async fn mp_send(&self, parts: &mut Parts, data: Vec<Bytes>) -> Result<()> {
        let mp = self.driver.multipart().expect("object store");
        let id = match &parts.id {
            Some(id) => id.clone(),
            None => {
                let id = mp.create(&parts.key).await?;
                parts.id = Some(id.clone());
                id
            }
        };
        while parts.in_flight.len() >= PARTS_IN_FLIGHT {
            let h = parts.in_flight.pop_front().expect("non-empty");
            parts.etags.push(join(h).await?);
        }
        let idx = parts.etags.len() + parts.in_flight.len();
        let driver: std::sync::Arc<dyn Driver> = self.driver.clone();
        let key = parts.key.clone();
        parts.in_flight.push_back(tokio::spawn(async move {
            driver
                .multipart()
                .expect("object store")
                .put_part(&key, &id, idx, data)
                .await
        }));
        Ok(())
    }

    async fn mp_flush(&self, parts: &mut Parts) -> Result<()> {
        let mut first_err = None;
        while let Some(h) = parts.in_flight.pop_front() {
            match join(h).await {
                Ok(etag) if first_err.is_none() => parts.etags.push(etag),
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

async fn join(h: JoinHandle<std::result::Result<String, DriverError>>) -> Result<String> {
    Ok(h.await.map_err(|e| Error::Internal(e.to_string()))??)
}

async fn hash_batch(mut hasher: Hasher, batch: Vec<Bytes>) -> Result<Hasher> {
    if batch.is_empty() {
        return Ok(hasher);
    }
    tokio::task::spawn_blocking(move || {
        for b in &batch {
            hasher.update(b);
        }
        hasher
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))
}

/// Take exactly `n` bytes off the front of `q` (which holds at least `n`).
fn cut(q: &mut VecDeque<Bytes>, n: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut need = n;
    while need > 0 {
        let mut b = q.pop_front().expect("enough bytes queued");
        if b.len() > need {
            let head = b.split_to(need);
            q.push_front(b);
            out.push(head);
            need = 0;
        } else {
            need -= b.len();
            out.push(b);
        }
    }
    out
}

fn concat(parts: &[Bytes]) -> Bytes {
    match parts {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut b = BytesMut::with_capacity(many.iter().map(|p| p.len()).sum());
            for p in many {
                b.extend_from_slice(p);
            }
            b.freeze()
        }
    }
}

fn digest_mismatch(computed: &Digest, digest: &Digest) -> Error {
    Error::DigestInvalid(format!(
        "the uploaded content has digest {computed}, not {digest}; the upload was discarded"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_takes_exact_prefixes() {
        let mut q: VecDeque<Bytes> = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")].into();
        let p = cut(&mut q, 4);
        assert_eq!(concat(&p), Bytes::from_static(b"abcd"));
        let p = cut(&mut q, 4);
        assert_eq!(concat(&p), Bytes::from_static(b"efgh"));
        assert!(q.is_empty());
    }
}
