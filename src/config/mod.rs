//! Configuration: a typed tree shaped like Distribution's `config.yml` (keys are lowercase
//! words without underscores), loaded from defaults, then a TOML file, then environment
//! overrides (`REGISTRY_*` as `registry:2` users know them, then `WHARF_*`). See
//! `config.example.toml` for every key.

mod load;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use load::{ConfigError, load};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub version: String,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// error | warn | info | debug | trace
    pub level: String,
    /// text | json
    pub formatter: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` or `:port` (all interfaces), as in `registry:2`.
    pub addr: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub filesystem: FilesystemConfig,
    /// S3-compatible object storage; chosen instead of the filesystem when `bucket` is set.
    pub s3: S3Config,
    pub delete: DeleteConfig,
    pub maintenance: MaintenanceConfig,
    pub redirect: RedirectConfig,
}

/// Distribution's `storage.s3` (its `s3-aws` driver's keys), plus a few of Wharf's.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The bucket. Setting it selects this driver (as naming `s3:` does in registry:2's config).
    pub bucket: String,
    pub region: String,
    /// Endpoint URL of an S3-compatible service (`http://127.0.0.1:9000`); empty for AWS.
    pub regionendpoint: String,
    /// Credentials; empty for the environment's (`AWS_ACCESS_KEY_ID`, instance roles, ...).
    pub accesskey: String,
    pub secretkey: String,
    /// Key prefix inside the bucket (registry:2's `rootdirectory`).
    pub rootdirectory: String,
    /// Multipart part size in bytes (minimum 5 MiB, the S3 limit).
    pub chunksize: u64,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible services need.
    pub forcepathstyle: bool,
    /// Use https for AWS endpoints (ignored when `regionendpoint` names a scheme).
    pub secure: bool,
    /// Wharf: rely on conditional writes (`If-None-Match: *`, `If-Match`) for upload sessions and
    /// the garbage-collection lock. AWS S3 and SeaweedFS support them; turn off only for services
    /// that do not (Garage), accepting that concurrent writers to one upload are not detected.
    pub conditionalwrites: bool,
    /// Wharf: how long `garbage-collect` waits after taking its lock for writes that began
    /// before it to finish, before it marks.
    pub gcgrace: String,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            region: "us-east-1".into(),
            regionendpoint: String::new(),
            accesskey: String::new(),
            secretkey: String::new(),
            rootdirectory: String::new(),
            chunksize: 10 << 20,
            forcepathstyle: false,
            secure: true,
            conditionalwrites: true,
            gcgrace: "10s".into(),
        }
    }
}

impl S3Config {
    pub fn enabled(&self) -> bool {
        !self.bucket.is_empty()
    }
    pub fn gcgrace(&self) -> std::time::Duration {
        parse_duration(&self.gcgrace).expect("validated")
    }
}

/// Distribution's `storage.redirect`: with an object store, blob GETs answer 307 to a presigned
/// URL so the bytes flow from the store to the client directly. `disable = true` proxies them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectConfig {
    pub disable: bool,
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
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            formatter: "text".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { addr: ":5000".into() }
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
        let s3 = &self.storage.s3;
        if s3.enabled() {
            if s3.chunksize < 5 << 20 {
                return Err((
                    "storage.s3.chunksize".into(),
                    format!("{} is below the S3 minimum part size of 5242880 bytes", s3.chunksize),
                ));
            }
            if s3.accesskey.is_empty() != s3.secretkey.is_empty() {
                return Err((
                    "storage.s3.accesskey".into(),
                    "set both accesskey and secretkey, or neither".into(),
                ));
            }
            if !s3.regionendpoint.is_empty() && !s3.regionendpoint.contains("://") {
                return Err((
                    "storage.s3.regionendpoint".into(),
                    format!("{:?} needs a scheme, e.g. http://127.0.0.1:9000", s3.regionendpoint),
                ));
            }
            parse_duration(&s3.gcgrace).map_err(|e| ("storage.s3.gcgrace".to_owned(), e))?;
        }
        if self.storage.filesystem.rootdirectory.as_os_str().is_empty() {
            return Err(("storage.filesystem.rootdirectory".into(), "must not be empty".into()));
        }
        Ok(())
    }
}
