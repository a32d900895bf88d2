//! Building the application from a configuration and serving it on a listener.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::Auth;
use crate::config::Config;
use crate::http::{self, App};
use crate::registry::{Options, Registry};
use crate::storage::fs::FsDriver;

pub fn open_store(config: &Config) -> anyhow::Result<FsDriver> {
    let fs = &config.storage.filesystem;
    FsDriver::new(&fs.rootdirectory, fs.fsync)
        .with_context(|| format!("cannot use storage directory {}", fs.rootdirectory.display()))
}

pub fn registry_for(config: &Config, driver: FsDriver) -> Registry {
    Registry::new(
        Arc::new(driver),
        Options {
            delete_enabled: config.storage.delete.enabled,
        },
    )
}

/// Serve until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let driver = open_store(&config)?;
    let readonly = config.storage.maintenance.readonly.enabled;
    // A server that writes holds the store's lock shared, so garbage collection (which takes it
    // exclusively) cannot run beside it. A read-only server takes no lock.
    let _lock = if readonly {
        None
    } else {
        let lock = driver.try_lock(false).context("cannot take the storage lock")?;
        Some(lock.ok_or_else(|| {
            anyhow::anyhow!(
                "garbage collection is running on {} (it holds wharf.lock); wait for it, or start with \
                 storage.maintenance.readonly.enabled = true",
                driver.root().display()
            )
        })?)
    };
    let auth = Auth::from_config(&config.auth).map_err(anyhow::Error::msg)?;
    let app = Arc::new(App {
        registry: registry_for(&config, driver),
        readonly,
        auth,
    });
    let addr = listener.local_addr()?;
    tracing::info!(
        addr = %addr,
        storage = %config.storage.filesystem.rootdirectory.display(),
        delete_enabled = config.storage.delete.enabled,
        readonly,
        auth = app.auth.describe(),
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
    axum::serve(
        listener,
        http::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
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
