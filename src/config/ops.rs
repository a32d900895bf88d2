//! Operational settings (issue 8): the access log switch, response headers, the drain timeout on
//! shutdown, the debug listener with Prometheus metrics, and the storage health check. Every key
//! has Distribution's name, so a `registry:2` `config.yml` maps onto these as is.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::parse_duration;

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
        super::HttpConfig {
            addr: self.addr.clone(),
            ..Default::default()
        }
        .socket_addr()
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
    pub interval: String,
    pub threshold: u32,
}

impl Default for StorageHealthConfig {
    fn default() -> Self {
        StorageHealthConfig {
            enabled: true,
            interval: "10s".into(),
            threshold: 3,
        }
    }
}

impl StorageHealthConfig {
    pub fn interval(&self) -> Duration {
        parse_duration(&self.interval).expect("validated")
    }
}

/// Default for `http.draintimeout`.
pub fn default_draintimeout() -> String {
    "30s".into()
}

/// Default for `http.sendtimeout`: as long as the read side's silence between two pieces of a
/// request body (`hooks::BODY_IDLE_TIMEOUT`).
pub fn default_sendtimeout() -> String {
    "60s".into()
}

/// `http.headers`: extra response headers, name -> values (Distribution's YAML form
/// `X-Content-Type-Options: [nosniff]`).
pub type Headers = BTreeMap<String, Vec<String>>;

impl super::HttpConfig {
    /// How long in-flight requests may run after SIGTERM/SIGINT before they are cut.
    pub fn draintimeout(&self) -> Duration {
        parse_duration(&self.draintimeout).expect("validated")
    }

    /// How long a write to a client may make no progress before its connection is closed.
    pub fn sendtimeout(&self) -> Duration {
        parse_duration(&self.sendtimeout).expect("validated")
    }
}

impl super::Config {
    /// Checks of the operational keys; each error names the key.
    pub(super) fn validate_ops(&self) -> Result<(), (String, String)> {
        parse_duration(&self.http.draintimeout).map_err(|e| ("http.draintimeout".to_owned(), e))?;
        match parse_duration(&self.http.sendtimeout) {
            Ok(d) if d.is_zero() => return Err(("http.sendtimeout".into(), "must be greater than zero".into())),
            Ok(_) => {}
            Err(e) => return Err(("http.sendtimeout".into(), e)),
        }
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
        let health = &self.health.storagedriver;
        match parse_duration(&health.interval) {
            Ok(d) if d.is_zero() => {
                return Err((
                    "health.storagedriver.interval".into(),
                    "must be greater than zero".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(("health.storagedriver.interval".into(), e)),
        }
        if health.threshold == 0 {
            return Err(("health.storagedriver.threshold".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}
