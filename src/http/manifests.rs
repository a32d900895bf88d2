//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::route::Reference;
use super::{App, hv};
use crate::body_limit;
use crate::error::{Error, Result};
use crate::header_names::{DOCKER_CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG};
use crate::proxy::{ManifestRef, warning_header};
use crate::registry::manifests::StoredManifest;
use crate::registry::names::{RepoName, Tag};

/// Manifests larger than this are refused with 413 (as Distribution's 4 MiB default).
pub const MANIFEST_LIMIT: usize = 4 << 20;

pub async fn get(
    app: &App,
    name: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let (m, warning) = match app.proxy.as_ref().and_then(|p| Some((p, p.route(name)?))) {
        Some((proxy, target)) => {
            let r = match reference {
                Reference::Digest(d) => ManifestRef::Digest(d),
                Reference::Tag(t) => ManifestRef::Tag(t),
            };
            let accept: Vec<&str> = headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let a = proxy.manifest(&app.registry, &target, name, r, &accept).await?;
            (a.manifest, a.warning)
        }
        None => {
            let digest = match reference {
                Reference::Digest(d) => d.clone(),
                Reference::Tag(t) => app.registry.resolve_tag(name, t).await?,
            };
            (app.registry.get_manifest(name, &digest).await?, None)
        }
    };
    let etag = format!("\"{}\"", m.digest);
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, hv(&m.media_type))
        .header(DOCKER_CONTENT_DIGEST, hv(&m.digest.to_string()))
        .header(header::ETAG, hv(&etag));
    if let Some(w) = warning {
        resp = resp.header(header::WARNING, hv(&warning_header(&w)));
    }
    if super::headers::if_none_match(headers, &m.digest) {
        return Ok(resp
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response"));
    }
    let resp = resp.header(header::CONTENT_LENGTH, m.bytes.len());
    let body = if head { Body::empty() } else { shared_body(m) };
    Ok(resp.body(body).expect("valid response"))
}

/// Frames of a manifest body: slices of the one copy every request for it shares.
const FRAME: usize = 64 << 10;

/// The body of a manifest GET, sent without a copy per connection: slices of the stored bytes
/// that each hold the manifest itself, so while any response is still being sent the cache
/// hands the same copy to every other request for that digest (`registry::cache`), however
/// large. Slices of at most [`FRAME`] bytes also bound what hyper copies into its own buffer
/// where it flattens writes. A reader that stalls is cut by `http.sendtimeout` (`idle.rs`).
fn shared_body(m: std::sync::Arc<StoredManifest>) -> Body {
    let len = m.bytes.len();
    if len <= FRAME {
        return Body::from(m.bytes.clone());
    }
    let whole = Bytes::from_owner(Held(m));
    let frames = (0..len)
        .step_by(FRAME)
        .map(move |at| Ok::<_, std::convert::Infallible>(whole.slice(at..(at + FRAME).min(len))));
    Body::from_stream(futures::stream::iter(frames))
}

/// A manifest's bytes, keeping the manifest (and so its cache entry) alive.
struct Held(std::sync::Arc<StoredManifest>);

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// How much of a refused manifest body is read and discarded (`body_limit::drain`).
const DRAIN_LIMIT: usize = 64 << 20;

/// Tags accepted in one push by digest (`?tag=`); more answer 414.
const MAX_QUERY_TAGS: usize = 100;

pub async fn put(
    app: &App,
    name: &RepoName,
    reference: &Reference,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    let read = match declared {
        Some(l) if l > MANIFEST_LIMIT as u64 => Err(body_limit::ReadError::TooLarge),
        _ => body_limit::read(&mut body, MANIFEST_LIMIT).await,
    };
    let buf = match read {
        Ok(buf) => buf,
        Err(body_limit::ReadError::TooLarge) => {
            body_limit::drain(body, DRAIN_LIMIT).await;
            return Err(Error::ManifestTooLarge { limit: MANIFEST_LIMIT });
        }
        Err(body_limit::ReadError::Body(e)) => {
            return Err(Error::ManifestInvalid(format!("reading the body failed: {e}")));
        }
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // A push by digest may name tags with `?tag=` (distribution-spec main, end-7b).
    let query_tags: Vec<Tag> = query
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| Tag::parse(v).ok_or_else(|| Error::TagInvalid(format!("invalid tag {v:?} in ?tag="))))
        .collect::<Result<_>>()?;
    if query_tags.len() > MAX_QUERY_TAGS {
        return Err(Error::TooManyTags { limit: MAX_QUERY_TAGS });
    }
    let (tags, digest) = match reference {
        Reference::Tag(t) => (vec![t.clone()], None),
        Reference::Digest(d) => (query_tags, Some(d)),
    };
    let out = app
        .registry
        .put_manifest(name, &tags, digest, content_type, buf)
        .await?;
    let mut resp = (
        StatusCode::CREATED,
        [
            (header::LOCATION, hv(&format!("/v2/{name}/manifests/{}", out.digest))),
            (DOCKER_CONTENT_DIGEST, hv(&out.digest.to_string())),
            (header::CONTENT_LENGTH, hv("0")),
        ],
    )
        .into_response();
    if digest.is_some() && !tags.is_empty() {
        let list: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        resp.headers_mut().insert(OCI_TAG, hv(&list.join(", ")));
    }
    if let Some(subject) = out.subject {
        resp.headers_mut().insert(OCI_SUBJECT, hv(&subject.to_string()));
    }
    Ok(resp)
}

pub async fn delete(app: &App, name: &RepoName, reference: &Reference) -> Result<Response> {
    match reference {
        Reference::Digest(d) => app.registry.delete_manifest(name, d).await?,
        Reference::Tag(t) => app.registry.delete_tag(name, t).await?,
    }
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
