//! The HTTP surface: one dispatcher for `/v2/...` that parses the path into a [`V2Route`] and
//! matches (route, method) to a thin handler; the API-version header (tower-http's
//! `SetResponseHeader`, on every response of the API and token routes).

pub mod blobs;
pub mod headers;
pub mod idle;
pub mod listing;
pub mod manifests;
pub mod route;
pub mod token;
pub mod uploads;
// Operations (issue 8): request ids, metrics and the access log; health; /metrics, /readyz.
pub mod health;
pub mod observe;
pub mod ops;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Router, extract::DefaultBodyLimit};
use futures::StreamExt;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::{Auth, Caller, RequestInfo};
use crate::error::{Error, Result};
use crate::header_names::DOCKER_DISTRIBUTION_API_VERSION;
use crate::registry::content::Content;
use crate::registry::{BodyStream, Registry};
use route::V2Route;

pub struct App {
    /// The write paths (uploads, manifest pushes, deletes) and listings.
    pub registry: Arc<Registry>,
    /// What pulls read, and the gate every write passes: the registry itself, or the
    /// pull-through cache wrapping it (the `proxy` module).
    pub content: Arc<dyn Content>,
    /// `storage.maintenance.readonly`: pulls work, writes answer 405 UNSUPPORTED.
    pub readonly: bool,
    pub auth: Auth,
}

pub type AppState = Arc<App>;

pub fn router(app: AppState) -> Router {
    let mut r = Router::new();
    if app.auth.issues_tokens() {
        r = r
            .route("/token", axum::routing::get(token::get).post(token::post))
            .route("/token/jwks.json", axum::routing::get(token::jwks));
    }
    r.fallback(dispatch)
        .layer(DefaultBodyLimit::disable())
        .layer(SetResponseHeaderLayer::overriding(
            DOCKER_DISTRIBUTION_API_VERSION,
            HeaderValue::from_static("registry/2.0"),
        ))
        .with_state(app)
}

/// A header value from text we produced (digests, validated names, numbers).
pub(crate) fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn body_stream(body: Body) -> BodyStream {
    body.into_data_stream()
        .map(|r| r.map_err(std::io::Error::other))
        .boxed()
}

async fn dispatch(State(app): State<AppState>, req: Request) -> Response {
    match handle(&app, req).await {
        Ok(resp) => resp,
        Err(e) => uploads::error_response(e),
    }
}

async fn handle(app: &App, mut req: Request) -> Result<Response> {
    let route = route::take(&mut req)?;
    // All query pairs in order (`tag` may repeat), and the last value of each key.
    let pairs: Vec<(String, String)> = match Query::try_from_uri(req.uri()) {
        Ok(Query(p)) => p,
        Err(_) => Vec::new(),
    };
    let mut q: HashMap<String, String> = pairs.iter().cloned().collect();
    let method = req.method().clone();
    let caller = match authorize(app, request_info(&req), &method, &route, &mut q).await {
        Ok(c) => c,
        Err(e) => {
            drain_refused(req.into_body()).await;
            return Err(e);
        }
    };
    if matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        check_write(app, &route)?;
    }
    let request = Checked {
        pairs: &pairs,
        q: &q,
        caller: &caller,
        peer: request_info(&req).peer,
    };
    endpoint(app, &route, &method, req, request).await
}

/// What `handle` learnt about a request before its endpoint runs.
struct Checked<'a> {
    /// All query pairs in order (`tag` may repeat), and the last value of each key.
    pairs: &'a [(String, String)],
    q: &'a HashMap<String, String>,
    caller: &'a Caller,
    /// The client's address (upload-session caps count against it when there is no user).
    peer: Option<std::net::IpAddr>,
}

/// The endpoint table: one line per (route, method).
async fn endpoint(app: &App, route: &V2Route, method: &Method, req: Request, r: Checked<'_>) -> Result<Response> {
    let (parts, body) = req.into_parts();
    let (h, q) = (&parts.headers, r.q);
    use V2Route::*;
    match (route, method) {
        (Base, &Method::GET | &Method::HEAD) => Ok(base()),
        (Blob { name, digest }, &Method::GET) => blobs::get(app, name, digest, h, false).await,
        (Blob { name, digest }, &Method::HEAD) => blobs::get(app, name, digest, h, true).await,
        (Blob { name, digest }, &Method::DELETE) => blobs::delete(app, name, digest).await,
        (UploadStart { name }, &Method::POST) => {
            let client = uploads::client_key(r.caller, r.peer);
            uploads::start(app, name, q, h, body, r.caller, &client).await
        }
        (Upload { name, id }, &Method::GET) => uploads::status(app, name, id).await,
        (Upload { name, id }, &Method::PATCH) => uploads::patch(app, name, id, h, body).await,
        (Upload { name, id }, &Method::PUT) => uploads::put(app, name, id, q, h, body).await,
        (Upload { name, id }, &Method::DELETE) => uploads::cancel(app, name, id).await,
        (Manifest { name, reference }, &Method::GET) => manifests::get(app, name, reference, h, false).await,
        (Manifest { name, reference }, &Method::HEAD) => manifests::get(app, name, reference, h, true).await,
        (Manifest { name, reference }, &Method::PUT) => manifests::put(app, name, reference, r.pairs, h, body).await,
        (Manifest { name, reference }, &Method::DELETE) => manifests::delete(app, name, reference).await,
        (BadReference { reference, .. }, &Method::GET | &Method::HEAD | &Method::DELETE | &Method::PUT) => {
            bad_reference(reference, method, body).await
        }
        (Tags { name }, &Method::GET | &Method::HEAD) => listing::tags(app, name, q).await,
        (Catalog, &Method::GET | &Method::HEAD) => {
            listing::catalog(app, q, &|repo| app.auth.catalog_shows(r.caller, repo)).await
        }
        (Referrers { name, digest }, &Method::GET | &Method::HEAD) => listing::referrers(app, name, digest, q).await,
        _ => Err(Error::MethodNotAllowed {
            method: method.to_string(),
            route: route.kind(),
        }),
    }
}

/// A manifest path whose reference is neither a tag nor a digest: unknown to a read, invalid to a PUT.
async fn bad_reference(reference: &str, method: &Method, body: Body) -> Result<Response> {
    if method != Method::PUT {
        return Err(Error::ManifestUnknown(crate::error::Named::Unparsed(
            reference.to_owned(),
        )));
    }
    drain_refused(body).await;
    Err(if reference.contains(':') {
        Error::DigestInvalid(format!("invalid digest {reference:?}"))
    } else {
        Error::TagInvalid(format!("invalid tag {reference:?}"))
    })
}

/// Who the caller is, if they may make this request. A mount's source is not required
/// (without pull on it the mount becomes an upload), but a bearer challenge asks for it, so
/// the client's token can cover it; a mount the caller may not pull from (or, while auth is
/// on, one without a source, as the blob could come from anywhere) loses `mount` and `from`
/// and falls back to a plain upload session.
async fn authorize(
    app: &App,
    req: RequestInfo<'_>,
    method: &Method,
    route: &V2Route,
    q: &mut HashMap<String, String>,
) -> Result<crate::auth::Caller> {
    let mount_source: Vec<crate::auth::Access> = match (route, q.get("from")) {
        (V2Route::UploadStart { .. }, Some(from)) if q.contains_key("mount") => {
            vec![crate::auth::Access::repository(from, crate::auth::scope::PULL)]
        }
        _ => Vec::new(),
    };
    let caller = app
        .auth
        .check(req, &route.required_access(method), &mount_source)
        .await?;
    // A mount needs pull on its source; without it the request falls back to a plain upload
    // session. Without a source, `uploads::start` mounts only from a repository the caller may pull.
    if matches!(route, V2Route::UploadStart { .. }) && q.contains_key("mount") && app.auth.enabled() {
        let pullable = q.get("from").is_none_or(|f| app.auth.may_pull(&caller, f));
        if !pullable {
            q.remove("mount");
            q.remove("from");
        }
    }
    Ok(caller)
}

/// The gate every write (POST, PUT, PATCH, DELETE) passes: none in read-only mode, and none
/// to a repository whose content is not this registry's own (the content interface says which:
/// a pull-through cache's repositories take no writes).
fn check_write(app: &App, route: &V2Route) -> Result<()> {
    if app.readonly {
        return Err(Error::Unsupported(
            "the registry is in read-only mode for maintenance (storage.maintenance.readonly); pulls still work".into(),
        ));
    }
    match route.name() {
        Some(name) => app.content.check_write(name),
        None => Ok(()),
    }
}

/// Read and discard a refused request's body (up to 8 MiB, for up to 5 s), so a client still
/// sending it reads the 401 instead of a broken pipe (Go's net/http drains 256 KiB the same
/// way). 8 MiB covers any manifest (the limit is 4 MiB), which clients send before they know
/// they need a token; a larger body (a blob) is cut off and the connection closed.
async fn drain_refused(body: Body) {
    const LIMIT: usize = 8 << 20;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), crate::body_limit::drain(body, LIMIT)).await;
}

/// Request extension the server adds on TLS connections.
#[derive(Clone, Copy, Debug)]
pub struct TlsConnection;

/// Request extension the server adds: the connection's local address (this server's address
/// as the client reached it).
#[derive(Clone, Copy, Debug)]
pub struct LocalAddr(pub std::net::SocketAddr);

pub(crate) fn request_info(req: &Request) -> RequestInfo<'_> {
    RequestInfo {
        headers: Some(req.headers()),
        peer: req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip()),
        tls: req.extensions().get::<TlsConnection>().is_some(),
        local: req.extensions().get::<LocalAddr>().map(|l| l.0),
    }
}

fn base() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}
