//! The hub's HTTP API (warp), under `/v1`: platforms and networks, two-phase transfers,
//! HTLC swaps, messages, a WebSocket event stream and the OpenAPI document.
//!
//! This crate owns the *edges* of a request: authentication with roles and tenants (every
//! read is scoped to the caller's tenant; another tenant's object answers 404, exactly as a
//! missing one), API keys made at run time, idempotency keys,
//! shape validation, pagination, the one error shape, and durable event replay. It never
//! decides anything about cross-chain state: that is the job of the hub's [`Backends`] (one
//! small trait per resource). It never returns an internal error's text to a client, and
//! it records an idempotent response only after the backend has made the operation
//! durable.

pub mod auth;
pub mod backend;
pub mod error;
pub mod keys;
pub mod limit;
pub mod model;
pub mod networks;
pub mod openapi;
pub mod server;
pub mod settings;
pub mod store;

pub use auth::{ApiKeyConfig, KeyRing, Principal, Role, DEFAULT_TENANT};
pub use backend::{
    Adapters, BackendError, Backends, Directory, Messages, NoMessages, NoRegistry, OpId, Operations,
};
pub use error::{ApiError, ErrorCode};
pub use server::{routes, routes_with, ApiState};
pub use settings::{ApiSettings, ApiTls, CorsSettings, RateLimit, WsSettings};
pub use store::{ApiStore, Event, EventBus, KeyRecord, SledApiStore};

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long open connections (keep-alive clients, WebSocket subscribers) get to finish
/// after shutdown is asked for. Without a bound, one idle keep-alive client or one open
/// event stream would hold a stopping hub for as long as it likes.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// [`serve_with`] the default [`ApiSettings`].
pub fn serve(
    addr: SocketAddr,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = ()>), std::io::Error> {
    serve_with(addr, state, ApiSettings::default(), shutdown)
}

/// Bind the API on `addr` (use port 0 for any free port) with `settings` and serve until
/// `shutdown` resolves; requests in flight then get [`SHUTDOWN_DRAIN`] to finish. Returns
/// the bound address and the server future to await. Settings that do not
/// [`validate`](ApiSettings::validate) are refused with every problem. With
/// [`ApiSettings::tls`] it speaks HTTPS only (rustls; a plain HTTP request fails the
/// handshake).
pub fn serve_with(
    addr: SocketAddr,
    state: Arc<ApiState>,
    settings: ApiSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = ()>), std::io::Error> {
    let problems = settings.validate();
    if !problems.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "api settings have {} problem(s): {}",
                problems.len(),
                problems.join("; ")
            ),
        ));
    }
    let (asked, asked_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = asked.send(());
    };
    let filter = routes_with(state, &settings);
    let cannot =
        |e: warp::Error| std::io::Error::other(format!("cannot bind the api on {addr}: {e}"));
    let (bound, server): (SocketAddr, Pin<Box<dyn Future<Output = ()> + Send>>) =
        match &settings.tls {
            None => {
                let (bound, server) = warp::serve(filter)
                    .try_bind_with_graceful_shutdown(addr, signal)
                    .map_err(cannot)?;
                (bound, Box::pin(server))
            }
            // A bad certificate or key is refused here, before anything listens.
            Some(tls) => {
                let (bound, server) = warp::serve(filter)
                    .tls()
                    .cert_path(&tls.cert)
                    .key_path(&tls.key)
                    .try_bind_with_graceful_shutdown(addr, signal)
                    .map_err(cannot)?;
                (bound, Box::pin(server))
            }
        };
    let bounded = async move {
        tokio::pin!(server);
        let drain_over = async move {
            match asked_rx.await {
                Ok(()) => tokio::time::sleep(SHUTDOWN_DRAIN).await,
                // The server ended by itself, so the other branch is already ready.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut server => {}
            () = drain_over => {
                tracing::warn!(drain = ?SHUTDOWN_DRAIN, "api connections still open after shutdown; closing them");
            }
        }
    };
    Ok((bound, bounded))
}
