//! Readiness: the storage check Distribution runs (`health.storagedriver`: every `interval`
//! probe the storage; after `threshold` failures in a row report it), kept in memory so that
//! `/readyz` costs nothing and can be polled every second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::StorageHealthConfig;
use crate::registry::ops::probe_storage;
use crate::storage::Driver;

#[derive(Clone, Debug)]
pub struct StorageState {
    /// Consecutive failed probes.
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_probe: Option<SystemTime>,
    /// Whether a probe ever succeeded since start.
    pub ever_ok: bool,
}

pub struct Health {
    writable: bool,
    enabled: bool,
    threshold: u32,
    interval: Duration,
    state: Mutex<StorageState>,
}

impl Health {
    /// `writable`: the server writes (so the probe writes too); a read-only server's probe reads.
    pub fn new(config: &StorageHealthConfig, writable: bool) -> Self {
        Health {
            writable,
            enabled: config.enabled,
            threshold: config.threshold,
            interval: config.interval(),
            state: Mutex::new(StorageState {
                failures: 0,
                last_error: None,
                last_probe: None,
                ever_ok: false,
            }),
        }
    }

    /// Probe once now (before serving), then every `interval` for as long as the task runs.
    pub async fn run(self: Arc<Self>, driver: Arc<dyn Driver>) {
        if !self.enabled {
            return;
        }
        loop {
            self.probe(driver.as_ref()).await;
            tokio::time::sleep(self.interval).await;
        }
    }

    pub async fn probe(&self, driver: &dyn Driver) {
        let result = probe_storage(driver, self.writable).await;
        let mut st = self.state.lock().expect("health state");
        st.last_probe = Some(SystemTime::now());
        match result {
            Ok(()) => {
                if st.failures >= self.threshold {
                    tracing::info!("storage health check passes again");
                }
                st.failures = 0;
                st.last_error = None;
                st.ever_ok = true;
            }
            Err(e) => {
                st.failures += 1;
                if st.failures == self.threshold {
                    tracing::error!(failures = st.failures, "storage health check failing: {e}");
                } else {
                    tracing::warn!(failures = st.failures, "storage health check failed: {e}");
                }
                st.last_error = Some(e);
            }
        }
    }

    /// `Ok` when the storage counts as healthy, else why not. Disabled checks always pass.
    pub fn storage(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let st = self.state.lock().expect("health state");
        if !st.ever_ok && st.last_probe.is_none() {
            return Err("not checked yet".into());
        }
        // Until the first success, one failure is enough: nothing ever worked.
        if st.failures >= self.threshold || (!st.ever_ok && st.failures > 0) {
            return Err(st.last_error.clone().unwrap_or_default());
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }
}
