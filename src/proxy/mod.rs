//! Pull-through cache: repositories that mirror an upstream registry (`proxy.remoteurl` for all
//! of them, as `registry:2`, or `[[proxy.upstream]]` by name prefix). What a client asks for and
//! the store lacks is fetched upstream, streamed to the client while it is written through the
//! ordinary upload path (hashed as it is written, committed only when its digest verifies), and
//! served from the store from then on. Cached content is ordinary content: tags, catalog,
//! referrers and garbage collection see it as if it had been pushed.
//!
//! - **Blobs** are immutable: once stored they are never checked again. Concurrent requests for
//!   one uncached blob share one upstream transfer (a map of flights by digest): the first
//!   request streams it as it arrives, the others wait for the commit and read the store. The
//!   client streaming it never receives the last chunk before the digest has verified, so a
//!   mismatch cuts its body with an error instead of ending it cleanly on bad bytes.
//! - **Only what the upstream serves.** A cached repository gains a blob link in two ways only:
//!   bytes fetched from its own upstream, or a stored copy (pushed to another repository,
//!   fetched through another) after its upstream answered a HEAD for that digest, and that
//!   repository, with 200 ([`Proxy::confirm`]). A blob it lacks is never served, and never
//!   revealed, on the strength of a copy stored elsewhere: the answer is the upstream's (404
//!   `BLOB_UNKNOWN`, or 502 when it is down), as for a digest stored nowhere.
//! - **Manifests by digest** are verified against the digest and cached for good.
//! - **Tags** are served from the store for `ttl` after the upstream last confirmed them, then
//!   checked with a HEAD (a changed digest fetches the new manifest). When the upstream is down
//!   or rate-limits, a cached tag is served with `Warning: 299 - "…"`.

mod challenge;
mod evict;
mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use upstream_http::Method;

use crate::config::{ProxyConfig, parse_duration};
use crate::error::{Error, Result};
use crate::registry::blobs::BlobInfo;
use crate::registry::digest::Digest;
use crate::registry::manifests::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, StoredManifest};
use crate::registry::names::{RepoName, Tag};
use crate::registry::{BodyStream, Registry};
pub use challenge::{Challenge, auth_params, parse_challenge};
pub use evict::Eviction;
use upstream::{Failure, Upstream, UpstreamSettings};

/// Manifest types asked for on top of the client's own.
const KNOWN_MANIFESTS: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];
/// Chunks buffered between the upstream and the streaming client.
const CLIENT_BUFFER: usize = 8;

pub struct Proxy {
    upstreams: Vec<Arc<Upstream>>,
    /// `storage.maintenance.readonly`: serve what is cached, fetch nothing.
    readonly: bool,
    /// Blob transfers in progress, by digest; the value says when (and how) one ended.
    flights: StdMutex<HashMap<Digest, Landing>>,
}

/// How a transfer ended: `None` while it runs, then its outcome (an error's text).
type Landing = watch::Receiver<Option<std::result::Result<(), String>>>;

/// Where a repository's content comes from.
#[derive(Clone)]
pub struct Target {
    upstream: Arc<Upstream>,
    /// The repository's name upstream (the prefix stripped).
    remote: String,
}

impl Target {
    pub fn url(&self) -> &str {
        &self.upstream.url
    }
}

/// How a blob request is answered.
pub enum BlobAnswer {
    /// From the store, as any blob.
    Stored(BlobInfo),
    /// A HEAD answered by the upstream (nothing fetched).
    Remote { size: Option<u64> },
    /// Arriving from the upstream right now; the body fails if the digest does not verify.
    Streaming { size: Option<u64>, body: BodyStream },
}

/// A manifest with, when served stale because the upstream failed, the reason.
pub struct ManifestAnswer {
    pub manifest: Arc<StoredManifest>,
    /// The text of a `Warning: 299 - "…"` header.
    pub warning: Option<String>,
}

impl Proxy {
    /// The configured upstreams, or `None` when the registry is no cache.
    pub fn from_config(cfg: &ProxyConfig, readonly: bool) -> std::result::Result<Option<Proxy>, String> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let read_ca = |path: &str| -> std::result::Result<Option<Vec<u8>>, String> {
            if path.is_empty() {
                return Ok(None);
            }
            std::fs::read(path)
                .map(Some)
                .map_err(|e| format!("cannot read the proxy CA bundle {path}: {e}"))
        };
        let ttl = parse_duration(&cfg.ttl)?;
        let mut upstreams = Vec::new();
        if !cfg.remoteurl.is_empty() {
            upstreams.push(Upstream::new(UpstreamSettings {
                prefix: String::new(),
                url: cfg.remoteurl.clone(),
                username: cfg.username.clone(),
                password: cfg.password.clone(),
                ttl,
                ca_pem: read_ca(&cfg.cabundle)?,
            })?);
        }
        for u in &cfg.upstream {
            upstreams.push(Upstream::new(UpstreamSettings {
                prefix: u.prefix.clone(),
                url: u.url.clone(),
                username: u.username.clone(),
                password: u.password.clone(),
                ttl: if u.ttl.is_empty() { ttl } else { parse_duration(&u.ttl)? },
                ca_pem: read_ca(if u.cabundle.is_empty() {
                    &cfg.cabundle
                } else {
                    &u.cabundle
                })?,
            })?);
        }
        Ok(Some(Proxy {
            upstreams: upstreams.into_iter().map(Arc::new).collect(),
            readonly,
            flights: StdMutex::new(HashMap::new()),
        }))
    }

    /// For logs: `url` or `prefix -> url, ...`.
    pub fn describe(&self) -> String {
        self.upstreams
            .iter()
            .map(|u| {
                if u.prefix.is_empty() {
                    u.url.clone()
                } else {
                    format!("{} -> {}", u.prefix, u.url)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The upstream a repository mirrors, if it is a cached repository.
    pub fn route(&self, repo: &RepoName) -> Option<Target> {
        self.upstreams.iter().find_map(|u| {
            Some(Target {
                remote: u.remote_name(repo.as_str())?,
                upstream: u.clone(),
            })
        })
    }

    /// Refuse writes to a cached repository.
    pub fn refuse_write(&self, t: &Target) -> Error {
        Error::Unsupported(format!(
            "this repository is a pull-through cache of {}: pushes and deletes are not accepted",
            t.url()
        ))
    }

    fn fetch_allowed(&self) -> Result<()> {
        if self.readonly {
            return Err(Error::Unsupported(
                "the registry is in read-only mode (storage.maintenance.readonly): only cached content is served"
                    .into(),
            ));
        }
        Ok(())
    }

    // ---- manifests

    /// A manifest by tag or digest: from the store when it is there (and, for a tag, fresh),
    /// else from the upstream, cached on the way.
    pub async fn manifest(
        &self,
        reg: &Registry,
        t: &Target,
        repo: &RepoName,
        reference: ManifestRef<'_>,
        accept: &[&str],
    ) -> Result<ManifestAnswer> {
        let accept = accept_list(accept);
        match reference {
            ManifestRef::Digest(d) => {
                match reg.get_manifest(repo, d).await {
                    Ok(m) => return Ok(fresh(m)),
                    Err(Error::ManifestUnknown(_) | Error::NameUnknown(_)) => {}
                    Err(e) => return Err(e),
                }
                self.fetch_allowed()?;
                self.fetch_manifest(reg, t, repo, &d.to_string(), None, Some(d), &accept)
                    .await
                    .map(fresh)
            }
            ManifestRef::Tag(tag) => self.tagged_manifest(reg, t, repo, tag, &accept).await,
        }
    }

    async fn tagged_manifest(
        &self,
        reg: &Registry,
        t: &Target,
        repo: &RepoName,
        tag: &Tag,
        accept: &[&str],
    ) -> Result<ManifestAnswer> {
        let cached = reg.tag_with_time(repo, tag).await?;
        let Some((local, checked)) = cached else {
            self.fetch_allowed()?;
            return self
                .fetch_manifest(reg, t, repo, tag.as_str(), Some(tag), None, accept)
                .await
                .map(fresh);
        };
        let age = SystemTime::now().duration_since(checked).unwrap_or(Duration::ZERO);
        if age < t.upstream.ttl || self.readonly {
            return reg.get_manifest(repo, &local).await.map(fresh);
        }
        // Stale: ask the upstream where the tag points now.
        let head = t
            .upstream
            .send(Method::HEAD, &t.remote, &format!("manifests/{tag}"), accept)
            .await;
        let upstream_digest = match head {
            Ok(resp) => resp
                .headers()
                .get(crate::header_names::DOCKER_CONTENT_DIGEST)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok()),
            Err(f) if f.is_outage() => {
                tracing::warn!(repo = %repo, tag = %tag, upstream = %t.url(), "upstream {f}; serving the cached tag");
                let m = reg.get_manifest(repo, &local).await?;
                return Ok(ManifestAnswer {
                    manifest: m,
                    warning: Some(format!(
                        "the upstream registry {} is {}; this is the cached copy of {repo}:{tag} from {}, which may be stale",
                        t.url(),
                        if matches!(f, Failure::RateLimited) {
                            "rate-limiting"
                        } else {
                            "unavailable"
                        },
                        humantime::format_rfc3339_seconds(checked),
                    )),
                });
            }
            Err(Failure::NotFound) => return Err(Error::ManifestUnknown(tag.to_string())),
            Err(f) => return Err(upstream_error(t, f)),
        };
        if upstream_digest.as_ref() == Some(&local) {
            reg.touch_tag(repo, tag, &local).await?;
            return reg.get_manifest(repo, &local).await.map(fresh);
        }
        tracing::info!(repo = %repo, tag = %tag, from = %local, to = ?upstream_digest.as_ref().map(|d| d.to_string()),
            "the tag moved upstream");
        self.fetch_manifest(reg, t, repo, tag.as_str(), Some(tag), upstream_digest.as_ref(), accept)
            .await
            .map(fresh)
    }

    /// GET a manifest upstream, check its digest (`expect`, else the upstream's
    /// Docker-Content-Digest when it sends one), store it (and tag it).
    #[allow(clippy::too_many_arguments)]
    async fn fetch_manifest(
        &self,
        reg: &Registry,
        t: &Target,
        repo: &RepoName,
        reference: &str,
        tag: Option<&Tag>,
        expect: Option<&Digest>,
        accept: &[&str],
    ) -> Result<Arc<StoredManifest>> {
        let resp = match t
            .upstream
            .send(Method::GET, &t.remote, &format!("manifests/{reference}"), accept)
            .await
        {
            Ok(r) => r,
            Err(Failure::NotFound) => return Err(Error::ManifestUnknown(reference.to_owned())),
            Err(f) => return Err(upstream_error(t, f)),
        };
        let content_type = resp
            .headers()
            .get(crate::header_names::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let header_digest = resp
            .headers()
            .get(crate::header_names::DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        if resp
            .content_length()
            .is_some_and(|l| l > crate::http::manifests::MANIFEST_LIMIT as u64)
        {
            return Err(Error::Upstream(format!(
                "the manifest {reference} of {} is larger than the limit",
                t.url()
            )));
        }
        let bytes = read_limited(resp, crate::http::manifests::MANIFEST_LIMIT)
            .await
            .map_err(|e| Error::Upstream(format!("reading the manifest {reference} from {}: {e}", t.url())))?;
        let want = expect.cloned().or(header_digest);
        let digest = match &want {
            Some(w) => Digest::of(w.algorithm(), &bytes),
            None => Digest::of(crate::registry::digest::Algorithm::Sha256, &bytes),
        };
        if let Some(w) = &want
            && w != &digest
        {
            return Err(Error::Upstream(format!(
                "the manifest {reference} from {} has digest {digest}, not {w}; it was not cached",
                t.url()
            )));
        }
        reg.cache_manifest(repo, tag, &digest, content_type.as_deref(), bytes)
            .await?;
        tracing::info!(repo = %repo, reference, digest = %digest, upstream = %t.url(), "manifest cached");
        reg.get_manifest(repo, &digest).await
    }

    // ---- blobs

    /// A blob: from the store if it is there; else a HEAD asks the upstream, and a GET fetches
    /// it (one transfer per digest, however many ask). `whole` is false for a Range request,
    /// which waits for the blob to be stored and is then served from the store.
    pub async fn blob(
        self: &Arc<Self>,
        reg: &Arc<Registry>,
        t: &Target,
        repo: &RepoName,
        d: &Digest,
        head: bool,
        whole: bool,
    ) -> Result<BlobAnswer> {
        if let Some(info) = self.stored_blob(reg, repo, d).await? {
            return Ok(BlobAnswer::Stored(info));
        }
        self.fetch_allowed()?;
        if head {
            // The upstream's answer is the answer; a copy stored for any other reason is only
            // linked (and served) once the upstream has vouched for it here.
            return match self.confirm(reg, t, repo, d).await? {
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
            return self.follow(reg, t, repo, d, &mut rx).await;
        }
        let done_tx = leader.expect("leader");
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel(CLIENT_BUFFER);
        let flight = Flight {
            proxy: self.clone(),
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
            Ok(Ok(_)) => self.follow(reg, t, repo, d, &mut done_rx).await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Internal("the upstream transfer ended without an answer".into())),
        }
    }

    /// Wait for a transfer another request started, then serve the store. The transfer may
    /// have been for another repository (flights are by digest): then this repository's
    /// upstream must confirm the blob before the stored copy is linked here.
    async fn follow(
        &self,
        reg: &Registry,
        t: &Target,
        repo: &RepoName,
        d: &Digest,
        rx: &mut Landing,
    ) -> Result<BlobAnswer> {
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().expect("is_some"),
            Err(_) => Err("the upstream transfer was abandoned".to_owned()),
        };
        if outcome.is_ok()
            && let Some(info) = self.stored_blob(reg, repo, d).await?
        {
            return Ok(BlobAnswer::Stored(info));
        }
        // Not here (another repository's transfer, or a failed one): this repository's
        // upstream decides, as if no transfer had run.
        match self.confirm(reg, t, repo, d).await? {
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
    /// stored and confirmed by that upstream ([`Proxy::confirm`]). A copy stored for any other
    /// repository is never served here on its own say (it may be a private push).
    async fn stored_blob(&self, reg: &Registry, repo: &RepoName, d: &Digest) -> Result<Option<BlobInfo>> {
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
    async fn confirm(&self, reg: &Registry, t: &Target, repo: &RepoName, d: &Digest) -> Result<Confirmed> {
        let resp = match t
            .upstream
            .send(Method::HEAD, &t.remote, &format!("blobs/{d}"), &[])
            .await
        {
            Ok(r) => r,
            Err(Failure::NotFound) => return Err(Error::BlobUnknown(d.to_string())),
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
}

/// What the upstream said of a blob the repository lacked.
enum Confirmed {
    /// It has it, and the store's copy is now linked into the repository.
    Linked(BlobInfo),
    /// It has it (of this size, if it said), and the store has no copy to link.
    Upstream { size: Option<u64> },
}

/// A manifest reference (the HTTP layer's `Reference`, seen from here).
pub enum ManifestRef<'a> {
    Tag(&'a Tag),
    Digest(&'a Digest),
}

enum FlightStart {
    /// The store had it by the time the transfer began.
    Stored,
    /// The upstream answered; this many bytes follow (if it said).
    Streaming(Option<u64>),
}

/// One upstream transfer of a blob into the store.
struct Flight {
    proxy: Arc<Proxy>,
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
        self.proxy.flights.lock().expect("flights").remove(&self.digest);
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
            Ok(Some(_)) => match self
                .proxy
                .confirm(&self.reg, &self.target, &self.repo, &self.digest)
                .await
            {
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
                    Failure::NotFound => Error::BlobUnknown(d.to_string()),
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
                    Error::DigestInvalid(_) => format!("the blob {d} from {} does not match its digest", t.url()),
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

fn fresh(m: Arc<StoredManifest>) -> ManifestAnswer {
    ManifestAnswer {
        manifest: m,
        warning: None,
    }
}

/// The client's Accept values plus every manifest type Wharf stores, without repeats.
fn accept_list<'a>(client: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for a in client.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if !a.is_empty() && !out.contains(&a) {
            out.push(a);
        }
    }
    for k in KNOWN_MANIFESTS {
        if !out.iter().any(|a| a.split(';').next().map(str::trim) == Some(k)) {
            out.push(k);
        }
    }
    out
}

fn upstream_error(t: &Target, f: Failure) -> Error {
    match f {
        Failure::RateLimited => Error::TooManyRequests(format!("the upstream registry {} rate-limits", t.url())),
        f => Error::Upstream(format!("{}: {f}", t.url())),
    }
}

fn blob_upstream_error(t: &Target, f: Failure) -> Error {
    upstream_error(t, f)
}

async fn read_limited(resp: upstream_http::Response, limit: usize) -> std::result::Result<Bytes, String> {
    let body = http_body_util::StreamBody::new(resp.bytes_stream().map(|r| r.map(http_body::Frame::data)));
    crate::body_limit::read(body, limit).await.map_err(|e| match e {
        crate::body_limit::ReadError::TooLarge => format!("more than {limit} bytes"),
        crate::body_limit::ReadError::Body(e) => match e.downcast_ref::<upstream_http::Error>() {
            Some(e) => upstream::describe(e),
            None => e.to_string(),
        },
    })
}

/// `Warning: 299 - "text"` (RFC 7234 §5.5), with the text made safe for a quoted string.
pub fn warning_header(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || !(' '..='~').contains(&c) {
                '\''
            } else {
                c
            }
        })
        .collect();
    format!("299 - \"{safe}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_adds_known_types_once() {
        let client = format!("{OCI_MANIFEST}, application/vnd.foo");
        let a = accept_list(&[&client]);
        assert_eq!(a[0], OCI_MANIFEST);
        assert_eq!(a[1], "application/vnd.foo");
        assert_eq!(a.iter().filter(|x| **x == OCI_MANIFEST).count(), 1);
        assert!(a.contains(&DOCKER_LIST) && a.contains(&OCI_INDEX) && a.contains(&DOCKER_MANIFEST));
    }

    #[test]
    fn warning_is_a_valid_header() {
        assert_eq!(warning_header("a \"b\" é"), "299 - \"a 'b' '\"");
    }
}
