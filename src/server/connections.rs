//! The listeners' accept loop, so that no client can exhaust the server: a cap on open
//! connections below the process's descriptor limit (at the cap the oldest connection that has
//! sent nothing yet makes room; with none, the new one is closed at once, counted and logged),
//! a deadline for a new connection's first byte (silent TCP connections are closed),
//! TCP keepalive, and a back-off with a log line when accepting fails (EMFILE) instead of a
//! spinning loop. On shutdown, connections that never sent a byte are closed at once.
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
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
    let silent: Silent = Arc::default();
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
            let keepalive = socket2::TcpKeepalive::new().with_time(limits.tcp_keepalive);
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
            let _ = stream.set_nodelay(true);
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                let conn = Conn::new(stream, slot, limits.first_byte_timeout, &shutdown, &silent);
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
                continue;
            }
            // At the cap: a connection that has not sent a byte yet makes room (a real client
            // speaks at once, so a flood of silent ones cannot lock real clients out); if every
            // connection has spoken, the new one is closed.
            if !evict_oldest_silent(&silent) {
                crate::metrics::connection_refused();
                warn("connection limit reached: new connections are accepted and closed at once", None);
                drop(stream);
                continue;
            }
            crate::metrics::connection_refused();
            warn("connection limit reached: closing the oldest connections that have sent nothing", None);
            let (tx, slots, shutdown, silent) = (tx.clone(), slots.clone(), shutdown.clone(), silent.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(1), slots.acquire_owned()).await {
                    Ok(Ok(slot)) => {
                        let conn = Conn::new(stream, slot, limits.first_byte_timeout, &shutdown, &silent);
                        let _ = tx.send(Ok(conn)).await;
                    }
                    _ => crate::metrics::connection_refused(),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The connections that have not sent a byte yet, oldest first: cancelling one's token closes
/// it (its token is a child of the shutdown token, so shutdown closes them all).
type Silent = Arc<Mutex<VecDeque<Weak<CancellationToken>>>>;

/// Closes the oldest connection that is still silent; false if there is none.
fn evict_oldest_silent(silent: &Silent) -> bool {
    let mut queue = silent.lock().expect("not poisoned");
    while let Some(entry) = queue.pop_front() {
        if let Some(token) = entry.upgrade() {
            token.cancel();
            return true;
        }
    }
    false
}

/// Until its first byte: a connection's deadline, and what closes it early (shutdown or
/// eviction). The token is owned here; the eviction queue holds it weakly.
type Quiet = (Pin<Box<tokio::time::Sleep>>, Pin<Box<WaitForCancellationFutureOwned>>, Arc<CancellationToken>);

/// An accepted connection holding its slot; reading fails (and the server closes it) if no
/// byte arrives before its deadline, before shutdown, or before it is evicted.
pub struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    silent: Option<Quiet>,
}

impl Conn {
    fn new(
        stream: TcpStream,
        slot: OwnedSemaphorePermit,
        timeout: Duration,
        shutdown: &CancellationToken,
        silent: &Silent,
    ) -> Self {
        crate::metrics::connection_opened();
        let token = Arc::new(shutdown.child_token());
        {
            let mut queue = silent.lock().expect("not poisoned");
            queue.retain(|w| w.strong_count() > 0);
            queue.push_back(Arc::downgrade(&token));
        }
        let closed = Box::pin(token.as_ref().clone().cancelled_owned());
        Conn { stream, _slot: slot, silent: Some((Box::pin(tokio::time::sleep(timeout)), closed, token)) }
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
        if let Some((deadline, closed, _)) = &mut this.silent {
            if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > filled {
                this.silent = None;
            } else if result.is_pending() {
                let why = if deadline.as_mut().poll(cx).is_ready() {
                    "no request within the first-byte timeout"
                } else if closed.as_mut().poll(cx).is_ready() {
                    "closed: the server is shutting down, or needed the slot of a silent connection"
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
