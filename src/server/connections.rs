//! The listeners' accept loop, so that no client can exhaust the server: a cap on open
//! connections below the process's descriptor limit (a connection above it is closed at once,
//! counted and logged, so health probes and real clients get through again as soon as others
//! close), a deadline for a new connection's first byte (silent TCP connections are closed),
//! TCP keepalive, and a back-off with a log line when accepting fails (EMFILE) instead of a
//! spinning loop. On shutdown, connections that never sent a byte are closed at once.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub first_byte_timeout: Duration,
    pub tcp_keepalive: Duration,
}

impl Limits {
    /// `max_connections` 0 means three quarters of the descriptor limit (the rest is left for
    /// model files, the store, the metrics endpoint), at least 16.
    pub fn new(max_connections: usize, first_byte_timeout: Duration) -> Self {
        let max_connections =
            if max_connections > 0 { max_connections } else { (descriptor_limit() * 3 / 4).max(16) };
        Limits { max_connections, first_byte_timeout, tcp_keepalive: Duration::from_secs(60) }
    }
}

/// The soft RLIMIT_NOFILE (1024 if it cannot be read; capped at 65536 for the default cap).
fn descriptor_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok {
        (limit.rlim_cur as usize).min(65536)
    } else {
        1024
    }
}

/// Accepts on `listener` until `shutdown`; the stream ends when the server stops taking it.
pub fn incoming(
    listener: TcpListener,
    limits: Limits,
    shutdown: CancellationToken,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(5);
        let mut last_warning: Option<Instant> = None;
        // One warning a few seconds at most: a flood must not flood the log too.
        let mut warn = |what: &str, error: Option<&io::Error>| {
            if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                last_warning = Some(Instant::now());
                tracing::warn!(error = ?error.map(ToString::to_string), max_connections = limits.max_connections, "{what}");
            }
        };
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
            };
            let (stream, _) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or of memory: wait for some to free up.
                    warn("accepting a connection failed; backing off", Some(&e));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            backoff = Duration::from_millis(5);
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                crate::metrics::connection_refused();
                warn("connection limit reached: closing new connections until others close", None);
                drop(stream);
                continue;
            };
            let keepalive = socket2::TcpKeepalive::new().with_time(limits.tcp_keepalive);
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
            let _ = stream.set_nodelay(true);
            let conn = Conn::new(stream, permit, limits.first_byte_timeout, shutdown.clone());
            if tx.send(Ok(conn)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// An accepted connection holding its slot; reading fails (and the server closes it) if no
/// byte arrives before its deadline or before shutdown.
pub struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Until the first byte: the deadline and the shutdown signal.
    silent: Option<(Pin<Box<tokio::time::Sleep>>, Pin<Box<WaitForCancellationFutureOwned>>)>,
}

impl Conn {
    fn new(
        stream: TcpStream,
        slot: OwnedSemaphorePermit,
        timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        crate::metrics::connection_opened();
        let silent = Some((Box::pin(tokio::time::sleep(timeout)), Box::pin(shutdown.cancelled_owned())));
        Conn { stream, _slot: slot, silent }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        crate::metrics::connection_closed();
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let filled = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some((deadline, shutdown)) = &mut this.silent {
            if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > filled {
                this.silent = None;
            } else if result.is_pending() {
                let why = if deadline.as_mut().poll(cx).is_ready() {
                    "no request within the first-byte timeout"
                } else if shutdown.as_mut().poll(cx).is_ready() {
                    "the server is shutting down"
                } else {
                    return Poll::Pending;
                };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
            }
        }
        result
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        TcpConnectInfo {
            local_addr: self.stream.local_addr().ok(),
            remote_addr: self.stream.peer_addr().ok(),
        }
    }
}
