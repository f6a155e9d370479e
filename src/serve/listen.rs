//! Binding the listening socket and running the server until Ctrl-C or SIGTERM.

use super::access_log::{self, AccessLog};
use super::error::ServeError;
use super::router::router;
use crate::teacher::Client;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Where and how to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to bind: an IP or a host name. Default `127.0.0.1` (this machine only).
    pub host: String,
    /// TCP port; 0 picks a free one. Default 8000.
    pub port: u16,
    /// When set, every request must carry `Authorization: Bearer <api_key>`.
    pub api_key: Option<String>,
    /// When set, one JSON line per request is appended to this file (see [`access_log`]).
    pub access_log: Option<PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { host: "127.0.0.1".into(), port: 8000, api_key: None, access_log: None }
    }
}

/// Whether `host` names only this machine (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The warning to print before serving on `options`, if any: a non-loopback address makes the
/// teacher reachable from the network.
pub fn exposure_warning(options: &ServeOptions) -> Option<String> {
    if is_loopback(&options.host) {
        return None;
    }
    let advice = if options.api_key.is_some() {
        "requests must carry the API key"
    } else {
        "anyone who can reach it can use the model; consider --api-key KEY"
    };
    Some(format!("warning: serving on {} is reachable from the network, not only this machine; {advice}", options.host))
}

/// Bind the listening socket of `options` (the bound address is `listener.local_addr()`).
pub async fn bind(options: &ServeOptions) -> Result<TcpListener, ServeError> {
    let host = options.host.trim_start_matches('[').trim_end_matches(']');
    TcpListener::bind((host, options.port))
        .await
        .map_err(|source| ServeError::Bind { address: format!("{}:{}", options.host, options.port), source })
}

/// Serve on an already bound `listener` until Ctrl-C or SIGTERM, then finish the requests in
/// flight and return.
pub async fn serve_on(
    listener: TcpListener,
    client: Arc<dyn Client>,
    model_name: String,
    options: &ServeOptions,
) -> Result<(), ServeError> {
    let mut app = router(client, model_name, options.api_key.clone());
    if let Some(path) = &options.access_log {
        let log = AccessLog::open(path).map_err(|source| ServeError::AccessLog { path: path.display().to_string(), source })?;
        // Outermost, so rejected (401) and unknown requests are logged too.
        app = app.layer(axum::middleware::from_fn_with_state(Arc::new(log), access_log::record));
    }
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.map_err(ServeError::Run)
}

/// Serve `client` as `model_name` on `options` until Ctrl-C or SIGTERM.
pub async fn serve(client: Arc<dyn Client>, model_name: String, options: ServeOptions) -> Result<(), ServeError> {
    let listener = bind(&options).await?;
    serve_on(listener, client, model_name, &options).await
}

async fn shutdown() {
    let ctrl_c = async {
        // If the handler cannot be installed, never resolve: the process is then stopped by signal.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["0.0.0.0", "::", "192.168.1.2", "example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
        assert!(exposure_warning(&ServeOptions::default()).is_none());
        let open = ServeOptions { host: "0.0.0.0".into(), ..ServeOptions::default() };
        assert!(exposure_warning(&open).is_some_and(|w| w.contains("--api-key")));
    }
}
