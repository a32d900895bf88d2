//! Operational settings (issue 8): the access log switch, response headers, the drain timeout on
//! shutdown, the debug listener with Prometheus metrics, and the storage health check. Every key
//! has Distribution's name, so a `registry:2` `config.yml` maps onto these as is.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::{at_least_one, duration, resolve_addr};

/// `log.accesslog`: one line per request (method, path, status, bytes, duration, request id).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogConfig {
    pub disabled: bool,
}

/// `http.debug`: a second listener for `/metrics`, `/healthz`, `/readyz` and `/debug/health`,
/// as Distribution's debug server. Empty `addr`: they are served on the main listener.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    pub addr: String,
    pub prometheus: PrometheusConfig,
}

impl DebugConfig {
    /// Resolve `addr` as `http.addr` is resolved.
    pub fn socket_addr(&self) -> Result<std::net::SocketAddr, String> {
        resolve_addr(&self.addr)
    }
}

/// `http.debug.prometheus`: the metrics endpoint. Unlike Distribution, on by default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    pub enabled: bool,
    pub path: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            enabled: true,
            path: "/metrics".into(),
        }
    }
}

/// `health`: Distribution's periodic storage check, which `/readyz` reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    pub storagedriver: StorageHealthConfig,
}

/// `health.storagedriver`: every `interval`, write a small probe object, read it back; after
/// `threshold` failures in a row the registry is not ready.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageHealthConfig {
    pub enabled: bool,
    #[serde(with = "duration::positive")]
    pub interval: Duration,
    #[serde(with = "at_least_one")]
    pub threshold: u32,
}

impl Default for StorageHealthConfig {
    fn default() -> Self {
        StorageHealthConfig {
            enabled: true,
            interval: Duration::from_secs(10),
            threshold: 3,
        }
    }
}

/// (An accessor from before the typed field, kept so its call sites read the same.)
impl StorageHealthConfig {
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// `http.headers`: extra response headers, name -> values (Distribution's YAML form
/// `X-Content-Type-Options: [nosniff]`).
pub type Headers = BTreeMap<String, Vec<String>>;

impl super::Config {
    /// Checks of the operational keys that need more than their types; each error names the key.
    pub(super) fn validate_ops(&self) -> Result<(), (String, String)> {
        for (name, values) in &self.http.headers {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err((format!("http.headers.{name}"), "is not a valid header name".into()));
            }
            if let Some(v) = values.iter().find(|v| axum::http::HeaderValue::from_str(v).is_err()) {
                return Err((
                    format!("http.headers.{name}"),
                    format!("{v:?} is not a valid header value"),
                ));
            }
        }
        let debug = &self.http.debug;
        if !debug.addr.is_empty() {
            debug.socket_addr().map_err(|e| ("http.debug.addr".to_owned(), e))?;
        }
        if !debug.prometheus.path.starts_with('/') || debug.prometheus.path.starts_with("/v2") {
            return Err((
                "http.debug.prometheus.path".into(),
                format!("{:?} must start with / and not with /v2", debug.prometheus.path),
            ));
        }
        Ok(())
    }
}
