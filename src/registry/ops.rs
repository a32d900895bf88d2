//! Wharf's own small objects at the storage root, outside Distribution's `docker/` tree (so a
//! `registry:2` reading the same store never sees them): the health probe and the garbage
//! collector's statistics.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::Registry;
use super::gc::{GcOptions, GcReport};
use crate::metrics::GcStats;
use crate::storage::{Driver, StoragePath};

fn probe_path() -> StoragePath {
    StoragePath::from_validated("wharf-health".into())
}

fn gc_stats_path() -> StoragePath {
    StoragePath::from_validated("wharf-gc.json".into())
}

/// Write a small object, then read it back: the storage is readable and writable. A read-only
/// server (whose store may be a read-only mount) only checks that the store can be read.
pub async fn probe_storage(driver: &dyn Driver, writable: bool) -> Result<(), String> {
    if !writable {
        return match driver.stat(&StoragePath::from_validated("docker".into())).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        };
    }
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let body = format!("{now} pid {}\n", std::process::id());
    driver
        .put_content(&probe_path(), Bytes::from(body))
        .await
        .map_err(|e| format!("write: {e}"))?;
    driver
        .get_content(&probe_path())
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(())
}

/// The garbage collector's statistics, if it ever ran on this store.
pub async fn read_gc_stats(driver: &dyn Driver) -> Option<GcStats> {
    let bytes = driver.get_content(&gc_stats_path()).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Registry {
    /// Record a garbage collection run for the servers' metrics. A dry run records nothing
    /// (it changes nothing in the store); a failure to record only warns: the run succeeded.
    pub(crate) async fn record_gc_run(&self, opts: &GcOptions, report: &GcReport, took: Duration) {
        if opts.dry_run {
            return;
        }
        let mut stats = read_gc_stats(self.driver.as_ref()).await.unwrap_or_default();
        stats.runs += 1;
        let started = SystemTime::now() - took;
        stats.last_started = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        stats.last_duration_seconds = took.as_secs_f64();
        stats.last_blobs = report.blobs.len() as u64;
        stats.last_bytes = report.bytes();
        stats.last_manifests = report.manifests.len() as u64;
        let json = serde_json::to_vec_pretty(&stats).expect("stats serialize");
        if let Err(e) = self.driver.put_content(&gc_stats_path(), Bytes::from(json)).await {
            tracing::warn!("cannot record garbage collection statistics: {e}");
        }
    }
}
