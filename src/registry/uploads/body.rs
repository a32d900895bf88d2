//! The body loop both session backends share: read a request body until its end, a transport
//! error, or the configured idle timeout; hash it in batches on the blocking pool beside the sink
//! that stores it; and the error messages a session answers with.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::super::BodyStream;
use super::super::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// Where a backend stores the chunks of a body.
pub(crate) trait Sink {
    /// Store `chunk`; `false` when the sink failed (its owner reports the error) and reading
    /// should stop.
    async fn accept(&mut self, chunk: Bytes) -> bool;
    /// The body paused: store what was gathered so far (so an upload's status, asked while a
    /// slow client pauses, shows what arrived). `false` as for `accept`.
    async fn paused(&mut self) -> bool {
        true
    }
}

/// How long a body may pause before what has been gathered is handed on anyway.
const GATHER: Duration = Duration::from_millis(5);

/// What reading one body did.
pub(crate) struct Pumped {
    /// The hasher it was given, updated with every chunk read.
    pub hasher: Hasher,
    /// Bytes read from the body.
    pub received: u64,
    /// Why the body ended early (a transport error, silence for the idle timeout).
    pub interrupted: Option<String>,
}

/// Bytes gathered before a [`Batched`] hands them to the blocking pool.
const BATCH: usize = 256 << 10;

/// State fed a body's chunks in batches of [`BATCH`] bytes by short tasks on the blocking pool,
/// one in flight while the next batch gathers: no thread is held while a slow client sends
/// nothing. The state lives in the task while it runs and comes back when it is settled. Both
/// the hasher (here) and the appended backend's data file writer are fed this way.
pub(crate) struct Batched<S: Send + 'static> {
    settled: Option<S>,
    in_flight: Option<JoinHandle<S>>,
    batch: Vec<Bytes>,
    batched: usize,
    apply: fn(&mut S, &[Bytes]),
}

impl<S: Send + 'static> Batched<S> {
    pub(crate) fn new(state: S, apply: fn(&mut S, &[Bytes])) -> Self {
        Batched {
            settled: Some(state),
            in_flight: None,
            batch: Vec::new(),
            batched: 0,
            apply,
        }
    }

    /// The state as the last finished batch left it; `None` while a batch is in flight.
    pub(crate) fn settled(&self) -> Option<&S> {
        self.settled.as_ref()
    }

    /// Gather `chunk`; a full batch is handed on (after the previous one finished).
    pub(crate) async fn push(&mut self, chunk: Bytes) -> Result<()> {
        self.batched += chunk.len();
        self.batch.push(chunk);
        if self.batched >= BATCH {
            self.send().await?;
        }
        Ok(())
    }

    /// Hand on what is gathered, after the batch in flight finished.
    pub(crate) async fn send(&mut self) -> Result<()> {
        self.settle().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let (mut state, batch) = (self.settled.take().expect("settled"), std::mem::take(&mut self.batch));
        let apply = self.apply;
        self.batched = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            apply(&mut state, &batch);
            state
        }));
        Ok(())
    }

    async fn settle(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.take() {
            self.settled = Some(task.await.map_err(Error::internal)?);
        }
        Ok(())
    }

    /// Apply what is left; the final state.
    pub(crate) async fn finish(mut self) -> Result<S> {
        self.send().await?;
        self.settle().await?;
        Ok(self.settled.take().expect("settled"))
    }
}

/// Feed `body` to `sink` and `hasher` (in batches on the blocking pool, so the store's copy and
/// the hash overlap instead of adding up). Stops at the end of the body, when `sink` fails, or
/// when no byte arrives for `idle`.
pub(crate) async fn pump(mut body: BodyStream, hasher: Hasher, idle: Duration, sink: &mut impl Sink) -> Result<Pumped> {
    let mut hashing = Batched::new(hasher, |h: &mut Hasher, batch| batch.iter().for_each(|c| h.update(c)));
    let mut received = 0;
    let mut interrupted = None;
    loop {
        let next = match tokio::time::timeout(GATHER.min(idle), body.next()).await {
            Ok(next) => Ok(next),
            Err(_) => {
                hashing.send().await?;
                if !sink.paused().await {
                    break;
                }
                tokio::time::timeout(idle.saturating_sub(GATHER), body.next()).await
            }
        };
        match next {
            Ok(Some(Ok(chunk))) => {
                if chunk.is_empty() {
                    continue;
                }
                received += chunk.len() as u64;
                hashing.push(chunk.clone()).await?;
                if !sink.accept(chunk).await {
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
    Ok(Pumped {
        hasher: hashing.finish().await?,
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
