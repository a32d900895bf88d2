//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::headers::{RangeRequest, parse_range};
use super::{App, hv};
use crate::error::{Error, Result};
use crate::header_names::DOCKER_CONTENT_DIGEST;
use crate::proxy::BlobAnswer;
use crate::registry::digest::Digest;
use crate::registry::names::RepoName;

pub async fn get(app: &App, name: &RepoName, digest: &Digest, headers: &HeaderMap, head: bool) -> Result<Response> {
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(DOCKER_CONTENT_DIGEST, hv(&digest.to_string()))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, hv(&format!("\"{digest}\"")))
        .header(header::CACHE_CONTROL, "max-age=31536000");
    let info = match app.proxy.as_ref().and_then(|p| Some((p, p.route(name)?))) {
        None => app.registry.stat_blob(name, digest).await?,
        Some((proxy, target)) => {
            let whole = !headers.contains_key(header::RANGE);
            match proxy.blob(&app.registry, &target, name, digest, head, whole).await? {
                BlobAnswer::Stored(info) => info,
                BlobAnswer::Remote { size } => {
                    if let Some(size) = size {
                        resp = resp.header(header::CONTENT_LENGTH, size);
                    }
                    return Ok(resp.body(Body::empty()).expect("valid response"));
                }
                BlobAnswer::Streaming { size, body } => {
                    if let Some(size) = size {
                        resp = resp.header(header::CONTENT_LENGTH, size);
                    }
                    return Ok(resp.body(Body::from_stream(body)).expect("valid response"));
                }
            }
        }
    };
    if head {
        resp = resp.header(header::CONTENT_LENGTH, info.size);
        return Ok(resp.body(Body::empty()).expect("valid response"));
    }
    if let Some(url) = app.registry.blob_redirect(&info).await? {
        // storage.redirect: the client fetches the bytes (and its Range) from the store itself.
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
    let stream = app.registry.open_blob(&info, Some((start, end))).await?;
    Ok(resp
        .status(status)
        .header(header::CONTENT_LENGTH, end - start)
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

pub async fn delete(app: &App, name: &RepoName, digest: &Digest) -> Result<Response> {
    app.registry.delete_blob(name, digest).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
