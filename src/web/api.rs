//! The JSON and text endpoints: `/healthz`, `/metrics`, `/api/v1/stores`, and the two POSTs.

use super::view::{self, Accounts};
use super::{ReadAccess, StoreIdParam, WriteAccess};
use crate::daemon::Shared;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

pub(super) async fn healthz(_: ReadAccess, State(shared): State<Arc<Shared>>) -> Response {
    if shared.scheduler_alive(shared.clock.now()) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "scheduler stalled\n").into_response()
    }
}

pub(super) async fn metrics(_: ReadAccess, State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::render(&shared),
    )
        .into_response()
}

pub(super) async fn stores(_: ReadAccess, State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(view::from_daemon(&shared, Accounts::Shown).0).into_response()
}

pub(super) async fn check_now(
    _: WriteAccess,
    State(shared): State<Arc<Shared>>,
    StoreIdParam(id): StoreIdParam,
) -> Response {
    if !shared.check_now(&id) {
        return super::NoSuchStore.into_response();
    }
    (StatusCode::ACCEPTED, "check queued\n").into_response()
}

#[derive(Deserialize)]
pub(super) struct SilenceQuery {
    #[serde(rename = "for")]
    duration: String,
}

pub(super) async fn silence(
    _: WriteAccess,
    State(shared): State<Arc<Shared>>,
    StoreIdParam(id): StoreIdParam,
    axum::extract::Query(q): axum::extract::Query<SilenceQuery>,
) -> Response {
    let duration = match crate::duration::parse(&q.duration) {
        Ok(d) if d <= std::time::Duration::from_secs(90 * 86_400) => d,
        Ok(_) => return (StatusCode::BAD_REQUEST, "at most 90d\n").into_response(),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    match crate::daemon::silence(&shared, &id, duration) {
        Ok(until) => (StatusCode::OK, format!("{}\n", until.to_rfc3339())).into_response(),
        Err(_) => super::NoSuchStore.into_response(),
    }
}
