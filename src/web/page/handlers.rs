//! Handlers: gather plain data from the daemon, render, answer with safe headers.

use super::*;
use crate::web::view::{self, Accounts};
use crate::web::{NoSuchStore, ReadAccess, StoreIdParam, Unauthorised};

pub(super) fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(content_security_policy()),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn known_tags(config: &Config) -> Vec<String> {
    let mut tags: Vec<String> = config
        .stores
        .iter()
        .flat_map(|s| s.tags.iter().cloned())
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// The stores as the page shows them (without history), plus the count of open incidents.
pub(super) fn views(shared: &Shared) -> (Vec<StoreView>, usize, Arc<crate::daemon::Live>) {
    let live = shared.live();
    let (views, grouped) = view::from_daemon(shared, Accounts::Shown);
    let open = views.iter().map(|v| v.open_incidents.len()).sum::<usize>() + grouped;
    (views, open, live)
}

pub(super) fn ctx_for(shared: &Shared, config: &Config, lang: Option<Language>) -> Ctx {
    Ctx {
        lang: lang.unwrap_or(config.daemon.language),
        tz: config.daemon.timezone,
        now: shared.clock.now(),
    }
}

pub(super) fn history_since(ctx: &Ctx, config: &Config) -> DateTime<Utc> {
    crate::duration::before(ctx.now, config.daemon.history_retention)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

pub(super) fn index_page(shared: &Shared, raw: Option<&str>) -> String {
    let (mut stores, open_incidents, live) = views(shared);
    let next_sweep = stores.iter().filter_map(|v| v.next_check).min();
    let tags = known_tags(&live.config);
    let query = PageQuery::parse(raw, &tags);
    let ctx = ctx_for(shared, &live.config, query.lang);
    let history_ok = match shared
        .state
        .recent_checks(history_since(&ctx, &live.config), STRIP_LEN)
    {
        Ok(mut recent) => {
            for s in &mut stores {
                if let Some(r) = recent.remove(&s.id) {
                    s.recent = r;
                }
            }
            true
        }
        Err(e) => {
            tracing::warn!("status page: cannot read the login history: {e}");
            false
        }
    };
    render_index(&Index {
        ctx,
        stores: &stores,
        tags: &tags,
        open_incidents,
        next_sweep,
        query: &query,
        history_ok,
    })
}

pub(super) fn store_page(
    shared: &Shared,
    id: Option<&str>,
    raw: Option<&str>,
) -> (StatusCode, String) {
    let (stores, _, live) = views(shared);
    let query = PageQuery::parse(raw, &[]);
    let ctx = ctx_for(shared, &live.config, query.lang);
    let Some(mut store) = id.and_then(|id| stores.into_iter().find(|s| s.id == id)) else {
        return (
            StatusCode::NOT_FOUND,
            render_message(
                &ctx,
                "page.not_found.title",
                "page.not_found.body",
                query.lang,
            ),
        );
    };
    let facts = shared
        .stores
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&store.id)
        .and_then(|m| m.last.as_ref())
        .map(|o| o.facts.clone());
    let since = history_since(&ctx, &live.config);
    let mut history_ok = true;
    let history = shared
        .state
        .history(&store.id, since, HISTORY_ROWS.max(STRIP_LEN))
        .unwrap_or_else(|e| {
            tracing::warn!(store = %store.id, "status page: cannot read the login history: {e}");
            history_ok = false;
            Vec::new()
        });
    let incidents = shared
        .state
        .incidents(&store.id, INCIDENT_ROWS)
        .unwrap_or_else(|e| {
            tracing::warn!(store = %store.id, "status page: cannot read incidents: {e}");
            history_ok = false;
            Vec::new()
        });
    let mail = shared
        .state
        .mail_records_since(Some(&store.id), since, HISTORY_ROWS)
        .unwrap_or_else(|e| {
            tracing::warn!(store = %store.id, "status page: cannot read the security mail: {e}");
            history_ok = false;
            Vec::new()
        });
    store.recent = history.iter().take(STRIP_LEN).cloned().collect();
    let body = render_store(&Detail {
        ctx,
        store: &store,
        facts: facts.as_ref(),
        incidents: &incidents,
        history: &history,
        mail: &mail,
        lang_param: query.lang,
        history_ok,
    });
    (StatusCode::OK, body)
}

/// Off loopback without the token: a page that says how to get in (no data at all).
pub(super) fn denied(shared: &Shared, raw: Option<&str>) -> Response {
    let live = shared.live();
    let query = PageQuery::parse(raw, &[]);
    let ctx = ctx_for(shared, &live.config, query.lang);
    let mut r = html(
        StatusCode::UNAUTHORIZED,
        render_message(&ctx, "page.denied.title", "page.denied.body", query.lang),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Rendering reads SQLite: off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

pub(super) fn failed() -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        "<!doctype html><title>storeguard</title><p>internal error; see the daemon log</p>\n"
            .to_string(),
    )
}

/// `GET /`.
pub(crate) async fn index(
    access: Result<ReadAccess, Unauthorised>,
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> Response {
    if access.is_err() {
        return denied(&shared, raw.as_deref());
    }
    match blocking(move || index_page(&shared, raw.as_deref())).await {
        Some(body) => html(StatusCode::OK, body),
        None => failed(),
    }
}

/// `GET /stores/{id}`.
pub(crate) async fn store(
    access: Result<ReadAccess, Unauthorised>,
    State(shared): State<Arc<Shared>>,
    id: Result<StoreIdParam, NoSuchStore>,
    RawQuery(raw): RawQuery,
) -> Response {
    if access.is_err() {
        return denied(&shared, raw.as_deref());
    }
    let id = id.ok().map(|StoreIdParam(id)| id);
    match blocking(move || store_page(&shared, id.as_deref(), raw.as_deref())).await {
        Some((status, body)) => html(status, body),
        None => failed(),
    }
}
