//! Operational endpoints, outside `/v2/` and outside authentication:
//! - `GET /healthz`: 200 while the process serves (liveness);
//! - `GET /readyz`: 200 when the configuration is loaded, the storage health check passes and
//!   the server is not shutting down, else 503; a JSON body says which check failed;
//! - `GET /debug/health`: Distribution's form of the same (`{}`, or check name -> error);
//! - `GET /metrics` (`http.debug.prometheus.path`): Prometheus text format.
//!
//! All of them answer from memory (the storage is probed in the background), so polling every
//! second costs nothing. With `http.debug.addr` they are also served on that address, and the
//! metrics only there. With authentication on, the metrics are served on `http.debug.addr`
//! only (registry:2's choice): without it, not at all; the main listener answers 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;

use super::health::Health;
use super::observe::{self, Observe};
use crate::metrics::Metrics;
use crate::registry::ops::read_gc_stats;
use crate::storage::Driver;

pub struct Ops {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub driver: Arc<dyn Driver>,
    /// True once shutdown began.
    pub draining: watch::Receiver<bool>,
}

/// The operational routes; `metrics_path` adds the metrics endpoint.
pub fn routes(ops: Arc<Ops>, metrics_path: Option<&str>) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/debug/health", get(debug_health));
    if let Some(p) = metrics_path {
        r = r.route(p, get(metrics));
    }
    r.with_state(ops)
}

/// `app` with the operational routes beside it, everything seen by [`observe::middleware`].
pub fn wrap(app: Router, ops: Arc<Ops>, obs: Arc<Observe>, metrics_path: Option<&str>) -> Router {
    observe::layer(app.merge(routes(ops, metrics_path)), obs)
}

async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n").into_response()
}

fn checks(ops: &Ops) -> (bool, serde_json::Value) {
    let storage = ops.health.storage();
    let draining = *ops.draining.borrow();
    let ready = storage.is_ok() && !draining;
    let storage = match (&storage, ops.health.enabled()) {
        (_, false) => "disabled (health.storagedriver.enabled = false)".to_owned(),
        (Ok(()), true) => "ok".to_owned(),
        (Err(e), true) => format!("failing: {e}"),
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {
            "config": "ok",
            "storage": storage,
            "shutdown": if draining { "in progress" } else { "no" },
        }
    });
    (ready, body)
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    let (ready, body) = checks(&ops);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

async fn debug_health(State(ops): State<Arc<Ops>>) -> Response {
    let mut failing = serde_json::Map::new();
    if let Err(e) = ops.health.storage() {
        failing.insert(format!("storagedriver_{}", ops.driver.name()), json!(e));
    }
    if *ops.draining.borrow() {
        failing.insert("shutdown".into(), json!("in progress"));
    }
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &serde_json::Value::Object(failing))
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    ops.metrics.set_gc(read_gc_stats(ops.driver.as_ref()).await);
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        ops.metrics.render(),
    )
        .into_response()
}

/// The metrics path on the main listener when the metrics are served elsewhere or not at all
/// (`http.debug.addr` set, or authentication on: never public then, as with registry:2).
pub async fn metrics_elsewhere() -> Response {
    crate::error::Error::NotFound(
        "metrics are served on http.debug.addr only (when it is set, or when authentication is on)".into(),
    )
    .into_response()
}
