//! Building the application from a configuration and serving it on a listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Layer;

use crate::auth::Auth;
use crate::config::Config;
use crate::hooks::{Hooks, Timeouts};
use crate::http::{self, App};
use crate::registry::{Options, Registry};
use crate::storage::Driver;
use crate::storage::fence::{Fence, FenceError, FenceRole};
use crate::storage::fs::FsDriver;
use crate::storage::s3::S3Driver;
use crate::tls::Tls;

/// The configured storage driver: the filesystem (the default), S3 when `storage.s3.bucket`
/// is set, or `storage.inmemory` (the object-store driver on object_store's InMemory). What differs between them is the driver's business (`Driver::capabilities`, its fence).
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Driver>> {
    if config.storage.inmemory.is_some() {
        // An object store in memory: the object-store code paths, as on S3 (tests use it).
        return Ok(Arc::new(S3Driver::in_memory()));
    }
    if config.storage.s3.enabled() {
        let s3 = S3Driver::new(&config.storage.s3).context("cannot configure storage.s3")?;
        return Ok(Arc::new(s3));
    }
    let fs = &config.storage.filesystem;
    let d = FsDriver::new(&fs.rootdirectory, fs.fsync)
        .with_context(|| format!("cannot use storage directory {}", fs.rootdirectory.display()))?;
    Ok(Arc::new(d))
}

pub fn registry_for(config: &Config, driver: Arc<dyn Driver>, hooks: &Hooks) -> Registry {
    let redirect = driver.capabilities().redirect && !config.storage.redirect.disable;
    Registry::new(
        driver,
        Options {
            delete_enabled: config.storage.delete.enabled,
            redirect,
            hooks: hooks.clone(),
        },
    )
    .with_upload_limits(config.uploads.maxperrepository, config.uploads.maxperclient)
}

/// A server that writes holds the storage's fence against garbage collection for as long as it
/// runs (`storage::fence`); a read-only one takes none. A store on a read-only filesystem can
/// still serve every pull, so it is then served read-only.
async fn writer_fence(registry: &Registry, config: &mut Config) -> anyhow::Result<Option<Fence>> {
    if config.storage.maintenance.readonly.enabled {
        return Ok(None);
    }
    match registry.fence(FenceRole::Writer).await {
        Ok(fence) => Ok(Some(fence)),
        Err(FenceError::Driver(e)) if e.is_read_only() => {
            tracing::warn!(
                storage = %registry.driver().describe(),
                "the storage is on a read-only filesystem: serving pulls only, as with storage.maintenance.readonly.enabled = true"
            );
            config.storage.maintenance.readonly.enabled = true;
            Ok(None)
        }
        Err(FenceError::Held(message)) => Err(anyhow::anyhow!(message)),
        Err(FenceError::Driver(e)) => Err(anyhow::Error::new(e).context("cannot take the storage lock")),
    }
}

/// Serve until `shutdown` resolves, then finish in-flight requests. `hooks`: the test hooks and
/// timeouts (`Hooks::default()` outside tests).
pub async fn serve(
    listener: TcpListener,
    mut config: Config,
    hooks: Hooks,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let registry = Arc::new(registry_for(&config, open_store(&config)?, &hooks));
    let _fence = writer_fence(&registry, &mut config).await?;
    let readonly = config.storage.maintenance.readonly.enabled;
    let auth = Auth::from_config(&config.auth)
        .map_err(anyhow::Error::msg)?
        .with_host(config.http.base_url().ok().flatten().as_deref());
    let tls = match &config.http.tls {
        Some(t) if !t.certificate.is_empty() => Some(Arc::new(Tls::load(t).map_err(anyhow::Error::msg)?)),
        _ => None,
    };
    let proxy = crate::proxy::Proxy::from_config(&config.proxy, readonly, registry.clone())
        .map_err(anyhow::Error::msg)?
        .map(Arc::new);
    let proxied = proxy.as_ref().map_or_else(|| "off".to_owned(), |p| p.describe());
    let content: Arc<dyn crate::registry::content::Content> = match proxy {
        Some(p) => p,
        None => registry.clone(),
    };
    let app = Arc::new(App {
        registry,
        content,
        readonly,
        auth,
    });
    let ops = Operations::start(&config, app.registry.driver().clone()).await?;
    let addr = listener.local_addr()?;
    tracing::info!(
        addr = %addr,
        storage = %app.registry.driver().describe(),
        delete_enabled = config.storage.delete.enabled,
        readonly,
        auth = app.auth.describe(),
        proxy = proxied,
        tls = tls.as_ref().map_or("off", |t| if t.client_auth() { "on, client certificates required" } else { "on" }),
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
    if let Some(t) = &tls {
        t.clone().watch();
    }
    let router = ops.wrap(http::router(app));
    let drain = ops.drain;
    let server = accept_loop(
        listener,
        router,
        tls,
        (config.http.sendtimeout(), hooks.timeouts),
        drain.stopped(),
    );
    let metrics = ops.metrics.clone();
    drain
        .run(
            async move {
                server.await;
                Ok::<(), std::convert::Infallible>(())
            },
            shutdown,
            || metrics.in_flight.get(),
        )
        .await
        .ok();
    tracing::info!("stopped");
    Ok(())
}

/// Accept connections until `shutdown`, serving each (after a TLS handshake when `tls` is
/// set) with HTTP/1.1; then wait for in-flight connections to finish their requests. A
/// connection whose client reads nothing for `send_timeout` while an answer is pending is
/// closed (under TLS too: the timeout wraps the TCP stream); `timeouts` bound how long its
/// headers and the silences in its bodies may take.
async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<Tls>>,
    (send_timeout, timeouts): (Duration, Timeouts),
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let stream = http::idle::SendTimeout::new(stream, send_timeout, peer);
        let router = router.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(TokioIo::new(stream), router, (peer, local), (false, timeouts), watcher).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        serve_connection(TokioIo::new(stream), router, (peer, local), (true, timeouts), watcher).await
                    }
                    Ok(Err(e)) => tracing::debug!(client = %peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_connection<I>(
    io: TokioIo<I>,
    router: axum::Router,
    (peer, local): (SocketAddr, Option<SocketAddr>),
    (tls, timeouts): (bool, Timeouts),
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // What handlers learn about the connection: the client address (login limiter) and TLS. A
    // body whose client goes silent fails after the idle timeout (slowloris, lying lengths).
    let idle = timeouts.body_idle;
    let svc = tower::util::MapRequestLayer::new(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req = req.map(|b| http::idle::IdleTimeoutBody::new(b, idle));
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(local) = local {
            req.extensions_mut().insert(http::LocalAddr(local));
        }
        if tls {
            req.extensions_mut().insert(http::TlsConnection);
        }
        req
    })
    .layer(router);
    // Headers must arrive within the header timeout, or the connection is closed (slowloris).
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true)
        .serve_connection(io, TowerToHyperService::new(svc));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(client = %peer, "connection ended: {e}");
    }
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
    /// The metrics path when they are not (a debug listener, or auth on): a 404 saying where.
    metrics_elsewhere: Option<String>,
}

impl Operations {
    pub async fn start(config: &Config, driver: Arc<dyn crate::storage::Driver>) -> anyhow::Result<Self> {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let drain = crate::shutdown::Drain::new(config.http.draintimeout());
        let health = Arc::new(http::health::Health::new(
            &config.health.storagedriver,
            !config.storage.maintenance.readonly.enabled,
        ));
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
        } else if metrics_here.is_some() && (config.auth.htpasswd.is_some() || config.auth.token.is_some()) {
            // With auth on, the metrics are not public: as registry:2, only on the debug
            // listener (which the operator binds where only scrapers reach it).
            tracing::warn!(
                "authentication is on: metrics are served on http.debug.addr only, which is unset, so \
                 not at all; set http.debug.addr (e.g. 127.0.0.1:5001) to scrape them"
            );
            metrics_here = None;
        }
        let metrics_elsewhere = if metrics_here.is_none() { metrics_path } else { None };
        Ok(Operations {
            metrics,
            drain,
            ops,
            observe,
            metrics_here,
            metrics_elsewhere,
        })
    }

    /// The application's router with the operational routes and the request-observing layer.
    pub fn wrap(&self, app: axum::Router) -> axum::Router {
        let app = match &self.metrics_elsewhere {
            Some(p) => app.route(p, axum::routing::any(http::ops::metrics_elsewhere)),
            None => app,
        };
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
