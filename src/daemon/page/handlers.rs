//! Handlers: gather plain data from the daemon, render, answer with safe headers.

use super::*;

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

/// The stores as the page shows them (without history), plus open incidents and next sweep.
pub(super) fn views(
    shared: &Shared,
    show_accounts: bool,
) -> (
    Vec<StoreView>,
    usize,
    Option<DateTime<Utc>>,
    Arc<crate::daemon::Live>,
) {
    let live = shared.live();
    let now = shared.clock.now();
    let mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
    let views: Vec<StoreView> = live
        .config
        .stores
        .iter()
        .map(|s| {
            let m = mem.get(&s.id);
            let last = m.and_then(|m| m.last.as_ref());
            StoreView {
                id: s.id.clone(),
                name: s.name.clone(),
                marketplace: s.marketplace,
                tags: s.tags.clone(),
                enabled: s.enabled,
                status: last.map(|o| o.status),
                findings: last.map(|o| o.findings.clone()).unwrap_or_default(),
                account: show_accounts
                    .then(|| {
                        last.and_then(|o| o.facts.account.clone())
                            .or_else(|| s.account.clone())
                    })
                    .flatten(),
                expires_at: last.and_then(|o| o.facts.expires_at),
                last_check: last.map(|o| o.checked_at),
                next_check: m
                    .and_then(|m| m.next_check(s, live.config.daemon.timezone, now))
                    .filter(|_| s.enabled),
                backing_off: m
                    .and_then(|m| m.backoff.until)
                    .is_some_and(|u| u > now && s.enabled),
                latency_ms: last.map(|o| o.facts.latency_ms),
                open_incidents: m.map_or(0, |m| m.health.open.len()),
                recent: Vec::new(),
            }
        })
        .collect();
    let grouped: usize = mem
        .iter()
        .filter(|(k, _)| k.starts_with(crate::event::GROUP_PREFIX))
        .map(|(_, m)| m.health.open.len())
        .sum();
    drop(mem);
    let open = views.iter().map(|v| v.open_incidents).sum::<usize>() + grouped;
    let next = views.iter().filter_map(|v| v.next_check).min();
    (views, open, next, live)
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

pub(super) fn index_page(shared: &Shared, raw: Option<&str>, show_accounts: bool) -> String {
    let (mut stores, open_incidents, next_sweep, live) = views(shared, show_accounts);
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
    if !show_accounts {
        for s in &mut stores {
            for r in &mut s.recent {
                r.account = None;
            }
        }
    }
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
    show_accounts: bool,
) -> (StatusCode, String) {
    let (stores, _, _, live) = views(shared, show_accounts);
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
        .map(|o| {
            let mut f = o.facts.clone();
            if !show_accounts {
                f.account = None;
            }
            f
        });
    let since = history_since(&ctx, &live.config);
    let mut history_ok = true;
    let mut history = shared
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
    if !show_accounts {
        for r in &mut history {
            r.account = None;
        }
    }
    store.recent = history.iter().take(STRIP_LEN).cloned().collect();
    let body = render_store(&Detail {
        ctx,
        store: &store,
        facts: facts.as_ref(),
        incidents: &incidents,
        history: &history,
        show_accounts,
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
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if !crate::daemon::api::read_allowed(&shared, &headers) {
        return denied(&shared, raw.as_deref());
    }
    // Reads need no token only on loopback; off loopback this request carries the token.
    let show_accounts = true;
    match blocking(move || index_page(&shared, raw.as_deref(), show_accounts)).await {
        Some(body) => html(StatusCode::OK, body),
        None => failed(),
    }
}

/// `GET /stores/{id}`.
pub(crate) async fn store(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if !crate::daemon::api::read_allowed(&shared, &headers) {
        return denied(&shared, raw.as_deref());
    }
    let id = id.ok().map(|Path(id)| id).filter(|id| id.len() <= 64);
    let show_accounts = true;
    match blocking(move || store_page(&shared, id.as_deref(), raw.as_deref(), show_accounts)).await
    {
        Some((status, body)) => html(status, body),
        None => failed(),
    }
}
