//! A resumable writer for object stores, which cannot append: upload data goes into a multipart
//! upload addressed by id, so any replica can continue what another began, as Distribution's S3
//! driver resumes its own multipart writer. What a writer needs to resume is [`WriterState`],
//! which its owner persists (the registry keeps it inside the session's `state.json`):
//!
//! - parts are cut at fixed offsets (`k * part_size`), so part `k` always holds the same bytes of
//!   the object, whichever request sent them. Only whole parts are uploaded before the end;
//! - the bytes past the last whole part (under one part size, so a small PATCH never needs a
//!   5 MiB part) are kept in a tail object, a new one per request ([`ResumableWriter::suspend`]),
//!   and are prepended to the next request's bytes. At most one part (plus the parts in flight)
//!   is ever buffered in memory;
//! - [`ResumableWriter::finish`] assembles the object: one PUT when no whole part was sent, else
//!   the last part and CompleteMultipartUpload.
//!
//! The writer only moves bytes: hashing, digests and the session's commit belong to its owner.
//! A multipart upload that a writer created and its owner did not commit is aborted by
//! [`ResumableWriter::abandon`], so failed or losing requests leave no incomplete upload behind.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{Driver, DriverError, StoragePath};

/// Part uploads in flight while the next part is received.
const PARTS_IN_FLIGHT: usize = 2;
/// The part size of a driver that names none.
const DEFAULT_PART_SIZE: usize = 10 << 20;

/// What a writer needs to resume: the part size, the multipart upload and the ETags of its whole
/// parts, and the tail object's name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterState {
    pub part_size: u64,
    /// The multipart upload, once a whole part was sent.
    #[serde(default)]
    pub multipart: Option<String>,
    /// ETags of parts 0.. (each exactly `part_size` bytes).
    #[serde(default)]
    pub parts: Vec<String>,
    /// Name of the tail object holding the bytes past the last whole part.
    #[serde(default)]
    pub tail: Option<String>,
}

impl WriterState {
    /// Nothing written yet, with the driver's part size (`storage.s3.chunksize`).
    pub fn fresh(driver: &dyn Driver) -> Self {
        WriterState {
            part_size: driver.multipart().map_or(DEFAULT_PART_SIZE, |m| m.part_size()) as u64,
            ..WriterState::default()
        }
    }

    /// Whether whole parts were sent (a multipart upload exists).
    pub fn has_parts(&self) -> bool {
        self.multipart.is_some()
    }

    /// Abort the multipart upload at `key`, if any (discarding a session).
    pub async fn abort(&self, driver: &dyn Driver, key: &StoragePath) -> Result<(), DriverError> {
        match (&self.multipart, driver.multipart()) {
            (Some(id), Some(mp)) => mp.abort(key, id).await,
            _ => Ok(()),
        }
    }
}

/// Where the owner keeps tail objects (the storage layout is the owner's business).
pub type TailKey<'a> = &'a (dyn Fn(&str) -> StoragePath + Sync);

/// One request's writer: resumed from a [`WriterState`], fed bytes, then suspended (a new
/// state to persist), finished (the object assembled) or abandoned.
pub struct ResumableWriter {
    driver: Arc<dyn Driver>,
    /// The object the parts become.
    key: StoragePath,
    part_size: usize,
    /// The multipart upload as the resumed state named it (not created by this writer).
    resumed: Option<String>,
    id: Option<String>,
    etags: Vec<String>,
    in_flight: VecDeque<JoinHandle<Result<String, DriverError>>>,
    rest: VecDeque<Bytes>,
    rest_len: usize,
    /// A tail object written by `suspend` and not yet known to be committed.
    new_tail: Option<String>,
}

impl ResumableWriter {
    /// Continue an object of `size` bytes so far, whose writer left `state` (reading its tail).
    pub async fn resume(
        driver: Arc<dyn Driver>,
        key: StoragePath,
        state: &WriterState,
        size: u64,
        tail_key: TailKey<'_>,
    ) -> Result<Self, DriverError> {
        let mut w = ResumableWriter {
            driver,
            key,
            part_size: state.part_size as usize,
            resumed: state.multipart.clone(),
            id: state.multipart.clone(),
            etags: state.parts.clone(),
            in_flight: VecDeque::new(),
            rest: VecDeque::new(),
            rest_len: 0,
            new_tail: None,
        };
        if let Some(name) = &state.tail {
            let at = tail_key(name);
            let b = w.driver.get_content(&at).await?;
            let expected = size - state.parts.len() as u64 * state.part_size;
            if b.len() as u64 != expected {
                return Err(DriverError::Backend {
                    path: at.to_string(),
                    message: format!("tail object has {} bytes, the state says {expected}", b.len()),
                });
            }
            w.rest_len = b.len();
            w.rest.push_back(b);
        }
        Ok(w)
    }

    /// A writer for a new object at `key` (nothing written, nothing to read).
    pub fn create(driver: Arc<dyn Driver>, key: StoragePath, state: &WriterState) -> Self {
        ResumableWriter {
            driver,
            key,
            part_size: state.part_size as usize,
            resumed: None,
            id: None,
            etags: Vec::new(),
            in_flight: VecDeque::new(),
            rest: VecDeque::new(),
            rest_len: 0,
            new_tail: None,
        }
    }

    /// The object the parts become.
    pub fn key(&self) -> &StoragePath {
        &self.key
    }

    /// Take `chunk`; upload every whole part it completes (creating the multipart upload
    /// before the first), waiting for the oldest part when too many are in flight.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), DriverError> {
        self.rest_len += chunk.len();
        self.rest.push_back(chunk);
        while self.rest_len >= self.part_size {
            let part = cut(&mut self.rest, self.part_size);
            self.rest_len -= self.part_size;
            self.send(part).await?;
        }
        Ok(())
    }

    async fn send(&mut self, data: Vec<Bytes>) -> Result<(), DriverError> {
        let mp = self.multipart()?;
        let id = match &self.id {
            Some(id) => id.clone(),
            None => {
                let id = mp.create(&self.key).await?;
                self.id = Some(id.clone());
                id
            }
        };
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            let h = self.in_flight.pop_front().expect("non-empty");
            self.etags.push(join(h).await?);
        }
        let idx = self.etags.len() + self.in_flight.len();
        let (driver, key) = (self.driver.clone(), self.key.clone());
        self.in_flight.push_back(tokio::spawn(async move {
            let mp = driver.multipart().ok_or_else(|| unsupported(driver.name()))?;
            mp.put_part(&key, &id, idx, data).await
        }));
        Ok(())
    }

    /// Wait for the parts in flight; the first failure, if any.
    pub async fn flush(&mut self) -> Result<(), DriverError> {
        let mut first_err = None;
        while let Some(h) = self.in_flight.pop_front() {
            match join(h).await {
                Ok(etag) if first_err.is_none() => self.etags.push(etag),
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Keep the bytes past the last whole part in a new tail object and return the state to
    /// persist. Call after [`flush`](Self::flush); then [`committed`](Self::committed) once
    /// the state is persisted, or [`abandon`](Self::abandon) if it could not be.
    pub async fn suspend(&mut self, tail_key: TailKey<'_>) -> Result<WriterState, DriverError> {
        if self.rest_len > 0 {
            let name = uuid::Uuid::new_v4().simple().to_string();
            self.driver.put_content(&tail_key(&name), self.rest_bytes()).await?;
            self.new_tail = Some(name);
        }
        Ok(WriterState {
            part_size: self.part_size as u64,
            multipart: self.id.clone(),
            parts: self.etags.clone(),
            tail: self.new_tail.clone(),
        })
    }

    /// The state `suspend` returned is persisted: the tail object it replaced can go.
    pub async fn committed(&mut self, old: &WriterState, tail_key: TailKey<'_>) {
        if let Some(old) = &old.tail
            && self.new_tail.as_ref() != Some(old)
        {
            let _ = self.driver.delete(&tail_key(old)).await;
        }
        self.new_tail = None;
    }

    /// Undo what this writer did that no persisted state names: its uncommitted tail object
    /// and a multipart upload it created.
    pub async fn abandon(&mut self, tail_key: TailKey<'_>) {
        if let Some(name) = self.new_tail.take() {
            let _ = self.driver.delete(&tail_key(&name)).await;
        }
        self.abort_created().await;
    }

    /// Abort the multipart upload if this writer created it (a request that stores nothing).
    pub async fn abort_created(&mut self) {
        if self.resumed.is_none()
            && let (Some(id), Some(mp)) = (self.id.take(), self.driver.multipart())
        {
            let _ = mp.abort(&self.key, &id).await;
        }
    }

    /// Assemble the object: the whole of it in one PUT when no whole part was sent, else the
    /// last part and CompleteMultipartUpload. Call after [`flush`](Self::flush).
    pub async fn finish(&mut self) -> Result<(), DriverError> {
        let Some(id) = self.id.clone() else {
            return self.driver.put_content(&self.key, self.rest_bytes()).await;
        };
        let mp = self.multipart()?;
        let mut etags = self.etags.clone();
        if self.rest_len > 0 {
            let rest: Vec<Bytes> = self.rest.iter().cloned().collect();
            etags.push(mp.put_part(&self.key, &id, etags.len(), rest).await?);
        }
        mp.complete(&self.key, &id, etags).await
    }

    /// Server-side copy of the finished object to `to` (no bytes flow through this process).
    pub async fn copy_to(&self, to: &StoragePath, size: u64) -> Result<(), DriverError> {
        self.multipart()?.copy(&self.key, to, size).await
    }

    fn multipart(&self) -> Result<&dyn super::Multipart, DriverError> {
        self.driver.multipart().ok_or_else(|| unsupported(self.driver.name()))
    }

    fn rest_bytes(&self) -> Bytes {
        concat(self.rest.iter())
    }
}

fn unsupported(driver: &'static str) -> DriverError {
    DriverError::Unsupported {
        driver,
        what: "multipart uploads",
    }
}

async fn join(h: JoinHandle<Result<String, DriverError>>) -> Result<String, DriverError> {
    h.await
        .map_err(|e| DriverError::io("part upload task", std::io::Error::other(e)))?
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

fn concat<'a>(parts: impl ExactSizeIterator<Item = &'a Bytes> + Clone) -> Bytes {
    if parts.len() == 1 {
        return parts.clone().next().expect("one").clone();
    }
    let mut b = BytesMut::with_capacity(parts.clone().map(|p| p.len()).sum());
    for p in parts {
        b.extend_from_slice(p);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_takes_exact_prefixes() {
        let mut q: VecDeque<Bytes> = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")].into();
        let p = cut(&mut q, 4);
        assert_eq!(concat(p.iter()), Bytes::from_static(b"abcd"));
        let p = cut(&mut q, 4);
        assert_eq!(concat(p.iter()), Bytes::from_static(b"efgh"));
        assert!(q.is_empty());
    }

    #[test]
    fn state_keeps_the_session_json_field_names() {
        let s = WriterState {
            part_size: 5,
            multipart: Some("m".into()),
            parts: vec!["e".into()],
            tail: Some("t".into()),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"part_size": 5, "multipart": "m", "parts": ["e"], "tail": "t"})
        );
        let old: WriterState = serde_json::from_str(r#"{"part_size": 7}"#).unwrap();
        assert_eq!(old.part_size, 7);
        assert!(old.parts.is_empty() && old.multipart.is_none() && old.tail.is_none());
    }
}
