//! Building the application from a configuration and serving it on a listener.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{self, App};
use crate::registry::{Options, Registry};
use crate::storage::fs::FsDriver;

pub fn build_app(config: &Config) -> anyhow::Result<Arc<App>> {
    let fs = &config.storage.filesystem;
    let driver = FsDriver::new(&fs.rootdirectory, fs.fsync)
        .with_context(|| format!("cannot use storage directory {}", fs.rootdirectory.display()))?;
    let registry = Registry::new(
        Arc::new(driver),
        Options {
            delete_enabled: config.storage.delete.enabled,
        },
    );
    Ok(Arc::new(App { registry }))
}

/// Serve until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = build_app(&config)?;
    let addr = listener.local_addr()?;
    tracing::info!(
        addr = %addr,
        storage = %config.storage.filesystem.rootdirectory.display(),
        delete_enabled = config.storage.delete.enabled,
        "listening"
    );
    axum::serve(listener, http::router(app))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("stopped");
    Ok(())
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
