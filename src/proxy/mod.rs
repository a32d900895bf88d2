//! Pull-through cache: repositories that mirror an upstream registry (`proxy.remoteurl` for all
//! of them, as `registry:2`, or `[[proxy.upstream]]` by name prefix). What a client asks for and
//! the store lacks is fetched upstream, streamed to the client while it is written through the
//! ordinary upload path (hashed as it is written, committed only when its digest verifies), and
//! served from the store from then on. Cached content is ordinary content: tags, catalog,
//! referrers and garbage collection see it as if it had been pushed.
//!
//! The proxy is a decorator of the registry's [`Content`]: the HTTP handlers hold one
//! `Arc<dyn Content>`, which is the [`Proxy`] when one is configured. It answers cached
//! repositories (those a configured upstream's prefix routes) itself and hands every other repository to the registry
//! it wraps; it refuses writes to cached repositories in [`Content::check_write`].
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

mod blobs;
mod challenge;
mod manifests;
mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::config::ProxyConfig;
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::registry::blobs::BlobInfo;
use crate::registry::content::{BlobAnswer, BlobRead, Content, ManifestAnswer, Reference};
use crate::registry::digest::Digest;
use crate::registry::names::RepoName;
use crate::storage::ByteStream;
pub use challenge::{Challenge, auth_params, parse_challenge};
use upstream::{Failure, Upstream, UpstreamSettings};

pub struct Proxy {
    /// The registry whose store holds the cached content, and which serves every repository
    /// that is not cached.
    registry: Arc<Registry>,
    upstreams: Vec<Arc<Upstream>>,
    /// `storage.maintenance.readonly`: serve what is cached, fetch nothing.
    readonly: bool,
    /// Blob transfers in progress, by digest; the value says when (and how) one ended.
    flights: Arc<Flights>,
}

type Flights = StdMutex<HashMap<Digest, Landing>>;

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

impl Proxy {
    /// The configured upstreams in front of `registry`, or `None` when the registry is no cache.
    pub fn from_config(
        cfg: &ProxyConfig,
        readonly: bool,
        registry: Arc<Registry>,
    ) -> std::result::Result<Option<Proxy>, String> {
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
        let ttl = cfg.ttl;
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
                ttl: cfg.ttl_of(u),
                ca_pem: read_ca(if u.cabundle.is_empty() {
                    &cfg.cabundle
                } else {
                    &u.cabundle
                })?,
            })?);
        }
        Ok(Some(Proxy {
            registry,
            upstreams: upstreams.into_iter().map(Arc::new).collect(),
            readonly,
            flights: Arc::new(StdMutex::new(HashMap::new())),
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
    fn route(&self, repo: &RepoName) -> Option<Target> {
        self.upstreams.iter().find_map(|u| {
            Some(Target {
                remote: u.remote_name(repo.as_str())?,
                upstream: u.clone(),
            })
        })
    }

    /// Refuse writes to a cached repository.
    fn refuse_write(&self, t: &Target) -> Error {
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
}

#[async_trait]
impl Content for Proxy {
    async fn manifest(&self, repo: &RepoName, reference: &Reference, accept: &[&str]) -> Result<ManifestAnswer> {
        match self.route(repo) {
            Some(t) => self.cached_manifest(&t, repo, reference, accept).await,
            None => Content::manifest(&*self.registry, repo, reference, accept).await,
        }
    }

    async fn blob(&self, repo: &RepoName, digest: &Digest, read: BlobRead) -> Result<BlobAnswer> {
        match self.route(repo) {
            Some(t) => self.cached_blob(&t, repo, digest, read).await,
            None => Content::blob(&*self.registry, repo, digest, read).await,
        }
    }

    async fn open_blob(&self, info: &BlobInfo, range: Option<(u64, u64)>) -> Result<ByteStream> {
        self.registry.open_blob(info, range).await
    }

    async fn blob_redirect(&self, info: &BlobInfo) -> Result<Option<String>> {
        self.registry.blob_redirect(info).await
    }

    /// A cached repository takes no writes: its content is the upstream's.
    fn check_write(&self, repo: &RepoName) -> Result<()> {
        match self.route(repo) {
            Some(t) => Err(self.refuse_write(&t)),
            None => self.registry.check_write(repo),
        }
    }
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
