//! The body loop both session backends share: read a request body until its end, a transport
//! error, or the configured idle timeout; hash each chunk on a blocking thread beside the sink
//! that stores it; and the error messages a session answers with.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::super::BodyStream;
use super::super::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// Where a backend stores the chunks of a body.
pub(crate) trait Sink {
    /// Store `chunk`; `false` when the sink failed (its owner reports the error) and reading
    /// should stop.
    async fn accept(&mut self, chunk: Bytes) -> bool;
}

/// What reading one body did.
pub(crate) struct Pumped {
    /// The hasher it was given, updated with every chunk read.
    pub hasher: Hasher,
    /// Bytes read from the body.
    pub received: u64,
    /// Why the body ended early (a transport error, silence for the idle timeout).
    pub interrupted: Option<String>,
}

/// Feed `body` to `sink` and `hasher` (on a blocking thread, so the store's copy and the hash
/// overlap instead of adding up). Stops at the end of the body, when `sink` fails, or when no
/// byte arrives for `idle`.
pub(crate) async fn pump(mut body: BodyStream, hasher: Hasher, idle: Duration, sink: &mut impl Sink) -> Result<Pumped> {
    let (htx, mut hrx) = mpsc::channel::<Bytes>(4);
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hasher = hasher;
        while let Some(chunk) = hrx.blocking_recv() {
            hasher.update(&chunk);
        }
        hasher
    });
    let mut received = 0;
    let mut interrupted = None;
    loop {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                if chunk.is_empty() {
                    continue;
                }
                received += chunk.len() as u64;
                if htx.send(chunk.clone()).await.is_err() || !sink.accept(chunk).await {
                    break; // the sink failed; its owner reports the error
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
    drop(htx);
    let hasher = hashing.await.map_err(Error::internal)?;
    Ok(Pumped {
        hasher,
        received,
        interrupted,
    })
}

/// A PATCH (or a closing PUT's chunk) whose body was cut short: what arrived is kept.
pub(crate) fn interrupted(why: &str) -> Error {
    Error::BlobUploadInvalid(format!("the request body was interrupted: {why}"))
}

/// A closing PUT cut short on an object store: the session is as the last PATCH left it.
pub(crate) fn interrupted_close(why: &str) -> Error {
    Error::BlobUploadInvalid(format!(
        "the request body was interrupted: {why}; the upload is as the last PATCH left it"
    ))
}

/// A one-request upload whose body did not have the announced length (no session to resume).
pub(crate) fn size_mismatch(announced: u64, received: u64) -> Error {
    Error::SizeInvalid(format!(
        "the request announced {announced} bytes but the body had {received}"
    ))
}

/// The content does not have the digest the client named; the upload was discarded.
pub(crate) fn check_digest(computed: &Digest, digest: &Digest) -> Result<()> {
    if computed == digest {
        return Ok(());
    }
    Err(Error::UploadDigestMismatch {
        computed: computed.clone(),
        expected: digest.clone(),
    })
}

/// Another request on the same session committed first (object stores, conditional writes).
pub(crate) fn lost_race() -> Error {
    Error::BlobUploadInvalid(
        "another request changed this upload at the same time; ask for its status and resume".into(),
    )
}
