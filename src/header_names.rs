//! The names of the headers Wharf reads and writes that `http::header` does not define, in one
//! place (used by the handlers, the error responses and the pull-through cache's client).
//! Standard names (`Range`, `Location`, `Content-Range`, `ETag`, ...) are re-exported from
//! `http::header`, so a handler imports every header name from here.
//!
//! A crate-level module rather than one under `http/`: the proxy and the error type below the
//! handlers use these names too, and nothing below the http layer imports `crate::http`.

use axum::http::HeaderName;

pub use axum::http::header::{
    ACCEPT, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LINK,
    LOCATION, PRAGMA, RANGE, RETRY_AFTER, WARNING, WWW_AUTHENTICATE,
};

/// The digest of the content a response carries or a write stored (distribution-spec).
pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// The id of an upload session, on every upload response.
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
/// `registry/2.0` on every API response (clients probe for it on `/v2/`).
pub const DOCKER_DISTRIBUTION_API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
/// The subject a pushed manifest refers to (the referrers API).
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// The tags a push by digest applied (`?tag=`).
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
/// The filters a referrers listing applied (`artifactType`).
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
/// The request id, kept from the client when sane and returned on every response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
