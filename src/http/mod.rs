//! The HTTP surface: one dispatcher for `/v2/...` that parses the path into a [`V2Route`] and
//! matches (route, method) to a thin handler; the access log; the API-version header.

pub mod blobs;
pub mod headers;
pub mod listing;
pub mod manifests;
pub mod route;
pub mod uploads;
// Operations (issue 8): request ids, metrics and the access log; health; /metrics, /readyz.
pub mod health;
pub mod observe;
pub mod ops;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Router, extract::DefaultBodyLimit};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::registry::{BodyStream, Registry};
use route::V2Route;

pub struct App {
    pub registry: Registry,
    /// `storage.maintenance.readonly`: pulls work, writes answer 405 UNSUPPORTED.
    pub readonly: bool,
}

pub type AppState = Arc<App>;

pub fn router(app: AppState) -> Router {
    Router::new()
        .fallback(dispatch)
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(api_version))
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
        Err(e) => e.into_response(),
    }
}

async fn handle(app: &App, req: Request) -> Result<Response> {
    let route = route::parse(req.uri().path())?;
    // All query pairs in order (`tag` may repeat), and the last value of each key.
    let pairs: Vec<(String, String)> = match Query::try_from_uri(req.uri()) {
        Ok(Query(p)) => p,
        Err(_) => Vec::new(),
    };
    let q: HashMap<String, String> = pairs.iter().cloned().collect();
    let method = req.method().clone();
    if app.readonly && matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return Err(Error::Unsupported(
            "the registry is in read-only mode for maintenance (storage.maintenance.readonly); pulls still work".into(),
        ));
    }
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    use V2Route::*;
    match (&route, &method) {
        (Base, &Method::GET | &Method::HEAD) => Ok(base()),
        (Blob { name, digest }, &Method::GET) => blobs::get(app, name, digest, h, false).await,
        (Blob { name, digest }, &Method::HEAD) => blobs::get(app, name, digest, h, true).await,
        (Blob { name, digest }, &Method::DELETE) => blobs::delete(app, name, digest).await,
        (UploadStart { name }, &Method::POST) => uploads::start(app, name, &q, h, body).await,
        (Upload { name, id }, &Method::GET) => uploads::status(app, name, id).await,
        (Upload { name, id }, &Method::PATCH) => uploads::patch(app, name, id, h, body).await,
        (Upload { name, id }, &Method::PUT) => uploads::put(app, name, id, &q, h, body).await,
        (Upload { name, id }, &Method::DELETE) => uploads::cancel(app, name, id).await,
        (Manifest { name, reference }, &Method::GET) => manifests::get(app, name, reference, h, false).await,
        (Manifest { name, reference }, &Method::HEAD) => manifests::get(app, name, reference, h, true).await,
        (Manifest { name, reference }, &Method::PUT) => manifests::put(app, name, reference, &pairs, h, body).await,
        (Manifest { name, reference }, &Method::DELETE) => manifests::delete(app, name, reference).await,
        (Tags { name }, &Method::GET | &Method::HEAD) => listing::tags(app, name, &q).await,
        (Catalog, &Method::GET | &Method::HEAD) => listing::catalog(app, &q).await,
        (Referrers { name, digest }, &Method::GET | &Method::HEAD) => listing::referrers(app, name, digest, &q).await,
        _ => Err(Error::MethodNotAllowed {
            method: method.to_string(),
            route: route.kind(),
        }),
    }
}

fn base() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

async fn api_version(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}
