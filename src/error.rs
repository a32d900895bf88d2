//! One error enum for the whole registry. Each variant knows its spec error code, HTTP status and
//! extra headers; `IntoResponse` writes the spec's `{"errors":[{"code","message","detail"}]}` body.
//!
//! Variants carry the domain's typed values (`Digest`, `RepoName`, `UploadId`, `Reference`),
//! not URLs or pre-rendered strings: the HTTP layer adds what only it knows (an upload's
//! `Location`, see `http::uploads::error_response`). `Internal` keeps its cause as the error's
//! `source()`, so logs print the whole chain while the client sees only "internal server
//! error". A response caused by a failing store carries a [`StorageFailure`] extension, which
//! the request observer (`http::observe`) counts as `wharf_storage_errors_total`.

use std::fmt;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::registry::content::Reference;
use crate::registry::digest::Digest;
use crate::registry::names::{RepoName, UploadId};
use crate::storage::DriverError;

/// The cause of an [`Error::Internal`]: any error (a `DriverError`, an `io::Error`, a join
/// error, or a message), kept as the source of the chain.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A value as the client named it: parsed into its domain type, or, when it does not parse
/// (a path segment that is no valid upload id or reference), the text as sent. Both render
/// as the client's text, so the error body is the same either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Named<T> {
    Parsed(T),
    Unparsed(String),
}

impl<T> From<T> for Named<T> {
    fn from(v: T) -> Self {
        Named::Parsed(v)
    }
}

impl<T: fmt::Display> fmt::Display for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Named::Parsed(v) => v.fmt(f),
            Named::Unparsed(s) => f.write_str(s),
        }
    }
}

/// Left in a response's extensions when the error was caused by a failing storage operation
/// (missing objects, bad ranges, lost conditional-write races and unsupported features are
/// not failures); the request observer counts it.
#[derive(Clone, Copy, Debug)]
pub struct StorageFailure;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob unknown to registry")]
    BlobUnknown(Digest),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// A chunk that does not start at the session's current offset (416, with the current range).
    #[error("chunk out of order: the upload is at offset {size}, the chunk starts at {start}")]
    UploadRangeInvalid {
        repo: RepoName,
        upload_id: UploadId,
        size: u64,
        start: u64,
    },
    /// A chunk whose `Content-Range` cannot describe its body: a length that overflows, or
    /// that disagrees with `Content-Length` or with the bytes that arrived (416, with the
    /// session's current range so the client can resume; nothing of the chunk is kept).
    #[error("chunk refused: {reason}")]
    ChunkRangeInvalid {
        repo: RepoName,
        upload_id: UploadId,
        size: u64,
        reason: String,
    },
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown(Named<UploadId>),
    /// A `Range` request header that no byte of the blob satisfies (416 with `Content-Range: bytes */size`).
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    /// An upload whose content does not have the digest the client named (it was discarded).
    #[error(
        "provided digest did not match uploaded content: the uploaded content has digest {computed}, not {expected}; the upload was discarded"
    )]
    UploadDigestMismatch { computed: Digest, expected: Digest },
    /// A manifest PUT by digest whose bytes have another digest.
    #[error("provided digest did not match uploaded content: the manifest's digest is {computed}, not {expected}")]
    ManifestDigestMismatch { computed: Digest, expected: Digest },
    #[error("manifest references a manifest or blob unknown to registry")]
    ManifestBlobUnknown(Vec<Digest>),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest is larger than the limit of {limit} bytes")]
    ManifestTooLarge { limit: usize },
    #[error("manifest unknown to registry")]
    ManifestUnknown(Named<Reference>),
    #[error("{0}")]
    NameInvalid(String),
    #[error("repository name not known to registry")]
    NameUnknown(RepoName),
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    #[error("tag invalid: {0}")]
    TagInvalid(String),
    #[error("too many tags in one request (the limit is {limit})")]
    TooManyTags { limit: usize },
    #[error("invalid pagination: {0}")]
    PaginationInvalid(String),
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    #[error("no such endpoint: {0}")]
    NotFound(String),
    #[error("method {method} not allowed on {route}")]
    MethodNotAllowed { method: String, route: &'static str },
    /// 401: no credentials, wrong ones, or a token that does not cover the request. The
    /// challenge is the `WWW-Authenticate` value; `detail` lists the accesses needed.
    #[error("authentication required")]
    Unauthorized { challenge: String, detail: Vec<Value> },
    /// 403: the caller is known, and the access rules refuse.
    #[error("requested access to the resource is denied")]
    Denied { detail: Vec<Value> },
    /// A token endpoint request that cannot be served (unknown grant type, missing fields).
    #[error("invalid token request: {0}")]
    TokenRequestInvalid(String),
    /// Pull-through cache: the upstream registry failed, could not be reached, or sent content
    /// that does not match its digest.
    #[error("upstream registry: {0}")]
    Upstream(String),
    /// Pull-through cache: the upstream rate-limits us (429) and nothing is cached.
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    /// A limit of ours refuses the request for now (429 TOOMANYREQUESTS): too many open upload
    /// sessions, too many failed logins. `Retry-After` says when to try again (whole seconds, at
    /// least 1).
    #[error("too many requests: {reason}")]
    Throttled {
        reason: String,
        retry_after: std::time::Duration,
    },
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

impl Error {
    /// An internal error with `cause` as its source.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Error::Internal(cause.into())
    }

    /// The upload session a 416 answers for: the HTTP layer adds its `Location`.
    pub fn upload_session(&self) -> Option<(&RepoName, &UploadId)> {
        match self {
            Error::UploadRangeInvalid { repo, upload_id, .. } | Error::ChunkRangeInvalid { repo, upload_id, .. } => {
                Some((repo, upload_id))
            }
            _ => None,
        }
    }

    /// Whether the error is a failing storage operation (counted as a storage error).
    pub fn is_storage_failure(&self) -> bool {
        match self {
            Error::Internal(cause) => cause
                .downcast_ref::<DriverError>()
                .is_some_and(crate::metrics::is_storage_failure),
            _ => false,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::BlobUnknown(_) => "BLOB_UNKNOWN",
            Error::BlobUploadInvalid(_) | Error::UploadRangeInvalid { .. } => "BLOB_UPLOAD_INVALID",
            Error::BlobUploadUnknown(_) => "BLOB_UPLOAD_UNKNOWN",
            Error::RangeNotSatisfiable { .. } | Error::ChunkRangeInvalid { .. } => "SIZE_INVALID",
            Error::DigestInvalid(_) | Error::UploadDigestMismatch { .. } | Error::ManifestDigestMismatch { .. } => {
                "DIGEST_INVALID"
            }
            Error::ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            Error::ManifestInvalid(_)
            | Error::ManifestTooLarge { .. }
            | Error::TagInvalid(_)
            | Error::TooManyTags { .. } => "MANIFEST_INVALID",
            Error::ManifestUnknown(_) => "MANIFEST_UNKNOWN",
            Error::NameInvalid(_) => "NAME_INVALID",
            Error::NameUnknown(_) => "NAME_UNKNOWN",
            Error::SizeInvalid(_) => "SIZE_INVALID",
            Error::Unsupported(_)
            | Error::MethodNotAllowed { .. }
            | Error::NotFound(_)
            | Error::PaginationInvalid(_)
            | Error::TokenRequestInvalid(_) => "UNSUPPORTED",
            Error::Unauthorized { .. } => "UNAUTHORIZED",
            Error::Denied { .. } => "DENIED",
            Error::Upstream(_) => "UNAVAILABLE",
            Error::TooManyRequests(_) | Error::Throttled { .. } => "TOOMANYREQUESTS",
            Error::Internal(_) => "UNKNOWN",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BlobUnknown(_)
            | Error::BlobUploadUnknown(_)
            | Error::ManifestUnknown(_)
            | Error::NameUnknown(_)
            | Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::UploadRangeInvalid { .. } | Error::ChunkRangeInvalid { .. } | Error::RangeNotSatisfiable { .. } => {
                StatusCode::RANGE_NOT_SATISFIABLE
            }
            Error::ManifestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::TooManyTags { .. } => StatusCode::URI_TOO_LONG,
            Error::Unsupported(_) | Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Denied { .. } => StatusCode::FORBIDDEN,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::TooManyRequests(_) | Error::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn message(&self) -> String {
        match self {
            // Spec short descriptions, with our specifics in `detail`.
            Error::BlobUnknown(_) => "blob unknown to registry".into(),
            Error::BlobUploadUnknown(_) => "blob upload unknown to registry".into(),
            Error::ManifestUnknown(_) => "manifest unknown to registry".into(),
            Error::NameUnknown(_) => "repository name not known to registry".into(),
            Error::ManifestBlobUnknown(_) => "manifest references a manifest or blob unknown to registry".into(),
            Error::Internal(_) => "internal server error".into(),
            other => other.to_string(),
        }
    }

    fn details(&self) -> Vec<Value> {
        match self {
            Error::BlobUnknown(d) => vec![json!({ "digest": d.to_string() })],
            Error::BlobUploadUnknown(id) => vec![json!({ "uuid": id.to_string() })],
            Error::ManifestUnknown(r) => vec![json!({ "reference": r.to_string() })],
            Error::NameUnknown(n) => vec![json!({ "name": n.to_string() })],
            Error::ManifestBlobUnknown(ds) => ds.iter().map(|d| json!({ "digest": d.to_string() })).collect(),
            Error::UploadRangeInvalid { size, start, .. } => vec![json!({ "offset": size, "start": start })],
            Error::ChunkRangeInvalid { size, .. } => vec![json!({ "offset": size })],
            Error::RangeNotSatisfiable { size } => vec![json!({ "size": size })],
            Error::Unauthorized { detail, .. } | Error::Denied { detail } if !detail.is_empty() => {
                vec![Value::Array(detail.clone())]
            }
            // Internal causes are logged, never sent.
            Error::Internal(_) => vec![Value::Null],
            _ => vec![Value::Null],
        }
    }

    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        match self {
            // `Location` is the HTTP layer's (`http::uploads::error_response`).
            Error::UploadRangeInvalid { upload_id, size, .. } | Error::ChunkRangeInvalid { upload_id, size, .. } => {
                insert(&mut h, crate::header_names::DOCKER_UPLOAD_UUID, upload_id.as_str());
                insert(&mut h, header::RANGE, &range_header(*size));
            }
            Error::RangeNotSatisfiable { size } => insert(&mut h, header::CONTENT_RANGE, &format!("bytes */{size}")),
            Error::Unauthorized { challenge, .. } => insert(&mut h, header::WWW_AUTHENTICATE, challenge),
            Error::Throttled { retry_after, .. } => {
                insert(&mut h, header::RETRY_AFTER, &retry_after_secs(*retry_after))
            }
            _ => {}
        }
        h
    }
}

/// A `Retry-After` value: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(d: std::time::Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1).to_string()
}

/// `Range: 0-<last byte>` as Distribution reports it (`0-0` for an empty upload).
pub fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn insert<K: header::IntoHeaderName>(h: &mut HeaderMap, k: K, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(k, v);
    }
}

impl From<DriverError> for Error {
    fn from(e: DriverError) -> Self {
        Error::Internal(Box::new(e))
    }
}

/// An error and its source chain, `: `-separated (what the logs print).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut shown = self.0.to_string();
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            // A cause whose text the outer message already quotes adds nothing.
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            next = e.source();
        }
        Ok(())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %Chain(&self), "request failed");
        }
        let errors: Vec<Value> = self
            .details()
            .into_iter()
            .map(|detail| json!({ "code": self.code(), "message": self.message(), "detail": detail }))
            .collect();
        let body = serde_json::to_vec(&json!({ "errors": errors })).expect("json");
        let mut resp = (status, body).into_response();
        if self.is_storage_failure() {
            resp.extensions_mut().insert(StorageFailure);
        }
        resp.headers_mut().extend(self.headers());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        resp
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn throttled_is_429_with_retry_after_rounded_up() {
        let e = Error::Throttled {
            reason: "x".into(),
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code(), "TOOMANYREQUESTS");
        assert_eq!(e.headers().get(header::RETRY_AFTER).unwrap(), "2");
        assert_eq!(retry_after_secs(Duration::ZERO), "1");
        assert_eq!(retry_after_secs(Duration::from_secs(60)), "60");
    }
}
