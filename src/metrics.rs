//! Prometheus metrics (`prometheus-client`, the Prometheus project's Rust client), rendered in
//! the Prometheus text format at `/metrics`.
//!
//! Labels never hold user input: `route` is a template (`/v2/{name}/blobs/{digest}`), `method`
//! one of the HTTP methods the API uses (else `OTHER`), `status` the numeric status code.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `blob` or `manifest`.
    pub kind: &'static str,
}

/// Request latency buckets, in seconds: from a cached manifest HEAD to a multi-GiB layer.
const LATENCY_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Requests answered with an error caused by a failing storage operation, counted where
/// requests are observed (`http::observe`, from the response's `error::StorageFailure`
/// marker), so that no driver needs wrapping.
static STORAGE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Count a request that failed on storage (not an absent object, which is an answer, not a
/// failure: see [`is_storage_failure`]).
pub fn storage_error() {
    STORAGE_ERRORS.fetch_add(1, Ordering::Relaxed);
}

/// Whether a driver error is a storage failure: expected answers (missing objects, bad ranges,
/// lost conditional-write races, features a driver lacks) are not.
pub fn is_storage_failure(e: &crate::storage::DriverError) -> bool {
    use crate::storage::DriverError as E;
    !e.is_not_found() && !matches!(e, E::InvalidRange | E::Conflict(_) | E::Unsupported { .. })
}

/// Password hashes evaluated (bcrypt, successful or not), and login attempts refused by the
/// limiter without one (`auth::limiter`): process-wide, like the storage errors.
static PASSWORD_CHECKS: AtomicU64 = AtomicU64::new(0);
static LOGINS_THROTTLED: AtomicU64 = AtomicU64::new(0);

/// Count one password hash evaluation.
pub fn password_checked() {
    PASSWORD_CHECKS.fetch_add(1, Ordering::Relaxed);
}

/// Count one login attempt refused with 429.
pub fn login_throttled() {
    LOGINS_THROTTLED.fetch_add(1, Ordering::Relaxed);
}

/// What `wharf garbage-collect` records in the store after each run, so the server (another
/// process) can export it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GcStats {
    /// Runs that removed (dry runs change nothing, this file included).
    pub runs: u64,
    /// Unix time the last run started, and how long it took.
    pub last_started: f64,
    pub last_duration_seconds: f64,
    /// What the last run removed.
    pub last_blobs: u64,
    pub last_bytes: u64,
    pub last_manifests: u64,
}

pub struct Metrics {
    registry: Registry,
    /// Requests by method, route template and status.
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub bytes_received: Family<RouteLabels, Counter>,
    pub bytes_sent: Family<RouteLabels, Counter>,
    pub in_flight: Gauge,
    /// Upload requests (POST, PATCH, PUT on `/blobs/uploads/`) being received right now.
    pub uploads_in_progress: Gauge,
    /// Blobs and manifests stored (pushed, or mounted from another repository).
    pub pushes: Family<KindLabels, Counter>,
    /// Blobs and manifests served (GET answered 200 or 206).
    pub pulls: Family<KindLabels, Counter>,
    gc: std::sync::Arc<GcCollector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wharf");
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            bytes_received: Family::default(),
            bytes_sent: Family::default(),
            in_flight: Gauge::default(),
            uploads_in_progress: Gauge::default(),
            pushes: Family::default(),
            pulls: Family::default(),
            gc: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from the request to the end of the response body, by method and route template",
            m.duration.clone(),
        );
        registry.register(
            "http_request_body_bytes",
            "Request body bytes received, by method and route template",
            m.bytes_received.clone(),
        );
        registry.register(
            "http_response_body_bytes",
            "Response body bytes sent, by method and route template",
            m.bytes_sent.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being handled or whose response is being sent",
            m.in_flight.clone(),
        );
        registry.register(
            "uploads_in_progress",
            "Blob upload requests (POST, PATCH, PUT) being received",
            m.uploads_in_progress.clone(),
        );
        registry.register(
            "pushes",
            "Blobs and manifests stored: pushed, or mounted from another repository",
            m.pushes.clone(),
        );
        registry.register(
            "pulls",
            "Blobs and manifests served (GET answered 200 or 206)",
            m.pulls.clone(),
        );
        registry.register_collector(Box::new(m.gc.clone()));
        Metrics { registry, ..m }
    }

    /// Record the garbage collector's latest statistics (read from the store before a scrape).
    pub fn set_gc(&self, stats: Option<GcStats>) {
        *self.gc.stats.lock().expect("gc stats") = stats;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The metrics whose values live elsewhere: the process-wide storage error count and the
/// garbage collector's statistics.
#[derive(Debug, Default)]
struct GcCollector {
    stats: Mutex<Option<GcStats>>,
}

impl Collector for GcCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let errors = ConstCounter::new(STORAGE_ERRORS.load(Ordering::Relaxed));
        errors.encode(encoder.encode_descriptor(
            "storage_errors",
            "Storage operations that failed (absent objects excluded)",
            None,
            errors.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "auth_password_checks",
                "Password hashes evaluated (bcrypt), right or wrong",
                &PASSWORD_CHECKS,
            ),
            (
                "auth_logins_throttled",
                "Login attempts refused (429) by the failed-login limiter without a password check",
                &LOGINS_THROTTLED,
            ),
        ] {
            let c = ConstCounter::new(v.load(Ordering::Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let s = self.stats.lock().expect("gc stats").clone().unwrap_or_default();
        let runs = ConstCounter::new(s.runs);
        runs.encode(encoder.encode_descriptor(
            "gc_runs",
            "Garbage collection runs on this store (wharf garbage-collect, dry runs excluded)",
            None,
            runs.metric_type(),
        )?)?;
        let gauges = [
            (
                "gc_last_run_timestamp_seconds",
                "Unix time the last garbage collection started",
                s.last_started,
            ),
            (
                "gc_last_run_duration_seconds",
                "How long the last garbage collection took",
                s.last_duration_seconds,
            ),
            (
                "gc_last_run_blobs",
                "Blobs the last garbage collection removed",
                s.last_blobs as f64,
            ),
            (
                "gc_last_run_bytes",
                "Blob bytes the last garbage collection removed",
                s.last_bytes as f64,
            ),
            (
                "gc_last_run_manifests",
                "Manifests the last garbage collection removed",
                s.last_manifests as f64,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                method: "GET",
                route: "/v2/{name}/manifests/{reference}",
                status: 200,
            })
            .inc();
        m.duration
            .get_or_create(&RouteLabels {
                method: "GET",
                route: "/v2/",
            })
            .observe(0.003);
        m.pushes.get_or_create(&KindLabels { kind: "manifest" }).inc();
        m.set_gc(Some(GcStats {
            runs: 2,
            ..Default::default()
        }));
        let text = m.render();
        assert!(
            text.contains(
                "wharf_http_requests_total{method=\"GET\",route=\"/v2/{name}/manifests/{reference}\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("wharf_http_request_duration_seconds_bucket{le=\"0.005\",method=\"GET\",route=\"/v2/\"} 1")
                || text.contains(
                    "wharf_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v2/\",le=\"0.005\"} 1"
                ),
            "{text}"
        );
        assert!(text.contains("wharf_pushes_total{kind=\"manifest\"} 1"), "{text}");
        assert!(text.contains("wharf_gc_runs_total 2"), "{text}");
        assert!(text.contains("# TYPE wharf_storage_errors_total counter"), "{text}");
        assert!(!text.contains("# EOF"), "Prometheus text, not OpenMetrics");
    }
}
