//! Configuration: a typed tree shaped like Distribution's `config.yml` (keys are lowercase
//! words without underscores), loaded from defaults, then a TOML file, then environment
//! overrides (`REGISTRY_*` as `registry:2` users know them, then `WHARF_*`). See
//! `config.example.toml` for every key.

mod distribution;
mod load;
mod ops;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use load::{ConfigError, ConfigNote, load, load_with_notes};
pub use ops::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub version: String,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub health: HealthConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub accesslog: AccessLogConfig,
    /// error | warn | info | debug | trace
    pub level: String,
    /// text | json
    pub formatter: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// After SIGTERM/SIGINT, how long in-flight requests may finish before they are cut ("30s").
    pub draintimeout: String,
    /// Extra response headers (name -> values).
    pub headers: Headers,
    /// The debug listener and the metrics endpoint.
    pub debug: DebugConfig,
    /// `host:port` or `:port` (all interfaces), as in `registry:2`.
    pub addr: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub filesystem: FilesystemConfig,
    pub delete: DeleteConfig,
    pub maintenance: MaintenanceConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    pub uploadpurging: UploadPurgingConfig,
    pub readonly: ReadonlyConfig,
}

/// Distribution's `storage.maintenance.uploadpurging`: remove abandoned upload sessions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadPurgingConfig {
    pub enabled: bool,
    /// Sessions started longer ago than this are removed ("168h").
    pub age: String,
    /// How often the server looks ("24h").
    pub interval: String,
    /// Only log what would be removed.
    pub dryrun: bool,
}

/// Distribution's `storage.maintenance.readonly`: pulls work, writes answer 405 UNSUPPORTED.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadonlyConfig {
    pub enabled: bool,
}

impl Default for UploadPurgingConfig {
    fn default() -> Self {
        UploadPurgingConfig {
            enabled: true,
            age: "168h".into(),
            interval: "24h".into(),
            dryrun: false,
        }
    }
}

impl UploadPurgingConfig {
    pub fn age(&self) -> std::time::Duration {
        parse_duration(&self.age).expect("validated")
    }
    pub fn interval(&self) -> std::time::Duration {
        parse_duration(&self.interval).expect("validated")
    }
}

/// Durations as Distribution writes them: "168h", "10m", "1h30m", "45s".
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?}: {e} (examples: 168h, 10m, 30s)"))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    pub rootdirectory: PathBuf,
    /// fsync data and directories before acknowledging a write. Turn off only for tmpfs or benchmarks.
    pub fsync: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeleteConfig {
    pub enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: "0.1".into(),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            health: HealthConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            accesslog: AccessLogConfig::default(),
            level: "info".into(),
            formatter: "text".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            draintimeout: default_draintimeout(),
            headers: Headers::new(),
            debug: DebugConfig::default(),
            addr: ":5000".into(),
        }
    }
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        FilesystemConfig {
            rootdirectory: default_root(),
            fsync: true,
        }
    }
}

/// Where data goes without configuration: a directory any user can write,
/// `$XDG_DATA_HOME/wharf`, else `$HOME/.local/share/wharf`, else `./wharf-data`.
pub fn default_root() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("wharf");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/wharf");
    }
    PathBuf::from("wharf-data")
}

impl HttpConfig {
    /// Resolve `addr` (`:5000`, `0.0.0.0:5000`, `localhost:5000`, `[::1]:5000`).
    pub fn socket_addr(&self) -> Result<SocketAddr, String> {
        let a = self.addr.trim();
        let full = if a.starts_with(':') {
            format!("0.0.0.0{a}")
        } else {
            a.to_owned()
        };
        use std::net::ToSocketAddrs;
        full.to_socket_addrs()
            .map_err(|e| format!("invalid address {a:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("address {a:?} resolves to nothing"))
    }
}

impl Config {
    /// Checks that need more than types. Each error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.http.socket_addr().map_err(|e| ("http.addr".into(), e))?;
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err((
                "log.level".into(),
                format!("{:?} is not one of error, warn, info, debug, trace", self.log.level),
            ));
        }
        if !["text", "json"].contains(&self.log.formatter.as_str()) {
            return Err((
                "log.formatter".into(),
                format!("{:?} is not one of text, json", self.log.formatter),
            ));
        }
        self.validate_ops()?;
        let purging = &self.storage.maintenance.uploadpurging;
        parse_duration(&purging.age).map_err(|e| ("storage.maintenance.uploadpurging.age".to_owned(), e))?;
        match parse_duration(&purging.interval) {
            Ok(d) if d.is_zero() => {
                return Err((
                    "storage.maintenance.uploadpurging.interval".into(),
                    "must be greater than zero".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(("storage.maintenance.uploadpurging.interval".into(), e)),
        }
        if self.storage.filesystem.rootdirectory.as_os_str().is_empty() {
            return Err(("storage.filesystem.rootdirectory".into(), "must not be empty".into()));
        }
        Ok(())
    }
}
