//! `storage`: where the data lives (the filesystem or an S3 bucket), deletes, maintenance and
//! redirects.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::duration;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub filesystem: FilesystemConfig,
    /// S3-compatible object storage; chosen instead of the filesystem when `bucket` is set.
    pub s3: S3Config,
    /// Distribution's `storage.inmemory`: an object store in the server's memory, lost when it
    /// exits. For tests; present (even empty) selects it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inmemory: Option<InMemoryConfig>,
    pub delete: DeleteConfig,
    pub maintenance: MaintenanceConfig,
    pub redirect: RedirectConfig,
}

/// Distribution's `storage.inmemory`, which has no settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InMemoryConfig {}

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
    #[serde(with = "duration")]
    pub gcgrace: Duration,
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
            gcgrace: Duration::from_secs(10),
        }
    }
}

impl S3Config {
    pub fn enabled(&self) -> bool {
        !self.bucket.is_empty()
    }
    /// (An accessor from before the typed field, kept so its call sites read the same.)
    pub fn gcgrace(&self) -> Duration {
        self.gcgrace
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
    #[serde(with = "duration")]
    pub age: Duration,
    /// How often the server looks ("24h").
    #[serde(with = "duration::positive")]
    pub interval: Duration,
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
            age: Duration::from_secs(168 * 3600),
            interval: Duration::from_secs(24 * 3600),
            dryrun: false,
        }
    }
}

/// (Accessors from before the typed fields, kept so their call sites read the same.)
impl UploadPurgingConfig {
    pub fn age(&self) -> Duration {
        self.age
    }
    pub fn interval(&self) -> Duration {
        self.interval
    }
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

impl StorageConfig {
    /// The S3 settings that go together, and a storage root.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let s3 = &self.s3;
        if s3.enabled() && self.inmemory.is_some() {
            return Err((
                "storage.inmemory".into(),
                "cannot be used with storage.s3: choose one storage driver".into(),
            ));
        }
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
        }
        if self.filesystem.rootdirectory.as_os_str().is_empty() {
            return Err(("storage.filesystem.rootdirectory".into(), "must not be empty".into()));
        }
        Ok(())
    }
}
