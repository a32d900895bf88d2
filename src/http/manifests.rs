//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{App, hv};
use crate::body_limit;
use crate::error::{Error, Result};
use crate::header_names::{DOCKER_CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG};
use crate::registry::content::{MANIFEST_LIMIT, ManifestAnswer, Reference};
use crate::registry::manifests::{PutOutcome, StoredManifest};
use crate::registry::names::{RepoName, Tag};

pub async fn get(
    app: &App,
    name: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let accept: Vec<&str> = values(headers, header::ACCEPT).collect();
    let ManifestAnswer { manifest: m, warning } = app.content.manifest(name, reference, &accept).await?;
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

/// A header's values that are text.
fn values(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok())
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
    let bytes = read_manifest(headers, body).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let query_tags = query_tags(query)?;
    let (tags, digest) = match reference {
        Reference::Tag(t) => (vec![t.clone()], None),
        Reference::Digest(d) => (query_tags, Some(d)),
    };
    let out = app
        .registry
        .put_manifest(name, &tags, digest, content_type, bytes)
        .await?;
    Ok(created(name, &out, &tags, digest.is_some()))
}

/// 201 for a pushed manifest: where it is, its digest, the tags a push by digest applied, and
/// the subject it names.
fn created(name: &RepoName, out: &PutOutcome, tags: &[Tag], by_digest: bool) -> Response {
    let mut resp = (
        StatusCode::CREATED,
        [
            (header::LOCATION, hv(&format!("/v2/{name}/manifests/{}", out.digest))),
            (DOCKER_CONTENT_DIGEST, hv(&out.digest.to_string())),
            (header::CONTENT_LENGTH, hv("0")),
        ],
    )
        .into_response();
    if by_digest && !tags.is_empty() {
        let list: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        resp.headers_mut().insert(OCI_TAG, hv(&list.join(", ")));
    }
    if let Some(subject) = &out.subject {
        resp.headers_mut().insert(OCI_SUBJECT, hv(&subject.to_string()));
    }
    resp
}

/// A pushed manifest's body, up to [`MANIFEST_LIMIT`] (more is `MANIFEST_TOO_LARGE`, declared
/// or found while reading; the rest of the body is drained first).
async fn read_manifest(headers: &HeaderMap, body: Body) -> Result<Bytes> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    let read = match declared {
        Some(l) if l > MANIFEST_LIMIT as u64 => Err(body_limit::ReadError::TooLarge),
        _ => body_limit::read(&mut body, MANIFEST_LIMIT).await,
    };
    match read {
        Ok(buf) => Ok(buf),
        Err(body_limit::ReadError::TooLarge) => {
            body_limit::drain(body, DRAIN_LIMIT).await;
            Err(Error::ManifestTooLarge { limit: MANIFEST_LIMIT })
        }
        Err(body_limit::ReadError::Body(e)) => Err(Error::ManifestInvalid(format!("reading the body failed: {e}"))),
    }
}

/// The tags a push by digest names with `?tag=` (distribution-spec main, end-7b).
fn query_tags(query: &[(String, String)]) -> Result<Vec<Tag>> {
    let tags: Vec<Tag> = query
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| Tag::parse(v).ok_or_else(|| Error::TagInvalid(format!("invalid tag {v:?} in ?tag="))))
        .collect::<Result<_>>()?;
    if tags.len() > MAX_QUERY_TAGS {
        return Err(Error::TooManyTags { limit: MAX_QUERY_TAGS });
    }
    Ok(tags)
}

/// How much of a refused manifest body is read and discarded (`body_limit::drain`).
const DRAIN_LIMIT: usize = 64 << 20;

pub async fn delete(app: &App, name: &RepoName, reference: &Reference) -> Result<Response> {
    match reference {
        Reference::Digest(d) => app.registry.delete_manifest(name, d).await?,
        Reference::Tag(t) => app.registry.delete_tag(name, t).await?,
    }
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_is_a_valid_header() {
        assert_eq!(warning_header("a \"b\" é"), "299 - \"a 'b' '\"");
    }
}
