//! Graceful shutdown with a deadline (`http.draintimeout`, as Distribution's).
//!
//! On the shutdown signal the listener stops accepting and idle connections close; requests in
//! flight may finish until shortly before the deadline. Then they are cut: every request and response body
//! still streaming ends with an error, so an upload keeps what it received (its session is
//! checkpointed at that size and resumes after a restart, as after a dropped connection) and a
//! download ends short of its `Content-Length`, which every client detects. What is still open
//! at the deadline is closed by the process exiting, with status 0.
//!
//! The server loop is not ours to change (plain `axum::serve` now, a TLS accept loop later):
//! it only needs a future that resolves when it should stop accepting ([`Drain::stopped`]) and
//! to return once its connections are done; bodies are cut through [`Abort`], which the
//! request-observing middleware (`http::observe`) wraps around every body.

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;

/// Of the drain timeout, the part kept for closing what was cut (an upload checkpoints what it
/// received), so that the whole shutdown fits in the timeout: a quarter, at most 2 s.
fn cut_grace(timeout: Duration) -> Duration {
    (timeout / 4).min(Duration::from_secs(2))
}

/// Resolves (for every clone) once the drain deadline has passed.
#[derive(Clone)]
pub struct Abort(Shared<BoxFuture<'static, ()>>);

impl Abort {
    /// An abort that never comes (for servers built without a [`Drain`]).
    pub fn never() -> Self {
        Abort(futures::future::pending().boxed().shared())
    }

    /// Whether the deadline has passed; registers `cx` to be woken when it does.
    pub fn poll_aborted(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.0.poll_unpin(cx), Poll::Ready(()))
    }
}

pub struct Drain {
    timeout: Duration,
    stop: watch::Sender<bool>,
    cut: Option<futures::channel::oneshot::Sender<()>>,
    abort: Abort,
}

impl Drain {
    pub fn new(timeout: Duration) -> Self {
        let (cut, rx) = futures::channel::oneshot::channel::<()>();
        Drain {
            timeout,
            stop: watch::channel(false).0,
            cut: Some(cut),
            abort: Abort(rx.map(|_| ()).boxed().shared()),
        }
    }

    /// Resolves when the server should stop accepting connections.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }

    /// True from the shutdown signal on (for `/readyz`).
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn abort(&self) -> Abort {
        self.abort.clone()
    }

    /// Run `server` until `signal`, then drain it. `in_flight` reports the requests still
    /// running, for the log.
    pub async fn run<E>(
        mut self,
        server: impl Future<Output = Result<(), E>>,
        signal: impl Future<Output = ()>,
        in_flight: impl Fn() -> i64,
    ) -> Result<(), E> {
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => return r,
            _ = signal => {}
        }
        let _ = self.stop.send(true);
        tracing::info!(
            in_flight = in_flight(),
            timeout_s = self.timeout.as_secs_f64(),
            "shutting down: no new connections; waiting for requests in flight"
        );
        let grace = cut_grace(self.timeout);
        if let Ok(r) = tokio::time::timeout(self.timeout - grace, &mut server).await {
            return r;
        }
        tracing::warn!(
            in_flight = in_flight(),
            "drain timeout reached: cutting the requests still in flight (uploads keep what they received)"
        );
        if let Some(cut) = self.cut.take() {
            let _ = cut.send(());
        }
        match tokio::time::timeout(grace, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    in_flight = in_flight(),
                    "connections still open after the cut; exiting anyway"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finishes_in_time_or_cuts() {
        // A server that finishes 50 ms after being asked to stop: drained, not cut.
        let d = Drain::new(Duration::from_secs(5));
        let stopped = d.stopped();
        let mut abort = d.abort();
        let server = async move {
            stopped.await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let cut = futures::future::poll_fn(|cx| Poll::Ready(abort.poll_aborted(cx))).await;
            if cut { Err("cut") } else { Ok(()) }
        };
        d.run(server, async {}, || 0).await.unwrap();

        // A server whose request never ends: cut at the deadline, then it returns.
        let d = Drain::new(Duration::from_millis(100));
        let mut abort = d.abort();
        let server = async move {
            futures::future::poll_fn(|cx| {
                if abort.poll_aborted(cx) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            Ok::<(), ()>(())
        };
        let t = std::time::Instant::now();
        d.run(server, async {}, || 1).await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(75) && t.elapsed() < Duration::from_secs(2));
    }
}
