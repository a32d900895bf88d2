//! Building the application from a configuration and serving it on a listener.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{self, App};
use crate::registry::{Options, Registry};
use crate::storage::Driver;
use crate::storage::fs::FsDriver;
use crate::storage::s3::S3Driver;

/// The configured storage: the filesystem (the default), or S3 when `storage.s3.bucket` is set.
pub enum Store {
    Fs(FsDriver),
    S3(S3Driver),
}

impl Store {
    pub fn driver(&self) -> Arc<dyn Driver> {
        match self {
            Store::Fs(d) => Arc::new(d.clone()),
            Store::S3(d) => Arc::new(d.clone()),
        }
    }

    /// Where the data is, for logs and messages.
    pub fn describe(&self) -> String {
        match self {
            Store::Fs(d) => d.root().display().to_string(),
            Store::S3(d) => d.describe(),
        }
    }
}

pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    if config.storage.s3.enabled() {
        let s3 = S3Driver::new(&config.storage.s3).context("cannot configure storage.s3")?;
        return Ok(Store::S3(s3));
    }
    let fs = &config.storage.filesystem;
    let d = FsDriver::new(&fs.rootdirectory, fs.fsync)
        .with_context(|| format!("cannot use storage directory {}", fs.rootdirectory.display()))?;
    Ok(Store::Fs(d))
}

pub fn registry_for(config: &Config, store: &Store) -> Registry {
    Registry::new(
        store.driver(),
        Options {
            delete_enabled: config.storage.delete.enabled,
            // Several replicas share an object store and hold no local lock, so writes check
            // for a running garbage collection's lock object instead (registry::gc).
            gc_lock_object: matches!(store, Store::S3(_)),
            redirect: matches!(store, Store::S3(_)) && !config.storage.redirect.disable,
        },
    )
}

/// Serve until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    let readonly = config.storage.maintenance.readonly.enabled;
    // On the filesystem a server that writes holds the store's lock shared, so garbage collection
    // (which takes it exclusively) cannot run beside it. A read-only server takes no lock, and
    // neither do replicas on S3, which check GC's lock object before each write instead.
    let _lock = if readonly {
        None
    } else if let Store::Fs(driver) = &store {
        let lock = driver.try_lock(false).context("cannot take the storage lock")?;
        Some(lock.ok_or_else(|| {
            anyhow::anyhow!(
                "garbage collection is running on {} (it holds wharf.lock); wait for it, or start with \
                 storage.maintenance.readonly.enabled = true",
                driver.root().display()
            )
        })?)
    } else {
        None
    };
    let app = Arc::new(App {
        registry: registry_for(&config, &store),
        readonly,
    });
    let addr = listener.local_addr()?;
    tracing::info!(
        addr = %addr,
        storage = %store.describe(),
        delete_enabled = config.storage.delete.enabled,
        readonly,
        "listening"
    );
    let purging = &config.storage.maintenance.uploadpurging;
    if purging.enabled && !readonly {
        tokio::spawn(purge_uploads(
            app.clone(),
            purging.age(),
            purging.interval(),
            purging.dryrun,
        ));
    }
    axum::serve(listener, http::router(app))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Distribution's upload purger: every `interval`, remove sessions older than `age`.
async fn purge_uploads(app: Arc<App>, age: std::time::Duration, interval: std::time::Duration, dry_run: bool) {
    loop {
        tokio::time::sleep(interval).await;
        match app.registry.purge_uploads(age, dry_run).await {
            Ok(purged) => {
                for (repo, id) in &purged {
                    tracing::info!(repo = %repo, upload = %id, dry_run, "purged abandoned upload");
                }
            }
            Err(e) => tracing::warn!("upload purge failed: {e}"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
