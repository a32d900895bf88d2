//! A request body that fails when the client goes silent: each frame must arrive within the
//! idle timeout of the previous one (or of the start). Slow clients that keep sending are
//! fine; a client that stops mid-body (slowloris, a `Content-Length` that promises more than
//! is sent, a chunked body that never ends) gets its request failed and its connection closed,
//! instead of holding a task, a session lock and a file descriptor forever.
//!
//! [`SendTimeout`] is the same rule for the other direction: a client that stops reading.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

pub struct IdleTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    /// The consumer asked for a frame the client has not sent yet: the clock runs. It starts
    /// at each ask, so time the handler spends elsewhere (a lock, a slow disk) never counts.
    waiting: bool,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no request body bytes received for {0:?}")]
pub struct BodyIdle(Duration);

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.timeout;
            this.sleep.as_mut().reset(deadline);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once the client has read nothing for `timeout`: a write (or
/// flush) the socket cannot take starts the clock, any progress stops it. A client that asks
/// for an answer and then stops reading (a slow reader) would otherwise hold its connection,
/// its task and the answer being sent (a manifest, a blob's mmap window) forever; hyper has
/// no write timeout of its own. Wraps the TCP stream, under TLS when TLS is on.
pub struct SendTimeout<I> {
    inner: I,
    timeout: Duration,
    peer: std::net::SocketAddr,
    /// Created at the first stall, re-armed at each later one.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The clock runs: a write is pending and no progress was made since.
    stalled: bool,
    timed_out: bool,
}

impl<I> SendTimeout<I> {
    pub fn new(inner: I, timeout: Duration, peer: std::net::SocketAddr) -> Self {
        SendTimeout {
            inner,
            timeout,
            peer,
            sleep: None,
            stalled: false,
            timed_out: false,
        }
    }

    fn timed_out_error(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the client has read nothing for {:?}", self.timeout),
        )
    }

    /// Account for one poll of a write-side operation.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = false;
            return polled;
        }
        if !self.stalled {
            let deadline = Instant::now() + self.timeout;
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.stalled = true;
        }
        let sleep = self.sleep.as_mut().expect("armed above");
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.timed_out = true;
                tracing::info!(
                    client = %self.peer,
                    "closing the connection: the client has read nothing for {:?} (http.sendtimeout)",
                    self.timeout
                );
                Poll::Ready(Err(self.timed_out_error()))
            }
        }
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for SendTimeout<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for SendTimeout<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.timed_out {
            return Poll::Ready(Err(self.timed_out_error()));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.timed_out {
            return Poll::Ready(Err(self.timed_out_error()));
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    /// Passed through: hyper queues body slices and writes them vectored (no copy) only when
    /// the transport says it can.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.timed_out {
            return Poll::Ready(Err(self.timed_out_error()));
        }
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.timed_out {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}
