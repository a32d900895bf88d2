//! Cached repositories' manifests: by digest, verified and cached for good; by tag, served from
//! the store for the upstream's `ttl` after it last confirmed the tag, then checked with a HEAD.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use upstream_http::Method;

use super::upstream::{self, Failure};
use super::{Proxy, Target, upstream_error};
use crate::error::{Error, Result};
use crate::registry::content::{MANIFEST_LIMIT, ManifestAnswer, Reference};
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::manifests::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, StoredManifest};
use crate::registry::names::{RepoName, Tag};

/// Manifest types asked for on top of the client's own.
const KNOWN_MANIFESTS: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

impl Proxy {
    /// A manifest by tag or digest: from the store when it is there (and, for a tag, fresh),
    /// else from the upstream, cached on the way.
    pub(super) async fn cached_manifest(
        &self,
        t: &Target,
        repo: &RepoName,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<ManifestAnswer> {
        let accept = accept_list(accept);
        match reference {
            Reference::Digest(d) => {
                match self.registry.get_manifest(repo, d).await {
                    Ok(m) => return Ok(ManifestAnswer::fresh(m)),
                    Err(Error::ManifestUnknown(_) | Error::NameUnknown(_)) => {}
                    Err(e) => return Err(e),
                }
                self.fetch_allowed()?;
                self.fetch_manifest(t, repo, &Reference::Digest(d.clone()), None, Some(d), &accept)
                    .await
                    .map(ManifestAnswer::fresh)
            }
            Reference::Tag(tag) => self.tagged_manifest(t, repo, tag, &accept).await,
        }
    }

    async fn tagged_manifest(&self, t: &Target, repo: &RepoName, tag: &Tag, accept: &[&str]) -> Result<ManifestAnswer> {
        let reg = &*self.registry;
        let cached = reg.tag_with_time(repo, tag).await?;
        let Some((local, checked)) = cached else {
            self.fetch_allowed()?;
            return self
                .fetch_manifest(t, repo, &Reference::Tag(tag.clone()), Some(tag), None, accept)
                .await
                .map(ManifestAnswer::fresh);
        };
        let age = SystemTime::now().duration_since(checked).unwrap_or(Duration::ZERO);
        if age < t.upstream.ttl || self.readonly {
            return reg.get_manifest(repo, &local).await.map(ManifestAnswer::fresh);
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
            Err(Failure::NotFound) => return Err(Error::ManifestUnknown(Reference::Tag(tag.clone()).into())),
            Err(f) => return Err(upstream_error(t, f)),
        };
        if upstream_digest.as_ref() == Some(&local) {
            reg.touch_tag(repo, tag, &local).await?;
            return reg.get_manifest(repo, &local).await.map(ManifestAnswer::fresh);
        }
        tracing::info!(repo = %repo, tag = %tag, from = %local, to = ?upstream_digest.as_ref().map(|d| d.to_string()),
            "the tag moved upstream");
        self.fetch_manifest(
            t,
            repo,
            &Reference::Tag(tag.clone()),
            Some(tag),
            upstream_digest.as_ref(),
            accept,
        )
        .await
        .map(ManifestAnswer::fresh)
    }

    /// GET a manifest upstream, check its digest (`expect`, else the upstream's
    /// Docker-Content-Digest when it sends one), store it (and tag it).
    async fn fetch_manifest(
        &self,
        t: &Target,
        repo: &RepoName,
        reference: &Reference,
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
            Err(Failure::NotFound) => return Err(Error::ManifestUnknown(reference.clone().into())),
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
        if resp.content_length().is_some_and(|l| l > MANIFEST_LIMIT as u64) {
            return Err(Error::Upstream(format!(
                "the manifest {reference} of {} is larger than the limit",
                t.url()
            )));
        }
        let bytes = read_limited(resp, MANIFEST_LIMIT)
            .await
            .map_err(|e| Error::Upstream(format!("reading the manifest {reference} from {}: {e}", t.url())))?;
        let want = expect.cloned().or(header_digest);
        let digest = match &want {
            Some(w) => Digest::of(w.algorithm(), &bytes),
            None => Digest::of(Algorithm::Sha256, &bytes),
        };
        if let Some(w) = &want
            && w != &digest
        {
            return Err(Error::Upstream(format!(
                "the manifest {reference} from {} has digest {digest}, not {w}; it was not cached",
                t.url()
            )));
        }
        let reg = &*self.registry;
        reg.cache_manifest(repo, tag, &digest, content_type.as_deref(), bytes)
            .await?;
        tracing::info!(repo = %repo, reference = %reference, digest = %digest, upstream = %t.url(), "manifest cached");
        reg.get_manifest(repo, &digest).await
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
}
