//! Networking helpers every listener and request handler of ours shares: Nagle off,
//! the shutdown signal, and what a request says about how it reached us.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Streaming is many tiny writes; with Nagle's algorithm each one can wait for the
/// peer's delayed ACK (about 40 ms). Every listener of ours turns it off.
pub fn without_nagle(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set_nodelay(stream: &mut tokio::net::TcpStream) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    }
    listener.tap_io(set_nodelay as fn(&mut tokio::net::TcpStream))
}

/// How the accept loop treats slow and greedy clients.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// A request's headers must arrive within this long.
    pub header_read_timeout: std::time::Duration,
    /// Open HTTP connections per client address (0: no limit); these are exempt.
    pub connections_per_address: usize,
    pub trusted_proxies: Vec<IpNet>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and
/// lets open requests finish. Like `axum::serve`, plus: Nagle off, a header-read
/// timeout (hyper's, which needs a timer axum does not set), and a cap on the
/// connections one address holds open. Peer addresses reach handlers as
/// `ConnectInfo<SocketAddr>`. A WebSocket leaves the accept loop's count once upgraded:
/// sockets have caps of their own (per session).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ServeLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let open: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1 only: the auto builder's HTTP/2 sniffing reads the first bytes with no
    // timeout (a silent client would hold its connection forever), and a proxy in
    // front speaks HTTP/2 to browsers where that is wanted.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let ip = canonical(peer.ip());
        let capped = limits.connections_per_address > 0 && !limits.trusted_proxies.iter().any(|n| n.contains(&ip));
        // Counted like budgets: an IPv6 client by its /64.
        let key = client_key(ip, &HeaderMap::new(), &[]);
        if capped {
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            let count = open.entry(key.clone()).or_insert(0);
            if *count >= limits.connections_per_address {
                tracing::debug!(%ip, "connection refused: too many open from this address");
                continue; // dropping the stream closes it
            }
            *count += 1;
        }
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let open = open.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_byte_within = limits.header_read_timeout;
        tokio::spawn(async move {
            // hyper's header timer starts with the first byte; a client that connects
            // and says nothing is cut off here instead.
            let mut first = [0u8; 1];
            if matches!(tokio::time::timeout(first_byte_within, stream.peek(&mut first)).await, Ok(Ok(1..))) {
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::trace!(%error, "connection ended with an error");
                }
            }
            if capped {
                let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(count) = open.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        open.remove(&key);
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Headers every response carries: no content-type sniffing, no referrer to other
/// sites, and (for browsers that predate CSP's `frame-ancestors`) no framing.
pub async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The address a request is counted under, from what the accept loop put on it.
pub fn request_client_key(extensions: &axum::http::Extensions, headers: &HeaderMap, trusted: &[IpNet]) -> String {
    match extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        Some(peer) => client_key(peer.0.ip(), headers, trusted),
        None => "unknown".into(),
    }
}

/// True when a proxy in front of us says the browser came over https, so cookies
/// must be `Secure` even though our own listener speaks plain HTTP.
pub fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The address a request is counted under for per-address budgets: the peer's, or —
/// when the peer is one of our trusted proxies — the nearest address in
/// `X-Forwarded-For` that is not a trusted proxy itself (anyone can write that header;
/// only a proxy we trust appends to it truthfully). IPv6 clients are keyed by their /64:
/// one home or phone network hands its devices many addresses of the same /64.
pub fn client_key(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> String {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = canonical(peer);
    if is_trusted(&client) {
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        // From the nearest hop outwards; a hop we cannot read ends the walk there,
        // so what a client wrote further left is never reached.
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>().map(canonical) else { break };
            client = ip;
            if !is_trusted(&ip) {
                break;
            }
        }
    }
    match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => IpNet::new(IpAddr::V6(v6), 64)
            .map(|net| net.trunc().to_string())
            .unwrap_or_else(|_| v6.to_string()),
    }
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:1.2.3.4`) is that IPv4 client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_proto_https_in_any_case() {
        let mut headers = HeaderMap::new();
        assert!(!behind_https(&headers));
        headers.insert("x-forwarded-proto", "HTTPS".parse().unwrap());
        assert!(behind_https(&headers));
        headers.insert("x-forwarded-proto", "http".parse().unwrap());
        assert!(!behind_https(&headers));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        // Through our proxies: the nearest untrusted hop (not the client-written first).
        assert_eq!(client_key(proxy, &headers, &trusted), "203.0.113.7");
        // A hop that is not an address stops the walk: nothing left of it is believed.
        let mut odd = HeaderMap::new();
        odd.insert("x-forwarded-for", "6.6.6.6, unknown, 10.0.0.2".parse().unwrap());
        assert_eq!(client_key(proxy, &odd, &trusted), "10.0.0.2");
        // Straight from a client: its header is ignored.
        assert_eq!(client_key(stranger, &headers, &trusted), "198.51.100.9");
        assert_eq!(client_key(proxy, &HeaderMap::new(), &trusted), "10.0.0.1");
        // IPv6 by /64; IPv4 through an IPv6 socket as IPv4.
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a, &HeaderMap::new(), &[]), client_key(b, &HeaderMap::new(), &[]));
        assert_ne!(client_key(a, &HeaderMap::new(), &[]), client_key(c, &HeaderMap::new(), &[]));
        assert_eq!(client_key("::ffff:192.0.2.5".parse().unwrap(), &HeaderMap::new(), &[]), "192.0.2.5");
    }
}
