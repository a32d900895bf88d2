//! What every request goes through on the way in and out: a request id (kept from the
//! client's `X-Request-Id` when sane, else a new UUID; returned in `X-Request-Id` and set on the
//! request's tracing span), metrics (among them the storage errors: responses marked with
//! `error::StorageFailure`), the configured `http.headers`, the shutdown cut
//! ([`Abort`]), and the access log: one line per request, written when its response body has
//! been sent (or dropped), so byte counts and durations cover the whole transfer.
//!
//! The request id is tower-http's (`SetRequestId` with a UUID v4, `PropagateRequestId`), behind
//! our filter that drops a client id that is not short and plain. The access log and metrics
//! stay ours: tower-http's `TraceLayer` cannot see a response body dropped half-sent (our
//! `aborted` and 499 `cancelled` outcomes) nor count its bytes; and `http.headers` stay ours,
//! as `SetResponseHeader` sets one value per name and the configuration may give several.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tracing::Instrument;

use super::route;
use crate::header_names::X_REQUEST_ID;
use crate::metrics::{KindLabels, Metrics, RequestLabels, RouteLabels};
use crate::shutdown::Abort;

pub struct Observe {
    pub metrics: Arc<Metrics>,
    /// `!log.accesslog.disabled`
    pub access_log: bool,
    /// `http.headers`, added to every response that does not set them itself.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub abort: Abort,
    /// The metrics endpoint's path (a label of its own).
    pub metrics_path: String,
}

impl Observe {
    pub fn new(metrics: Arc<Metrics>, config: &crate::Config, abort: Abort) -> Self {
        let headers = config
            .http
            .headers
            .iter()
            .flat_map(|(name, values)| {
                let name = HeaderName::from_bytes(name.as_bytes()).expect("validated");
                values
                    .iter()
                    .map(move |v| (name.clone(), HeaderValue::from_str(v).expect("validated")))
            })
            .collect();
        Observe {
            metrics,
            access_log: !config.log.accesslog.disabled,
            headers,
            abort,
            metrics_path: config.http.debug.prometheus.path.clone(),
        }
    }
}

/// `app` seen by [`middleware`], with request ids: the outermost layer drops an id from the
/// client that is not short and plain, tower-http's `SetRequestId` makes one (a UUID v4) when
/// there is none and `PropagateRequestId` returns it on the response.
pub fn layer(app: axum::Router, obs: Arc<Observe>) -> axum::Router {
    app.layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(middleware::from_fn_with_state(obs, self::middleware))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(drop_unplain_request_id))
}

/// A request id from the client is kept if it is short and plain; otherwise it gets a fresh one.
async fn drop_unplain_request_id(mut req: Request) -> Request {
    let plain = req.headers().get(&X_REQUEST_ID).map(|v| {
        let v = v.as_bytes();
        !v.is_empty() && v.len() <= 64 && v.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if plain == Some(false) {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    req
}

/// The id `SetRequestId` gave the request (plain ASCII: kept only if so, or a UUID).
fn request_id(req: &Request) -> String {
    req.extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The route template of a path, and the `/v2/` route kind when it is one; `parsed` is the
/// path's [`route::parse`] for a `/v2/` path.
fn labels(
    path: &str,
    parsed: Option<&crate::error::Result<route::V2Route>>,
    metrics_path: &str,
) -> (&'static str, Option<&'static str>) {
    match parsed {
        Some(Ok(r)) => return (r.template(), Some(r.kind())),
        Some(Err(_)) => return ("/v2/*", None),
        None => {}
    }
    if path == metrics_path {
        return ("/metrics", None);
    }
    match path {
        "/healthz" => ("/healthz", None),
        "/readyz" => ("/readyz", None),
        "/debug/health" => ("/debug/health", None),
        "/token" => ("/token", None),
        "/token/jwks.json" => ("/token/jwks.json", None),
        _ => ("other", None),
    }
}

pub async fn middleware(State(obs): State<Arc<Observe>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The route is parsed here, once: the dispatcher takes it from the request (`route::take`).
    let parsed = route::is_v2(&path).then(|| route::parse(&path));
    let (route, kind) = labels(&path, parsed.as_ref(), &obs.metrics_path);
    if let Some(parsed) = parsed {
        req.extensions_mut().insert(route::Parsed::new(parsed));
    }
    let upload = matches!(
        (kind, &method),
        (Some("upload_start"), &Method::POST) | (Some("upload"), &Method::PATCH | &Method::PUT)
    );
    obs.metrics.in_flight.inc();
    if upload {
        obs.metrics.uploads_in_progress.inc();
    }
    let received = Arc::new(AtomicU64::new(0));
    let mut pending = Pending(Some(Done {
        obs: obs.clone(),
        start,
        method_label: method_label(&method),
        method,
        path,
        route,
        kind,
        upload,
        received: received.clone(),
        request_id: id.clone(),
    }));
    let req = req.map(|inner| {
        Body::new(RequestBody {
            inner,
            received,
            abort: obs.abort.clone(),
            aborted: false,
        })
    });
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = next.run(req).instrument(span).await;
    let headers = resp.headers_mut();
    for (name, value) in &obs.headers {
        if !headers.contains_key(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let status = resp.status();
    // An error response caused by a failing store (`Error` leaves the marker).
    if resp.extensions_mut().remove::<crate::error::StorageFailure>().is_some() {
        crate::metrics::storage_error();
    }
    let done = pending.0.take().expect("not finished yet");
    let (parts, body) = resp.into_parts();
    let length = parts
        .headers
        .get(crate::header_names::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    Response::from_parts(
        parts,
        Body::new(ResponseBody {
            inner: body,
            sent: 0,
            length,
            status,
            done: Some(done),
            abort: obs.abort.clone(),
        }),
    )
}

/// Everything needed to account for a request once its response is over.
struct Done {
    obs: Arc<Observe>,
    start: Instant,
    method: Method,
    method_label: &'static str,
    path: String,
    route: &'static str,
    kind: Option<&'static str>,
    upload: bool,
    received: Arc<AtomicU64>,
    request_id: String,
}

impl Done {
    fn finish(self, status: StatusCode, sent: u64, outcome: &str) {
        let m = &self.obs.metrics;
        let received = self.received.load(Ordering::Relaxed);
        let elapsed = self.start.elapsed();
        m.requests
            .get_or_create(&RequestLabels {
                method: self.method_label,
                route: self.route,
                status: status.as_u16(),
            })
            .inc();
        let route = RouteLabels {
            method: self.method_label,
            route: self.route,
        };
        m.duration.get_or_create(&route).observe(elapsed.as_secs_f64());
        m.bytes_received.get_or_create(&route).inc_by(received);
        m.bytes_sent.get_or_create(&route).inc_by(sent);
        m.in_flight.dec();
        if self.upload {
            m.uploads_in_progress.dec();
        }
        let code = status.as_u16();
        let counted = match (self.kind, &self.method, code) {
            (Some("manifest"), &Method::PUT, 201) => Some((true, "manifest")),
            (Some("upload_start"), &Method::POST, 201) | (Some("upload"), &Method::PUT, 201) => Some((true, "blob")),
            (Some("manifest"), &Method::GET, 200) if outcome == "complete" => Some((false, "manifest")),
            (Some("blob"), &Method::GET, 200 | 206) if outcome == "complete" => Some((false, "blob")),
            _ => None,
        };
        match counted {
            Some((true, kind)) => m.pushes.get_or_create(&KindLabels { kind }).inc(),
            Some((false, kind)) => m.pulls.get_or_create(&KindLabels { kind }).inc(),
            None => 0,
        };
        if !self.obs.access_log {
            return;
        }
        let ms = (elapsed.as_secs_f64() * 1e4).round() / 10.0;
        // Probes and scrapes come every few seconds: logged at debug, not to flood the log.
        if matches!(self.route, "/healthz" | "/readyz" | "/debug/health" | "/metrics") {
            tracing::debug!(
                target: "wharf::access",
                method = %self.method,
                path = %self.path,
                status = code,
                bytes_in = received,
                bytes_out = sent,
                ms,
                outcome,
                request_id = %self.request_id,
                "request"
            );
        } else {
            tracing::info!(
                target: "wharf::access",
                method = %self.method,
                path = %self.path,
                status = code,
                bytes_in = received,
                bytes_out = sent,
                ms,
                outcome,
                request_id = %self.request_id,
                "request"
            );
        }
    }
}

/// Accounts for a request whose handler was dropped before it answered.
struct Pending(Option<Done>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            // 499: nginx's "client closed request"; there was no response.
            done.finish(StatusCode::from_u16(499).expect("valid"), 0, "cancelled");
        }
    }
}

struct RequestBody {
    inner: Body,
    received: Arc<AtomicU64>,
    abort: Abort,
    aborted: bool,
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.aborted {
            return Poll::Ready(None);
        }
        if self.abort.poll_aborted(cx) {
            self.aborted = true;
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other(
                "the server is shutting down (drain timeout reached)",
            )))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.received.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.aborted || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

struct ResponseBody {
    inner: Body,
    sent: u64,
    /// `Content-Length`: hyper stops polling a streamed body once that much was sent.
    length: Option<u64>,
    status: StatusCode,
    done: Option<Done>,
    abort: Abort,
}

impl ResponseBody {
    fn finish(&mut self, outcome: &str) {
        if let Some(done) = self.done.take() {
            done.finish(self.status, self.sent, outcome);
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.done.is_some() && self.abort.poll_aborted(cx) {
            self.finish("cut at shutdown");
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other(
                "the server is shutting down (drain timeout reached)",
            )))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.finish("complete"),
            Poll::Ready(Some(Err(_))) => self.finish("body error"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper never polls a HEAD response's body; that is not an aborted transfer.
        let complete = self.inner.is_end_stream()
            || self.length == Some(self.sent)
            || self.done.as_ref().is_some_and(|d| d.method == Method::HEAD);
        self.finish(if complete { "complete" } else { "aborted" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(path: &str, metrics_path: &str) -> (&'static str, Option<&'static str>) {
        let parsed = route::is_v2(path).then(|| route::parse(path));
        labels(path, parsed.as_ref(), metrics_path)
    }

    #[test]
    fn route_templates_hold_no_user_input() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(route_of("/v2/", "/metrics").0, "/v2/");
        assert_eq!(
            route_of(&format!("/v2/a/b/blobs/{d}"), "/metrics").0,
            "/v2/{name}/blobs/{digest}"
        );
        assert_eq!(
            route_of("/v2/a/manifests/latest", "/metrics"),
            ("/v2/{name}/manifests/{reference}", Some("manifest"))
        );
        assert_eq!(route_of("/v2/A/manifests/latest", "/metrics").0, "/v2/*");
        assert_eq!(route_of("/m", "/m").0, "/metrics");
        assert_eq!(route_of("/etc/passwd", "/metrics").0, "other");
    }
}
