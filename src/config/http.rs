//! `log` and `http`: what is logged, where the server listens, TLS, and the HTTP settings.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::{LogFormat, LogLevel, TlsVersion, duration, resolve_addr};
use super::{AccessLogConfig, DebugConfig, Headers};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub accesslog: AccessLogConfig,
    /// error | warn | info | debug | trace
    pub level: LogLevel,
    /// text | json
    pub formatter: LogFormat,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// After SIGTERM/SIGINT, how long in-flight requests may finish before they are cut ("30s").
    #[serde(with = "duration")]
    pub draintimeout: Duration,
    /// A connection whose client reads nothing of an answer for this long is closed ("60s").
    #[serde(with = "duration::positive")]
    pub sendtimeout: Duration,
    /// Extra response headers (name -> values).
    pub headers: Headers,
    /// The debug listener and the metrics endpoint.
    pub debug: DebugConfig,
    /// `host:port` or `:port` (all interfaces), as in `registry:2`.
    pub addr: String,
    /// registry:2's externally-reachable URL (`https://registry.example.com`): the built-in
    /// token server's realm is this plus `/token`. Location headers stay relative.
    pub host: String,
    /// `http.tls`: serve HTTPS (absent: plain HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// Distribution's `http.tls`. Paths are empty when unset (so REGISTRY_HTTP_TLS_* can set them).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub certificate: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// PEM CA bundles: when set, clients must present a certificate signed by one of them (mTLS).
    pub clientcas: Vec<String>,
    /// "tls1.2" (default) or "tls1.3". Older versions are never offered.
    pub minimumtls: TlsVersion,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certificate: String::new(),
            key: String::new(),
            clientcas: Vec::new(),
            minimumtls: TlsVersion::Tls12,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            accesslog: AccessLogConfig::default(),
            level: LogLevel::Info,
            formatter: LogFormat::Text,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            draintimeout: Duration::from_secs(30),
            // As long as the read side's silence between two pieces of a request body
            // (`hooks::BODY_IDLE_TIMEOUT`, or `WHARF_TIMEOUTS`).
            sendtimeout: Duration::from_secs(60),
            headers: Headers::new(),
            debug: DebugConfig::default(),
            addr: ":5000".into(),
            host: String::new(),
            tls: None,
        }
    }
}

impl HttpConfig {
    /// `http.host` without a trailing slash, checked: an http or https URL naming a host, with
    /// nothing after an optional path prefix (None when unset).
    pub fn base_url(&self) -> Result<Option<String>, String> {
        let h = self.host.trim();
        if h.is_empty() {
            return Ok(None);
        }
        let rest = h
            .strip_prefix("https://")
            .or_else(|| h.strip_prefix("http://"))
            .ok_or_else(|| format!("{h:?} must be an http:// or https:// URL, e.g. https://registry.example.com"))?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty()
            || h.chars()
                .any(|c| c.is_whitespace() || c.is_control() || "\"\\?#@".contains(c))
        {
            return Err(format!(
                "{h:?} is not a URL of this registry, e.g. https://registry.example.com"
            ));
        }
        Ok(Some(h.trim_end_matches('/').to_owned()))
    }

    /// Resolve `addr` (`:5000`, `0.0.0.0:5000`, `localhost:5000`, `[::1]:5000`).
    pub fn socket_addr(&self) -> Result<SocketAddr, String> {
        resolve_addr(&self.addr)
    }

    /// How long in-flight requests may run after SIGTERM/SIGINT before they are cut. (These
    /// two accessors predate the typed fields; they keep their call sites unchanged.)
    pub fn draintimeout(&self) -> Duration {
        self.draintimeout
    }

    /// How long a write to a client may make no progress before its connection is closed.
    pub fn sendtimeout(&self) -> Duration {
        self.sendtimeout
    }
}

impl HttpConfig {
    /// `http.tls`: a certificate goes with a key.
    pub(super) fn validate_tls(&self) -> Result<(), (String, String)> {
        let Some(tls) = &self.tls else { return Ok(()) };
        match (tls.certificate.is_empty(), tls.key.is_empty()) {
            (false, false) => {}
            (true, true) if tls.clientcas.is_empty() => {}
            (true, _) => return Err(("http.tls.certificate".into(), "must be set with http.tls.key".into())),
            (false, true) => return Err(("http.tls.key".into(), "must be set with http.tls.certificate".into())),
        }
        Ok(())
    }
}
