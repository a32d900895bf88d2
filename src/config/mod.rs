//! Configuration: a typed tree shaped like Distribution's `config.yml` (keys are lowercase
//! words without underscores), loaded from defaults, then a TOML file, then environment
//! overrides (`REGISTRY_*` as `registry:2` users know them, then `WHARF_*`). See
//! `config.example.toml` for every key.
//!
//! Values are parsed once, when the configuration is loaded: durations, sizes and the keys that
//! take one of a few words have their own types (`types`), each refusing a bad value with the
//! message the loader prints after the key; `Config::validate` keeps the rules that involve
//! more than one key (or the network, as resolving `http.addr`).
//!
//! Modules: `load` (defaults -> file -> environment), `distribution` (registry:2's YAML and
//! variables), `note` (what loading reports), one module per section (`http`, `storage`,
//! `auth`, `proxy`, `ops`), and `types`.

mod auth;
mod distribution;
mod http;
mod load;
mod note;
mod ops;
mod proxy;
mod storage;
mod types;

use serde::{Deserialize, Serialize};

pub use auth::*;
pub use http::*;
pub use load::{ConfigError, load, load_with_notes};
pub use note::ConfigNote;
pub use ops::*;
pub use proxy::*;
pub use storage::*;
pub use types::{
    EvictAfter, LogFormat, LogLevel, TlsVersion, format_duration, format_size, parse_duration, parse_size,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub version: String,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub health: HealthConfig,
    /// Pull-through cache: `remoteurl` (every repository mirrors one upstream, as registry:2) or
    /// `[[proxy.upstream]]` entries (repositories under a prefix mirror an upstream each).
    pub proxy: ProxyConfig,
    /// Caps on open upload sessions (Wharf's own; registry:2 has none).
    pub uploads: UploadsConfig,
}

/// `uploads`: how many upload sessions may be open at once, per repository and per client (the
/// authenticated user, else the address); beyond, a new session answers 429 TOOMANYREQUESTS.
/// 0: no cap.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    pub maxperrepository: usize,
    pub maxperclient: usize,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            maxperrepository: 1000,
            maxperclient: 100,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: "0.1".into(),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            health: HealthConfig::default(),
            proxy: ProxyConfig::default(),
            uploads: UploadsConfig::default(),
        }
    }
}

impl Config {
    /// Checks that need more than types: rules over several keys. Each error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.http.socket_addr().map_err(|e| ("http.addr".into(), e))?;
        self.http.base_url().map_err(|e| ("http.host".into(), e))?;
        self.validate_ops()?;
        self.storage.validate()?;
        self.http.validate_tls()?;
        self.proxy.validate()?;
        self.auth.validate()
    }
}
