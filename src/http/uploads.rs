//! Upload endpoints: `POST /v2/<name>/blobs/uploads/` (session, monolithic `?digest=`, mount),
//! and `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::headers::parse_content_range;
use super::{App, body_stream, hv};
use crate::error::{Error, Result, range_header};
use crate::header_names::{CONTENT_LENGTH, CONTENT_RANGE, DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, LOCATION, RANGE};
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::names::{RepoName, UploadId};
use crate::registry::uploads::{ChunkInfo, UploadStatus};

fn upload_location(name: &RepoName, id: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn blob_location(name: &RepoName, d: &Digest) -> String {
    format!("/v2/{name}/blobs/{d}")
}

/// An error as a response; a 416 on an upload session gets the session's `Location` too
/// (the error itself carries only the repository and id).
pub(super) fn error_response(e: Error) -> Response {
    let location = e.upload_session().map(|(name, id)| upload_location(name, id));
    let mut resp = e.into_response();
    if let Some(location) = location {
        resp.headers_mut().insert(LOCATION, hv(&location));
    }
    resp
}

/// 202 with the headers every upload response carries.
fn accepted(name: &RepoName, st: &UploadStatus, status: StatusCode) -> Response {
    (
        status,
        [
            (LOCATION, hv(&upload_location(name, &st.id))),
            (RANGE, hv(&range_header(st.size))),
            (DOCKER_UPLOAD_UUID, hv(st.id.as_str())),
            (CONTENT_LENGTH, hv("0")),
        ],
    )
        .into_response()
}

fn created(name: &RepoName, d: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (LOCATION, hv(&blob_location(name, d))),
            (DOCKER_CONTENT_DIGEST, hv(&d.to_string())),
            (CONTENT_LENGTH, hv("0")),
        ],
    )
        .into_response()
}

fn digest_param(q: &HashMap<String, String>, key: &str) -> Result<Option<Digest>> {
    q.get(key).map(|s| s.parse().map_err(Error::DigestInvalid)).transpose()
}

fn chunk_info(headers: &HeaderMap) -> Result<ChunkInfo> {
    match headers.get(CONTENT_RANGE) {
        None => Ok(ChunkInfo::default()),
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| Error::BlobUploadInvalid("Content-Range is not ASCII".into()))?;
            let (start, len) = parse_content_range(v)?;
            let invalid = match (len, content_length(headers)) {
                (None, _) => Some("the Content-Range covers more bytes than a request can carry"),
                (Some(len), Some(cl)) if cl != len => Some("the Content-Length disagrees with the Content-Range"),
                _ => None,
            };
            Ok(ChunkInfo {
                start: Some(start),
                len,
                invalid,
            })
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Who opens an upload session, for the cap per client (`uploads.maxperclient`): the
/// authenticated user, else the client's address; an IPv6 address by its /64 (one host may
/// hold a whole /64 and use any address of it).
pub fn client_key(caller: &crate::auth::Caller, peer: Option<std::net::IpAddr>) -> String {
    use std::net::IpAddr;
    match (&caller.user, peer.map(crate::auth::limiter::client_network)) {
        (Some(user), _) => format!("user {user}"),
        (None, Some(IpAddr::V4(a))) => format!("address {a}"),
        (None, Some(IpAddr::V6(a))) => format!("address {a}/64"),
        (None, None) => "anonymous".to_owned(),
    }
}

pub async fn start(
    app: &App,
    name: &RepoName,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
    caller: &crate::auth::Caller,
    client: &str,
) -> Result<Response> {
    if let Some(mount) = digest_param(q, "mount")? {
        if mount_blob(app, name, &mount, q, caller).await? {
            return Ok(created(name, &mount));
        }
        // Not mountable: the spec's fallback is a new session (202).
    } else if let Some(digest) = digest_param(q, "digest")? {
        let info = app
            .registry
            .put_blob(name, &digest, content_length(headers), body_stream(body))
            .await?;
        return Ok(created(name, &info.digest));
    }
    let alg = match q.get("digest-algorithm") {
        Some(a) => a.parse::<Algorithm>().map_err(Error::DigestInvalid)?,
        None => Algorithm::Sha256,
    };
    let st = app.registry.start_upload(name, alg, client).await?;
    Ok(accepted(name, &st, StatusCode::ACCEPTED))
}

/// A cross-repository mount: from `from`, else (auth on) from a repository the caller may
/// pull, else from any stored copy. `false`: not mountable.
async fn mount_blob(
    app: &App,
    name: &RepoName,
    mount: &Digest,
    q: &HashMap<String, String>,
    caller: &crate::auth::Caller,
) -> Result<bool> {
    let from = q.get("from").map(|f| RepoName::parse(f)).transpose()?;
    let info = match from {
        None if app.auth.enabled() => {
            let may_pull = |repo: &str| app.auth.may_pull(caller, repo);
            app.registry.mount_blob_from_pullable(name, mount, &may_pull).await?
        }
        _ => app.registry.mount_blob(name, mount, from.as_ref()).await?,
    };
    Ok(info.is_some())
}

pub async fn status(app: &App, name: &RepoName, id: &UploadId) -> Result<Response> {
    let st = app.registry.upload_status(name, id).await?;
    Ok(accepted(name, &st, StatusCode::NO_CONTENT))
}

pub async fn patch(app: &App, name: &RepoName, id: &UploadId, headers: &HeaderMap, body: Body) -> Result<Response> {
    let chunk = chunk_info(headers)?;
    let st = app.registry.append_upload(name, id, chunk, body_stream(body)).await?;
    Ok(accepted(name, &st, StatusCode::ACCEPTED))
}

pub async fn put(
    app: &App,
    name: &RepoName,
    id: &UploadId,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let digest = digest_param(q, "digest")?
        .ok_or_else(|| Error::DigestInvalid("the closing PUT needs a ?digest= parameter".into()))?;
    let chunk = chunk_info(headers)?;
    let info = app
        .registry
        .finish_upload(name, id, &digest, chunk, body_stream(body))
        .await?;
    Ok(created(name, &info.digest))
}

pub async fn cancel(app: &App, name: &RepoName, id: &UploadId) -> Result<Response> {
    app.registry.cancel_upload(name, id).await?;
    Ok((StatusCode::NO_CONTENT, [(CONTENT_LENGTH, "0")]).into_response())
}
