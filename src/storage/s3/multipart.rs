//! The [`Multipart`] impl: parts by upload id (any replica continues a session) and
//! server-side copies, streamed through a multipart upload above CopyObject's limit.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::PutPayload;
use object_store::multipart::PartId;

use super::S3Driver;
use crate::storage::{Driver, DriverError, Multipart, StoragePath};

#[async_trait]
impl Multipart for S3Driver {
    fn part_size(&self) -> usize {
        self.inner.part_size
    }

    async fn create(&self, p: &StoragePath) -> Result<String, DriverError> {
        self.inner
            .store
            .create_multipart(&self.key(p))
            .await
            .map_err(|e| self.err(p, e))
    }

    async fn put_part(&self, p: &StoragePath, id: &str, idx: usize, data: Vec<Bytes>) -> Result<String, DriverError> {
        let payload: PutPayload = data.into_iter().collect();
        let part = self
            .inner
            .store
            .put_part(&self.key(p), &id.to_owned(), idx, payload)
            .await
            .map_err(|e| self.err(p, e))?;
        Ok(part.content_id)
    }

    async fn complete(&self, p: &StoragePath, id: &str, etags: Vec<String>) -> Result<(), DriverError> {
        let parts = etags.into_iter().map(|content_id| PartId { content_id }).collect();
        self.inner
            .store
            .complete_multipart(&self.key(p), &id.to_owned(), parts)
            .await
            .map_err(|e| self.err(p, e))?;
        Ok(())
    }

    async fn abort(&self, p: &StoragePath, id: &str) -> Result<(), DriverError> {
        match self.inner.store.abort_multipart(&self.key(p), &id.to_owned()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            // The in-memory store's only abort failure: an unknown upload id.
            Err(object_store::Error::Generic { store: "InMemory", .. }) => Ok(()),
            Err(e) => Err(self.err(p, e)),
        }
    }

    async fn copy(&self, from: &StoragePath, to: &StoragePath, size: u64) -> Result<(), DriverError> {
        if size > self.inner.copy_limit {
            return self.stream_copy(from, to, size).await;
        }
        self.inner
            .store
            .copy(&self.key(from), &self.key(to))
            .await
            .map_err(|e| self.err(from, e))
    }
}

/// S3's CopyObject copies at most 5 GiB (AWS enforces it; SeaweedFS does not).
pub(super) const COPY_OBJECT_LIMIT: u64 = 5 << 30;

impl S3Driver {
    /// Copy a large object by streaming it through a multipart upload: object_store has no
    /// UploadPartCopy, so the bytes pass through this process, with about three parts in memory.
    async fn stream_copy(&self, from: &StoragePath, to: &StoragePath, size: u64) -> Result<(), DriverError> {
        // At most 10,000 parts per upload.
        let part_size = (self.inner.part_size as u64).max(size.div_ceil(9_000)) as usize;
        let mut src = self.reader(from, None).await?;
        let id = Multipart::create(self, to).await?;
        let result = async {
            let mut etags = Vec::new();
            let mut in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<String, DriverError>>> =
                Default::default();
            let mut buf: Vec<Bytes> = Vec::new();
            let mut len = 0usize;
            let mut done = false;
            while !done {
                match src.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(|e| DriverError::io(from, e))?;
                        len += chunk.len();
                        buf.push(chunk);
                    }
                    None => done = true,
                }
                if len >= part_size || (done && len > 0) {
                    while in_flight.len() >= 2 {
                        let h = in_flight.pop_front().expect("non-empty");
                        etags.push(h.await.map_err(|e| DriverError::io(to, std::io::Error::other(e)))??);
                    }
                    let (me, key, id, idx) = (self.clone(), to.clone(), id.clone(), etags.len() + in_flight.len());
                    let data = std::mem::take(&mut buf);
                    len = 0;
                    in_flight.push_back(tokio::spawn(async move {
                        Multipart::put_part(&me, &key, &id, idx, data).await
                    }));
                }
            }
            for h in in_flight {
                etags.push(h.await.map_err(|e| DriverError::io(to, std::io::Error::other(e)))??);
            }
            Multipart::complete(self, to, &id, etags).await
        }
        .await;
        if result.is_err() {
            let _ = Multipart::abort(self, to, &id).await;
        }
        result
    }
}
