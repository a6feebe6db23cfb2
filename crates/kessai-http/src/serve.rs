//! Serving a router over TLS (mutual TLS when the configuration asks for
//! client certificates) or, on loopback only, over plain HTTP.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::limits::{
    HEADER_READ_TIMEOUT_MS, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, SHUTDOWN_GRACE_MS, TLS_HANDSHAKE_TIMEOUT_MS,
};
use crate::peer::{PeerIdentity, identity_of};

/// Serves `router` over TLS on `listener` until `shutdown` completes, then
/// lets open connections finish (up to [`SHUTDOWN_GRACE_MS`]).
///
/// Each request carries `ConnectInfo<SocketAddr>` and, if the client
/// presented a certificate that `tls` verified, a [`PeerIdentity`]. At most
/// [`MAX_CONNECTIONS`] connections are served at once, and at most
/// [`MAX_CONNECTIONS_PER_CLIENT`] from one address (more are closed at
/// once). A failed or slow handshake is logged and dropped; it never stops
/// the server.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_loop(router, listener, Some(TlsAcceptor::from(tls)), shutdown).await
}

/// Serves `router` over plain HTTP, for a UI on the local machine only:
/// refuses (`InvalidInput`) a listener not bound to a loopback address.
pub async fn serve_plain(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("plain HTTP is only served on loopback addresses, not {local}"),
        ));
    }
    serve_loop(router, listener, None, shutdown).await
}

async fn serve_loop(
    router: Router,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_client = Arc::new(PerClient::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => permit,
        };
        // The semaphore is never closed, so acquiring only waits.
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Per-connection errors (reset before accept, fd limits):
                // log, pause briefly, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = PerClient::take(&per_client, remote.ip()) else {
            tracing::info!(remote = %remote.ip(), "connection refused: this address holds the most it may");
            drop(tcp);
            continue;
        };
        let (router, tls, stop) = (router.clone(), tls.clone(), stop_rx.clone());
        tokio::spawn(async move {
            connection(router, tcp, remote, tls, stop).await;
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), permits.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; dropping them");
    }
    Ok(())
}

/// How many connections each client address holds.
#[derive(Debug, Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection's place in [`PerClient`], given back when dropped.
#[derive(Debug)]
struct ClientSlot {
    counts: Arc<PerClient>,
    ip: std::net::IpAddr,
}

impl PerClient {
    fn take(counts: &Arc<PerClient>, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let mut held = counts.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = held.entry(ip).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot { counts: Arc::clone(counts), ip })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.counts.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

async fn connection(
    router: Router,
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let Some(acceptor) = tls else {
        return http1(router, TokioIo::new(tcp), remote, None, stop).await;
    };
    let handshake = tokio::time::timeout(Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS), acceptor.accept(tcp)).await;
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(remote = %remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(remote = %remote, "TLS handshake timed out");
            return;
        }
    };
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| identity_of(leaf.as_ref()));
    http1(router, TokioIo::new(stream), remote, peer, stop).await;
}

async fn http1<S>(
    router: Router,
    io: TokioIo<S>,
    remote: SocketAddr,
    peer: Option<PeerIdentity>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        if let Some(peer) = &peer {
            req.extensions_mut().insert(peer.clone());
        }
        router.clone().oneshot(req.map(Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(remote = %remote, error = %e, "connection ended with an error");
    }
}
