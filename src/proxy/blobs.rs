//! Cached repositories' blobs: served from the store once linked there; otherwise the
//! upstream answers (a HEAD) or is fetched from (a GET), one transfer per digest however many
//! requests ask, streamed to the first client while it is written through the upload path.

use std::sync::{Arc, Mutex as StdMutex};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use upstream_http::Method;

use super::upstream::{self, Failure};
use super::{Flights, Landing, Proxy, Target, blob_upstream_error};
use crate::error::{Error, Result};
use crate::registry::blobs::BlobInfo;
use crate::registry::content::{BlobAnswer, BlobRead};
use crate::registry::digest::Digest;
use crate::registry::names::RepoName;
use crate::registry::{BodyStream, Registry};

/// Chunks buffered between the upstream and the streaming client.
const CLIENT_BUFFER: usize = 8;

impl Proxy {
    /// A blob: from the store if it is there; else a HEAD asks the upstream, and a GET fetches
    /// it (one transfer per digest, however many ask). A Range request waits for the blob to
    /// be stored and is then served from the store.
    pub(super) async fn cached_blob(
        &self,
        t: &Target,
        repo: &RepoName,
        d: &Digest,
        read: BlobRead,
    ) -> Result<BlobAnswer> {
        let reg = &self.registry;
        let whole = read == BlobRead::Whole;
        if let Some(info) = stored_blob(reg, repo, d).await? {
            return Ok(BlobAnswer::Stored(info));
        }
        self.fetch_allowed()?;
        if read == BlobRead::Head {
            // The upstream's answer is the answer; a copy stored for any other reason is only
            // linked (and served) once the upstream has vouched for it here.
            return match confirm(reg, t, repo, d).await? {
                Confirmed::Linked(info) => Ok(BlobAnswer::Stored(info)),
                Confirmed::Upstream { size } => Ok(BlobAnswer::Remote { size }),
            };
        }
        // Join the transfer in flight, or start one.
        let (joined, leader) = {
            let mut flights = self.flights.lock().expect("flights");
            match flights.get(d) {
                // (a transfer whose task is gone, which only a panic leaves behind, is replaced)
                Some(rx) if rx.has_changed().is_ok() => (Some(rx.clone()), None),
                _ => {
                    let (done_tx, done_rx) = watch::channel(None);
                    flights.insert(d.clone(), done_rx);
                    (None, Some(done_tx))
                }
            }
        };
        if let Some(mut rx) = joined {
            return follow(reg, t, repo, d, &mut rx).await;
        }
        let done_tx = leader.expect("leader");
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel(CLIENT_BUFFER);
        let flight = Flight {
            flights: self.flights.clone(),
            reg: reg.clone(),
            target: t.clone(),
            repo: repo.clone(),
            digest: d.clone(),
        };
        let mut done_rx = done_tx.subscribe();
        // A task of its own: the transfer goes on (for the store and any followers) even if
        // this client goes away.
        tokio::spawn(flight.run(head_tx, whole.then_some(body_tx), done_tx));
        match head_rx.await {
            Ok(Ok(FlightStart::Streaming(size))) if whole => Ok(BlobAnswer::Streaming {
                size,
                body: futures::stream::unfold(body_rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
                    .boxed(),
            }),
            Ok(Ok(_)) => follow(reg, t, repo, d, &mut done_rx).await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::internal("the upstream transfer ended without an answer")),
        }
    }
}

/// Wait for a transfer another request started, then serve the store. The transfer may
/// have been for another repository (flights are by digest): then this repository's
/// upstream must confirm the blob before the stored copy is linked here.
async fn follow(reg: &Registry, t: &Target, repo: &RepoName, d: &Digest, rx: &mut Landing) -> Result<BlobAnswer> {
    let outcome = match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().expect("is_some"),
        Err(_) => Err("the upstream transfer was abandoned".to_owned()),
    };
    if outcome.is_ok()
        && let Some(info) = stored_blob(reg, repo, d).await?
    {
        return Ok(BlobAnswer::Stored(info));
    }
    // Not here (another repository's transfer, or a failed one): this repository's
    // upstream decides, as if no transfer had run.
    match confirm(reg, t, repo, d).await? {
        Confirmed::Linked(info) => Ok(BlobAnswer::Stored(info)),
        Confirmed::Upstream { .. } => Err(Error::Upstream(outcome.err().unwrap_or_else(|| {
            format!(
                "the blob {d} was not stored by the transfer from {}; try again",
                t.url()
            )
        }))),
    }
}

/// The blob if it is linked into `repo`: fetched through it from its upstream, or found
/// stored and confirmed by that upstream ([`confirm`]). A copy stored for any other
/// repository is never served here on its own say (it may be a private push).
async fn stored_blob(reg: &Registry, repo: &RepoName, d: &Digest) -> Result<Option<BlobInfo>> {
    match reg.stat_blob(repo, d).await {
        Ok(info) => Ok(Some(info)),
        Err(Error::BlobUnknown(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Ask the repository's upstream whether it has `d` for this repository (a HEAD). When it
/// answers 200 for that digest and the store holds a copy of the size it names, the copy
/// is linked into `repo` (stored once, however many repositories use it). A 404 is
/// `BLOB_UNKNOWN`, whatever the store holds, so the answer says nothing about other
/// repositories' content.
async fn confirm(reg: &Registry, t: &Target, repo: &RepoName, d: &Digest) -> Result<Confirmed> {
    let resp = match t
        .upstream
        .send(Method::HEAD, &t.remote, &format!("blobs/{d}"), &[])
        .await
    {
        Ok(r) => r,
        Err(Failure::NotFound) => return Err(Error::BlobUnknown(d.clone())),
        Err(f) => return Err(blob_upstream_error(t, f)),
    };
    let header = |name: axum::http::HeaderName| resp.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(theirs) = header(crate::header_names::DOCKER_CONTENT_DIGEST)
        && theirs.parse::<Digest>().ok().as_ref() != Some(d)
    {
        return Err(Error::Upstream(format!(
            "{} answered a HEAD of the blob {d} with the digest {theirs}",
            t.url()
        )));
    }
    let size: Option<u64> = header(crate::header_names::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    match reg.stat_cas(d).await? {
        Some(stored) if size.is_none_or(|s| s == stored.size) => match reg.mount_blob(repo, d, None).await? {
            Some(info) => {
                tracing::info!(repo = %repo, digest = %d, upstream = %t.url(), "stored blob confirmed upstream and linked");
                Ok(Confirmed::Linked(info))
            }
            None => Ok(Confirmed::Upstream { size }),
        },
        _ => Ok(Confirmed::Upstream { size }),
    }
}

/// What the upstream said of a blob the repository lacked.
enum Confirmed {
    /// It has it, and the store's copy is now linked into the repository.
    Linked(BlobInfo),
    /// It has it (of this size, if it said), and the store has no copy to link.
    Upstream { size: Option<u64> },
}

enum FlightStart {
    /// The store had it by the time the transfer began.
    Stored,
    /// The upstream answered; this many bytes follow (if it said).
    Streaming(Option<u64>),
}

/// One upstream transfer of a blob into the store.
struct Flight {
    flights: Arc<Flights>,
    reg: Arc<Registry>,
    target: Target,
    repo: RepoName,
    digest: Digest,
}

type ClientTx = mpsc::Sender<std::result::Result<Bytes, std::io::Error>>;

impl Flight {
    async fn run(
        self,
        head_tx: oneshot::Sender<Result<FlightStart>>,
        body_tx: Option<ClientTx>,
        done_tx: watch::Sender<Option<Result<(), String>>>,
    ) {
        let outcome = self.transfer(head_tx, body_tx).await;
        if let Err(e) = &outcome {
            tracing::warn!(repo = %self.repo, digest = %self.digest, upstream = %self.target.url(), "blob not cached: {e}");
        }
        // Out of the map first: a request arriving now finds the blob stored, or starts afresh.
        self.flights.lock().expect("flights").remove(&self.digest);
        let _ = done_tx.send(Some(outcome));
    }

    async fn transfer(
        &self,
        head_tx: oneshot::Sender<Result<FlightStart>>,
        body_tx: Option<ClientTx>,
    ) -> std::result::Result<(), String> {
        // The store may hold the bytes already (fetched through another repository, or pushed
        // to one): they are reused only once this repository's upstream confirms the blob.
        match self.reg.stat_cas(&self.digest).await {
            Ok(Some(_)) => match confirm(&self.reg, &self.target, &self.repo, &self.digest).await {
                Ok(Confirmed::Linked(_)) => {
                    let _ = head_tx.send(Ok(FlightStart::Stored));
                    return Ok(());
                }
                // (a copy of another size than the upstream's: fetched and verified afresh)
                Ok(Confirmed::Upstream { .. }) => {}
                Err(e) => {
                    let msg = e.to_string();
                    let _ = head_tx.send(Err(e));
                    return Err(msg);
                }
            },
            Ok(None) => {}
            Err(e) => {
                let msg = e.to_string();
                let _ = head_tx.send(Err(e));
                return Err(msg);
            }
        }
        let d = &self.digest;
        let t = &self.target;
        let resp = match t
            .upstream
            .send(Method::GET, &t.remote, &format!("blobs/{d}"), &[])
            .await
        {
            Ok(r) => r,
            Err(f) => {
                let msg = f.to_string();
                let e = match f {
                    Failure::NotFound => Error::BlobUnknown(d.clone()),
                    f => blob_upstream_error(t, f),
                };
                let _ = head_tx.send(Err(e));
                return Err(msg);
            }
        };
        let size = resp.content_length();
        let _ = head_tx.send(Ok(FlightStart::Streaming(size)));
        // The client gets each chunk once the next one has arrived; the last one only after the
        // store has verified the digest and committed.
        let held = Arc::new(StdMutex::new(None::<Bytes>));
        let upstream = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| std::io::Error::other(upstream::describe(&e))))
            .boxed();
        let tee = Tee {
            upstream,
            client: body_tx.clone(),
            pending: None,
            held: held.clone(),
        };
        let result = self.reg.put_blob(&self.repo, d, size, tee.into_stream()).await;
        match result {
            Ok(info) => {
                let last = held.lock().expect("held").take();
                if let (Some(tx), Some(last)) = (&body_tx, last) {
                    let _ = tx.send(Ok(last)).await;
                }
                tracing::info!(repo = %self.repo, digest = %d, size = info.size, upstream = %t.url(), "blob cached");
                Ok(())
            }
            Err(e) => {
                let msg = match &e {
                    Error::DigestInvalid(_) | Error::UploadDigestMismatch { .. } => {
                        format!("the blob {d} from {} does not match its digest", t.url())
                    }
                    other => format!("fetching the blob {d} from {} failed: {other}", t.url()),
                };
                if let Some(tx) = &body_tx {
                    let _ = tx.send(Err(std::io::Error::other(msg.clone()))).await;
                }
                Err(msg)
            }
        }
    }
}

/// The upstream body on its way into the store, copied to the streaming client one chunk
/// behind. A client that goes away stops getting copies; the store still gets everything.
struct Tee {
    upstream: BodyStream,
    client: Option<ClientTx>,
    pending: Option<Bytes>,
    held: Arc<StdMutex<Option<Bytes>>>,
}

impl Tee {
    fn into_stream(self) -> BodyStream {
        futures::stream::unfold(self, |mut tee| async move {
            match tee.upstream.next().await {
                Some(Ok(chunk)) => {
                    if let Some(prev) = tee.pending.replace(chunk.clone())
                        && let Some(tx) = &tee.client
                        && tx.send(Ok(prev)).await.is_err()
                    {
                        tee.client = None;
                    }
                    Some((Ok(chunk), tee))
                }
                Some(Err(e)) => Some((Err(e), tee)),
                None => {
                    *tee.held.lock().expect("held") = tee.pending.take();
                    None
                }
            }
        })
        .boxed()
    }
}
