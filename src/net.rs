//! Networking helpers every listener and request handler of ours shares: Nagle off,
//! the shutdown signal, and what a request says about how it reached us.

use axum::http::HeaderMap;

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

/// True when a proxy in front of us says the browser came over https, so cookies
/// must be `Secure` even though our own listener speaks plain HTTP.
pub fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
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
}
