//! The status listener: `/healthz`, `/metrics`, `/api/v1/stores`,
//! `POST /api/v1/stores/{id}/check` and `/silence`, and the HTML status page (`/`,
//! `/stores/{id}`).
//!
//! Loopback by default. Every POST, and every request when the listener is not on a loopback
//! address, needs `Authorization: Bearer <token>` (the `api_token` of the vault entry
//! `daemon/api`), compared in constant time. Handlers say what they need by taking a
//! [`ReadAccess`] or [`WriteAccess`]; nothing else checks the token.

pub mod api;
pub mod html;
pub mod metrics;
pub mod page;
pub mod view;

use crate::daemon::Shared;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// The request may read: it comes to a loopback listener, or carries the token.
#[derive(Clone, Copy, Debug)]
pub struct ReadAccess;

/// The request may change something: it carries the token, wherever it comes from.
#[derive(Clone, Copy, Debug)]
pub struct WriteAccess;

/// A request without the access it needs (401 with `WWW-Authenticate: Bearer`).
#[derive(Clone, Copy, Debug)]
pub struct Unauthorised;

impl IntoResponse for Unauthorised {
    fn into_response(self) -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response()
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Whether the request carries the API token.
fn carries_token(shared: &Shared, parts: &Parts) -> bool {
    let token = shared.api_token.read().unwrap_or_else(|e| e.into_inner());
    let Some(token) = token.as_ref() else {
        return false;
    };
    let Some(given) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Hash both sides so the comparison is constant-time whatever the lengths.
    digest(given.trim().as_bytes())
        .ct_eq(&digest(token.expose_secret().as_bytes()))
        .into()
}

impl FromRequestParts<Arc<Shared>> for ReadAccess {
    type Rejection = Unauthorised;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let loopback = shared.live().config.daemon.listen.ip().is_loopback();
        if loopback || carries_token(shared, parts) {
            Ok(ReadAccess)
        } else {
            Err(Unauthorised)
        }
    }
}

impl FromRequestParts<Arc<Shared>> for WriteAccess {
    type Rejection = Unauthorised;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        if carries_token(shared, parts) {
            Ok(WriteAccess)
        } else {
            Err(Unauthorised)
        }
    }
}

/// The `{id}` of a store path. Store ids are at most 64 characters; anything longer is no
/// store (404) without being looked up.
#[derive(Clone, Debug)]
pub struct StoreIdParam(pub String);

/// A store path whose id cannot be a store's.
#[derive(Clone, Copy, Debug)]
pub struct NoSuchStore;

impl IntoResponse for NoSuchStore {
    fn into_response(self) -> Response {
        (StatusCode::NOT_FOUND, "no such store\n").into_response()
    }
}

/// The longest store id (config validation holds stores to it).
pub const MAX_STORE_ID: usize = 64;

impl FromRequestParts<Arc<Shared>> for StoreIdParam {
    type Rejection = NoSuchStore;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, shared).await {
            Ok(Path(id)) if id.len() <= MAX_STORE_ID => Ok(StoreIdParam(id)),
            _ => Err(NoSuchStore),
        }
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/stores/{id}", get(page::store))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/api/v1/stores", get(api::stores))
        .route("/api/v1/stores/{id}/check", post(api::check_now))
        .route("/api/v1/stores/{id}/silence", post(api::silence))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(shared)
}

/// A client must send a request's headers within this time.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// No connection lives longer than this, however it trickles.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(120);

/// Serves until `cancel` fires. Each connection is HTTP/1 with a header-read timeout, a 16 KiB
/// read buffer (larger headers get 431) and a lifetime cap; at most `limits.max_connections` at
/// once (more are closed at accept).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(shared.limits.max_connections));
    let app = router(shared);
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("status listener accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}
