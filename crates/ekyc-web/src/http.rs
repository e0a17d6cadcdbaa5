//! The port's HTTP/1.1 server: the router on hyper connections, with what a port that
//! browsers (and anyone else) can reach needs and `axum::serve` does not give:
//!
//! - a deadline for a request's headers (`web.header_read_timeout_ms`): a client that opens
//!   a connection and trickles its headers, never sends any, or keeps a connection idle
//!   after a request, is dropped, so idle connections cannot pile up (slowloris);
//! - a cap on open connections (`web.max_connections`): one past it is closed at once and
//!   counted, so a flood of connections costs a file descriptor each for a moment only;
//! - on shutdown, no new connection is taken, each open one finishes the request in hand
//!   and closes, and [`serve`] returns when all are closed.
//!
//! Request bodies are bounded where they are read (the gRPC-Web admission limit, the demo
//! endpoint's JSON limit), and headers by hyper's buffer limit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The connection limits of the port.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: u32,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains the open
/// connections.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a little rather than spin.
                    tracing::warn!(error = %e, "web: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics::counter!("ekyc_web_connections_refused_total").increment(1);
            tracing::warn!(max = limits.max_connections, "web: connection closed, the port is at its connection limit");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "web: connection ended with an error");
            }
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it has closed.
    let _ = permits.acquire_many(limits.max_connections).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("port");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/", get(|| async { "ok" }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, router, limits, async {
            let _ = rx.await;
        }));
        (addr, tx, task)
    }

    /// Reads until the server closes the connection; the time it took and what was read.
    async fn until_closed(s: &mut TcpStream, within: Duration) -> (Duration, String) {
        let t = Instant::now();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(within.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (t.elapsed(), String::from_utf8_lossy(&out).into_owned()),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the connection was still open after {within:?}; read {:?}", String::from_utf8_lossy(&out)),
            }
        }
    }

    /// Sends `request` on a new connection; the answer, read until the server closes it.
    async fn answer(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connects");
        s.write_all(request).await.expect("writes");
        until_closed(&mut s, Duration::from_secs(5)).await.1
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_dropped() {
        let limits = Limits { header_read_timeout: Duration::from_millis(300), max_connections: 8 };
        let (addr, _stop, _task) = start(limits).await;
        // A complete request is answered.
        let ok = answer(addr, GET).await;
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok"), "{ok}");
        // Half a request, then silence: closed after the deadline, not kept forever.
        let mut slow = TcpStream::connect(addr).await.expect("connects");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ").await.expect("writes");
        let (took, _) = until_closed(&mut slow, Duration::from_secs(5)).await;
        assert!(took >= Duration::from_millis(250), "closed before the deadline: {took:?}");
        // Nothing at all: the same.
        let mut silent = TcpStream::connect(addr).await.expect("connects");
        let (took, _) = until_closed(&mut silent, Duration::from_secs(5)).await;
        assert!(took >= Duration::from_millis(250), "{took:?}");
        // One request kept alive, then silence: the wait for the next one has the deadline too.
        let kept = answer(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert!(kept.starts_with("HTTP/1.1 200"), "{kept}");
    }

    #[tokio::test]
    async fn a_connection_past_the_cap_is_closed_and_one_is_taken_again_when_one_closes() {
        let limits = Limits { header_read_timeout: Duration::from_secs(30), max_connections: 2 };
        let (addr, _stop, _task) = start(limits).await;
        let first = TcpStream::connect(addr).await.expect("connects");
        let _second = TcpStream::connect(addr).await.expect("connects");
        // Let the server take both before the third arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.expect("the kernel accepts");
        third.write_all(GET).await.ok();
        let (_, refused) = until_closed(&mut third, Duration::from_secs(5)).await;
        assert!(refused.is_empty(), "past the cap, no answer: {refused}");
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again = answer(addr, GET).await;
        assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_returns() {
        let limits = Limits { header_read_timeout: Duration::from_secs(30), max_connections: 8 };
        let (addr, stop, task) = start(limits).await;
        let mut idle = TcpStream::connect(addr).await.expect("connects");
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).expect("the server waits for it");
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("serve returns").expect("no panic");
        let (_, said) = until_closed(&mut idle, Duration::from_secs(5)).await;
        assert!(said.is_empty(), "{said}");
    }
}
