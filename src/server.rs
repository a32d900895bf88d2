//! Building the application from a configuration and serving it on a listener.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

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
    let app = Arc::new(App {
        registry: registry_for(&config, driver),
        readonly,
    });
    let ops = Operations::start(&config, app.registry.driver().clone()).await?;
    let addr = listener.local_addr()?;
    tracing::info!(
        addr = %addr,
        storage = %config.storage.filesystem.rootdirectory.display(),
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
    let router = ops.wrap(http::router(app));
    let drain = ops.drain;
    let server = axum::serve(listener, router).with_graceful_shutdown(drain.stopped());
    let metrics = ops.metrics.clone();
    drain
        .run(server.into_future(), shutdown, || metrics.in_flight.get())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// The operational side of a server (issue 8): metrics, the storage health check, the drain on
/// shutdown, and the debug listener (`http.debug.addr`) when one is configured.
pub struct Operations {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub drain: crate::shutdown::Drain,
    ops: Arc<http::ops::Ops>,
    observe: Arc<http::observe::Observe>,
    /// The metrics path when metrics are served on the main listener.
    metrics_here: Option<String>,
}

impl Operations {
    pub async fn start(config: &Config, driver: Arc<dyn crate::storage::Driver>) -> anyhow::Result<Self> {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let drain = crate::shutdown::Drain::new(config.http.draintimeout());
        let health = Arc::new(http::health::Health::new(&config.health.storagedriver));
        // One probe before serving, so /readyz is right from the first request.
        if health.enabled() {
            health.probe(driver.as_ref()).await;
            tokio::spawn(async_health_loop(health.clone(), driver.clone(), config));
        }
        let ops = Arc::new(http::ops::Ops {
            metrics: metrics.clone(),
            health,
            driver,
            draining: drain.draining(),
        });
        let observe = Arc::new(http::observe::Observe::new(metrics.clone(), config, drain.abort()));
        let prometheus = &config.http.debug.prometheus;
        let metrics_path = prometheus.enabled.then(|| prometheus.path.clone());
        let mut metrics_here = metrics_path.clone();
        if !config.http.debug.addr.is_empty() {
            let addr = config.http.debug.socket_addr().map_err(anyhow::Error::msg)?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (http.debug.addr): {e}"))?;
            tracing::info!(addr = %listener.local_addr()?, metrics = ?metrics_path, "debug listener");
            let debug = http::ops::wrap(
                axum::Router::new(),
                ops.clone(),
                observe.clone(),
                metrics_path.as_deref(),
            );
            let stopped = drain.stopped();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, debug).with_graceful_shutdown(stopped).await {
                    tracing::warn!("debug listener: {e}");
                }
            });
            metrics_here = None;
        }
        Ok(Operations {
            metrics,
            drain,
            ops,
            observe,
            metrics_here,
        })
    }

    /// The application's router with the operational routes and the request-observing layer.
    pub fn wrap(&self, app: axum::Router) -> axum::Router {
        http::ops::wrap(
            app,
            self.ops.clone(),
            self.observe.clone(),
            self.metrics_here.as_deref(),
        )
    }
}

fn async_health_loop(
    health: Arc<http::health::Health>,
    driver: Arc<dyn crate::storage::Driver>,
    config: &Config,
) -> impl Future<Output = ()> + Send + 'static {
    let interval = config.health.storagedriver.interval();
    async move {
        tokio::time::sleep(interval).await;
        health.run(driver).await
    }
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
