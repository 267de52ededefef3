//! The status listener: `/healthz`, `/metrics`, `/api/v1/stores`, `POST /api/v1/stores/{id}/check`,
//! and the HTML status page (`/`, `/stores/{id}`, in `page.rs`).
//!
//! Loopback by default. Every POST, and every request when the listener is not on a loopback
//! address, needs `Authorization: Bearer <token>` (the `api_token` of the vault entry
//! `daemon/api`), compared in constant time.

use super::Shared;
use crate::outcome::{Finding, Status};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// One store as `/api/v1/stores` and `storeguard status --json` show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoreStatus {
    pub id: String,
    pub name: String,
    pub marketplace: String,
    pub enabled: bool,
    /// OK, WARNING, CRITICAL, UNKNOWN, or PENDING before the first check.
    pub status: String,
    pub findings: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    pub open_incidents: Vec<OpenIncident>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpenIncident {
    pub incident_id: String,
    pub finding: String,
    pub severity: String,
    pub opened_at: DateTime<Utc>,
}

/// Builds the store list from the daemon's memory.
pub fn store_statuses(shared: &Shared, show_accounts: bool) -> Vec<StoreStatus> {
    let live = shared.live();
    let now = shared.clock.now();
    let mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
    live.config
        .stores
        .iter()
        .map(|s| {
            let m = mem.get(&s.id);
            let last = m.and_then(|m| m.last.as_ref());
            StoreStatus {
                id: s.id.clone(),
                name: s.name.clone(),
                marketplace: s.marketplace.as_str().to_string(),
                enabled: s.enabled,
                status: last.map_or("PENDING".to_string(), |o| o.status.as_str().to_string()),
                findings: last.map(|o| o.findings.clone()).unwrap_or_default(),
                account: if show_accounts {
                    last.and_then(|o| o.facts.account.clone())
                        .or_else(|| s.account.clone())
                } else {
                    None
                },
                expires_at: last.and_then(|o| o.facts.expires_at),
                last_check: last.map(|o| o.checked_at),
                next_check: m.and_then(|m| m.next_check(s, live.config.daemon.timezone, now)),
                latency_ms: last.map(|o| o.facts.latency_ms),
                open_incidents: m
                    .map(|m| {
                        m.health
                            .open
                            .values()
                            .map(|i| OpenIncident {
                                incident_id: i.id.clone(),
                                finding: i.finding.as_str().to_string(),
                                severity: i.severity.as_str().to_string(),
                                opened_at: i.opened_at,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Whether the request carries the API token.
fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    let token = shared.api_token.read().unwrap_or_else(|e| e.into_inner());
    let Some(token) = token.as_ref() else {
        return false;
    };
    let Some(given) = headers
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

fn loopback(shared: &Shared) -> bool {
    shared.live().config.daemon.listen.ip().is_loopback()
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "missing or wrong bearer token\n",
    )
        .into_response()
}

/// Reads need the token only off loopback.
pub(super) fn read_allowed(shared: &Shared, headers: &HeaderMap) -> bool {
    loopback(shared) || authorised(shared, headers)
}

async fn healthz(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !read_allowed(&shared, &headers) {
        return unauthorised();
    }
    if shared.scheduler_alive(shared.clock.now()) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "scheduler stalled\n").into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !read_allowed(&shared, &headers) {
        return unauthorised();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::render(&shared),
    )
        .into_response()
}

async fn stores(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !read_allowed(&shared, &headers) {
        return unauthorised();
    }
    axum::Json(store_statuses(&shared, true)).into_response()
}

async fn check_now(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorised(&shared, &headers) {
        return unauthorised();
    }
    if id.len() > 64 || !shared.check_now(&id) {
        return (StatusCode::NOT_FOUND, "no such store\n").into_response();
    }
    (StatusCode::ACCEPTED, "check queued\n").into_response()
}

#[derive(Deserialize)]
struct SilenceQuery {
    #[serde(rename = "for")]
    duration: String,
}

async fn silence(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<SilenceQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorised(&shared, &headers) {
        return unauthorised();
    }
    let duration = match crate::duration::parse(&q.duration) {
        Ok(d) if d <= std::time::Duration::from_secs(90 * 86_400) => d,
        Ok(_) => return (StatusCode::BAD_REQUEST, "at most 90d\n").into_response(),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    if id.len() > 64 {
        return (StatusCode::NOT_FOUND, "no such store\n").into_response();
    }
    match super::silence(&shared, &id, duration) {
        Ok(until) => (StatusCode::OK, format!("{}\n", until.to_rfc3339())).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such store\n").into_response(),
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(super::page::index))
        .route("/stores/{id}", get(super::page::store))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/stores", get(stores))
        .route("/api/v1/stores/{id}/check", post(check_now))
        .route("/api/v1/stores/{id}/silence", post(silence))
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

/// Worst status among stores (for the sd_notify STATUS line).
pub fn summary(statuses: &[StoreStatus]) -> String {
    let count = |s: Status| statuses.iter().filter(|x| x.status == s.as_str()).count();
    format!(
        "{} stores: {} OK, {} WARNING, {} CRITICAL, {} UNKNOWN",
        statuses.iter().filter(|s| s.enabled).count(),
        count(Status::Ok),
        count(Status::Warning),
        count(Status::Critical),
        count(Status::Unknown)
    )
}
