//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::response::Builder;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::headers::{RangeRequest, parse_range};
use super::{App, hv};
use crate::error::{Error, Result};
use crate::header_names::DOCKER_CONTENT_DIGEST;
use crate::registry::blobs::BlobInfo;
use crate::registry::content::{BlobAnswer, BlobRead};
use crate::registry::digest::Digest;
use crate::registry::names::RepoName;

pub async fn get(app: &App, name: &RepoName, digest: &Digest, headers: &HeaderMap, head: bool) -> Result<Response> {
    let resp = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(DOCKER_CONTENT_DIGEST, hv(&digest.to_string()))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, hv(&format!("\"{digest}\"")))
        .header(header::CACHE_CONTROL, "max-age=31536000");
    let read = match (head, headers.contains_key(header::RANGE)) {
        (true, _) => BlobRead::Head,
        (false, false) => BlobRead::Whole,
        (false, true) => BlobRead::Range,
    };
    match app.content.blob(name, digest, read).await? {
        BlobAnswer::Stored(info) if head => Ok(sized(resp, Some(info.size), Body::empty())),
        BlobAnswer::Stored(info) => serve_stored(app, &info, resp, headers).await,
        // Answered by another source than the store (the pull-through cache's upstream).
        BlobAnswer::Remote { size } => Ok(sized(resp, size, Body::empty())),
        BlobAnswer::Streaming { size, body } => Ok(sized(resp, size, Body::from_stream(body))),
    }
}

/// A stored blob's body, all of it or the requested range; or, with `storage.redirect`, a
/// redirect to the store, which then serves the bytes (and the Range) itself.
async fn serve_stored(app: &App, info: &BlobInfo, mut resp: Builder, headers: &HeaderMap) -> Result<Response> {
    if let Some(url) = app.content.blob_redirect(info).await? {
        return Ok(resp
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, hv(&url))
            .header(header::CONTENT_LENGTH, 0)
            .body(Body::empty())
            .expect("valid response"));
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range, info.size) {
        RangeRequest::Full => (StatusCode::OK, 0, info.size),
        RangeRequest::Partial(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        RangeRequest::Unsatisfiable => return Err(Error::RangeNotSatisfiable { size: info.size }),
    };
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", start, end - 1, info.size),
        );
    }
    let stream = app.content.open_blob(info, Some((start, end))).await?;
    Ok(sized(resp.status(status), Some(end - start), Body::from_stream(stream)))
}

/// The response with its body, and its Content-Length when the size is known.
fn sized(mut resp: Builder, size: Option<u64>, body: Body) -> Response {
    if let Some(size) = size {
        resp = resp.header(header::CONTENT_LENGTH, size);
    }
    resp.body(body).expect("valid response")
}

pub async fn delete(app: &App, name: &RepoName, digest: &Digest) -> Result<Response> {
    app.registry.delete_blob(name, digest).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
