//! The pages themselves: the index, a store's page, a short message page.

use super::*;
use crate::{html, markup};

/// `GET /`: summary, filters, and one row per store grouped by marketplace.
pub fn render_index(p: &Index<'_>) -> String {
    let ctx = &p.ctx;
    let lang = ctx.lang;
    let q = p.query;
    let mut out = Html::with_capacity(4096 + p.stores.len() * 4096);
    out.push(&head(lang, &t(lang, "page.title")));
    html!(
        out,
        "<header><h1>{}</h1>{}</header>\n",
        t(lang, "page.title"),
        lang_nav(lang, |l| q.href("/", Some(l), true))
    );

    // Summary line (over every enabled store, whatever the filters).
    let enabled: Vec<&StoreView> = p.stores.iter().filter(|s| s.enabled).collect();
    out.raw_str("<p class=\"summary\" id=\"summary\">");
    html!(
        out,
        "<span class=\"total\">{}</span>",
        fill(
            lang,
            if enabled.len() == 1 {
                "page.summary.store"
            } else {
                "page.summary.stores"
            },
            &[("count", bold(enabled.len()))]
        )
    );
    for s in [
        Shown::Ok,
        Shown::Warning,
        Shown::Critical,
        Shown::Unknown,
        Shown::Pending,
    ] {
        let n = enabled.iter().filter(|v| v.shown() == s).count();
        if s == Shown::Pending && n == 0 {
            continue;
        }
        html!(
            out,
            "<a class=\"n {}\" data-count=\"{}\" href=\"{}\">{}</a>",
            s.class(),
            n,
            PageQuery {
                status: Some(s),
                ..PageQuery::default()
            }
            .href("/", q.lang, true),
            fill(
                lang,
                "page.summary.count",
                &[("count", bold(n)), ("status", t(lang, s.key()))]
            )
        );
    }
    html!(
        out,
        "<span class=\"sep\">·</span><span class=\"incidents\" data-count=\"{}\">{}</span>",
        p.open_incidents,
        fill(
            lang,
            "page.summary.open_incidents",
            &[("count", bold(p.open_incidents))]
        )
    );
    out.raw_str("<span class=\"sep\">·</span><span class=\"next\">");
    match p.next_sweep {
        Some(n) => out.push(&fill(
            lang,
            "page.summary.next_sweep",
            &[("when", when_due(ctx, n, true))],
        )),
        None => out.push(&t(lang, "page.summary.no_sweep")),
    };
    out.raw_str("</span></p>\n");
    if !p.history_ok {
        html!(
            out,
            "<p class=\"note\">{}</p>\n",
            t(lang, "page.history_unavailable")
        );
    }

    // Filters: a plain GET form, so they work without script.
    out.raw_str("<form class=\"filters\" method=\"get\" action=\"/\">");
    if let Some(l) = q.lang {
        html!(
            out,
            "<input type=\"hidden\" name=\"lang\" value=\"{}\">",
            l.as_str()
        );
    }
    let select = |out: &mut Html, name: &str, label: &str, options: Vec<(String, Html, bool)>| {
        html!(
            out,
            "<label>{}<select name=\"{}\"><option value=\"\">{}</option>",
            t(lang, label),
            name,
            t(lang, "page.filter.all")
        );
        for (value, words, selected) in options {
            html!(
                out,
                "<option value=\"{}\"{}>{}</option>",
                value,
                Html::raw(if selected { " selected" } else { "" }),
                words
            );
        }
        out.raw_str("</select></label>");
    };
    select(
        &mut out,
        "marketplace",
        "page.filter.marketplace",
        Marketplace::ALL
            .iter()
            .map(|m| {
                (
                    m.as_str().to_string(),
                    Html::text(m.display_name()),
                    q.marketplace == Some(*m),
                )
            })
            .collect(),
    );
    if !p.tags.is_empty() {
        select(
            &mut out,
            "tag",
            "page.filter.tag",
            p.tags
                .iter()
                .map(|tag| (tag.clone(), Html::text(tag), q.tag.as_ref() == Some(tag)))
                .collect(),
        );
    }
    select(
        &mut out,
        "status",
        "page.filter.status",
        Shown::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_string(),
                    t(lang, s.key()),
                    q.status == Some(*s),
                )
            })
            .collect(),
    );
    html!(
        out,
        "<label>{}<input type=\"search\" name=\"q\" value=\"{}\" maxlength=\"{}\"></label>\
         <button type=\"submit\">{}</button>",
        t(lang, "page.filter.search"),
        q.q,
        MAX_SEARCH,
        t(lang, "page.filter.apply")
    );
    if q.is_filtered() {
        html!(
            out,
            "<a href=\"{}\">{}</a>",
            q.href("/", q.lang, false),
            t(lang, "page.filter.clear")
        );
    }
    out.raw_str("</form>\n");

    // Rows, grouped by marketplace, worst first.
    let matching: Vec<&StoreView> = p.stores.iter().filter(|s| q.matches(s)).collect();
    if p.stores.is_empty() {
        html!(
            out,
            "<p class=\"note\" id=\"empty\">{}</p>\n",
            fill(lang, "page.no_stores", &[])
        );
    } else if matching.is_empty() {
        html!(
            out,
            "<p class=\"note\" id=\"empty\">{}</p>\n",
            t(lang, "page.filter.none")
        );
    } else if q.is_filtered() {
        html!(
            out,
            "<p class=\"shown\">{}</p>\n",
            fill(
                lang,
                "page.filter.shown",
                &[
                    ("shown", num(matching.len())),
                    ("total", num(p.stores.len()))
                ]
            )
        );
    }
    for m in Marketplace::ALL {
        let mut rows: Vec<&StoreView> = matching
            .iter()
            .copied()
            .filter(|s| s.marketplace == m)
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by_key(|s| s.shown().rank());
        html!(
            out,
            "<section id=\"mp-{}\"><h2>{} <small>{}</small></h2>\n<table class=\"stores\"><thead><tr>",
            m.as_str(),
            m.display_name(),
            rows.len()
        );
        for (class, key) in [
            ("w-store", "page.col.store"),
            ("w-account", "page.col.account"),
            ("w-status", "page.col.status"),
            ("w-findings", "page.col.findings"),
            ("w-expiry", "page.col.expiry"),
            ("w-last", "page.col.last_check"),
        ] {
            html!(out, "<th class=\"{}\">{}</th>", class, t(lang, key));
        }
        html!(
            out,
            "<th class=\"w-strip\">{}</th></tr></thead><tbody>\n",
            fill(lang, "page.col.strip", &[("count", num(STRIP_LEN))])
        );
        for s in rows {
            store_row(&mut out, ctx, q, s);
        }
        out.raw_str("</tbody></table></section>\n");
    }
    out.push(&footer(ctx, true));
    out.into_string()
}

pub(super) fn store_row(out: &mut Html, ctx: &Ctx, q: &PageQuery, s: &StoreView) {
    let lang = ctx.lang;
    let shown = s.shown();
    html!(
        out,
        "<tr id=\"store-{}\" class=\"row {}\" data-status=\"{}\" data-marketplace=\"{}\">\
         <td class=\"name\"><a href=\"{}\">{}</a><div class=\"id\">{}</div>",
        s.id,
        shown.class(),
        shown.as_str(),
        s.marketplace.as_str(),
        q.href(&format!("/stores/{}", s.id), q.lang, false),
        s.name,
        s.id
    );
    for tag in &s.tags {
        html!(out, "<span class=\"tag\">{}</span>", tag);
    }
    html!(
        out,
        "</td><td class=\"account\">{}</td><td class=\"status\">{}",
        s.account.as_deref().map_or_else(dash, Html::text),
        badge(lang, shown)
    );
    if !s.open_incidents.is_empty() {
        html!(
            out,
            "<div class=\"rel\">{}</div>",
            fill(
                lang,
                "page.summary.open_incidents",
                &[("count", num(s.open_incidents.len()))]
            )
        );
    }
    html!(
        out,
        "</td><td class=\"findings\">{}</td><td class=\"expiry\">{}</td><td class=\"last\">{}</td><td>{}</td></tr>\n",
        findings_list(lang, &s.findings),
        expiry_cell(ctx, s.expires_at),
        s.last_check
            .map_or_else(|| t(lang, "page.never"), |l| when(ctx, l, true)),
        strip(ctx, &s.recent, false)
    );
}

/// `GET /stores/{id}`: findings and what to do, account facts as last seen, incidents, history.
pub fn render_store(p: &Detail<'_>) -> String {
    let ctx = &p.ctx;
    let lang = ctx.lang;
    let s = p.store;
    let shown = s.shown();
    let only_lang = PageQuery::default();
    let mut out = Html::with_capacity(16 * 1024);
    out.push(&head(
        lang,
        &fill(lang, "page.store_title", &[("store", Html::text(&s.name))]),
    ));
    let path = format!("/stores/{}", s.id);
    html!(
        out,
        "<header><a href=\"{}\">{}</a>{}</header>\n",
        only_lang.href("/", p.lang_param, false),
        t(lang, "page.back"),
        lang_nav(lang, |l| only_lang.href(&path, Some(l), false))
    );
    html!(
        out,
        "<h1 id=\"store-{}\" data-status=\"{}\">{} {}</h1>\n<p class=\"id\">{} · {}",
        s.id,
        shown.as_str(),
        s.name,
        badge(lang, shown),
        s.marketplace.display_name(),
        s.id
    );
    for tag in &s.tags {
        html!(out, " <span class=\"tag\">{}</span>", tag);
    }
    out.raw_str("</p>\n");

    findings_section(&mut out, ctx, s);
    facts_section(&mut out, ctx, s, p.facts);
    incidents_section(&mut out, ctx, p.incidents);
    mail_section(&mut out, ctx, p);
    history_section(&mut out, ctx, p);
    out.push(&footer(ctx, true));
    out.into_string()
}

/// Findings of the last check, each with what to do.
fn findings_section(out: &mut Html, ctx: &Ctx, s: &StoreView) {
    let lang = ctx.lang;
    html!(out, "<h2>{}</h2>\n", t(lang, "page.store.now"));
    if s.status.is_none() {
        html!(
            out,
            "<p class=\"note\">{}</p>\n",
            t(lang, "page.store.pending")
        );
        return;
    }
    if s.findings.is_empty() {
        html!(out, "<p class=\"note\">{}</p>\n", t(lang, "page.store.ok"));
        return;
    }
    out.raw_str("<ul class=\"findings\">");
    for f in &s.findings {
        html!(
            out,
            "<li class=\"finding {}\"><b>{}</b> {}",
            f.kind.as_str(),
            t(lang, &format!("finding.{}", f.kind.as_str())),
            badge(lang, Shown::status(f.kind.status()))
        );
        if !f.detail.is_empty() {
            html!(
                out,
                "<span class=\"detail\">{} {}</span>",
                t(lang, "alert.label.detail"),
                mask_tax_ids(&f.detail)
            );
        }
        let specific = format!("alert.todo.{}.{}", f.kind.as_str(), s.marketplace.as_str());
        let key = if i18n::lookup(lang, &specific).is_none() {
            format!("alert.todo.{}", f.kind.as_str())
        } else {
            specific
        };
        if i18n::lookup(lang, &key).is_some() {
            html!(
                out,
                "<p class=\"todo\">{} {}</p>",
                t(lang, "alert.label.todo"),
                fill(
                    lang,
                    &key,
                    &[
                        ("marketplace", Html::text(s.marketplace.display_name())),
                        ("store_id", Html::text(&s.id)),
                    ]
                )
            );
        }
        out.raw_str("</li>");
    }
    out.raw_str("</ul>\n");
}

/// Account facts as last seen.
fn facts_section(out: &mut Html, ctx: &Ctx, s: &StoreView, facts: Option<&Facts>) {
    let lang = ctx.lang;
    html!(out, "<h2>{}</h2>\n", t(lang, "page.store.facts"));
    out.raw_str("<dl class=\"facts\">");
    let mut fact = |key: &str, value: Html| {
        html!(out, "<dt>{}</dt><dd>{}</dd>", t(lang, key), value);
    };
    let masked = |v: &str| Html::text(&mask_tax_ids(v));
    let list = |v: &[String]| {
        if v.is_empty() {
            dash()
        } else {
            Html::join(v.iter().map(|x| mask_tax_ids(x)), ", ")
        }
    };
    fact(
        "page.fact.account",
        s.account.as_deref().map_or_else(dash, Html::text),
    );
    fact("page.fact.expires", expiry_cell(ctx, s.expires_at));
    let lifetime = s
        .marketplace
        .spec()
        .reauthorize_after
        .and_then(|d| chrono::Duration::from_std(d).ok());
    if let (Some(at), Some(lifetime)) = (facts.and_then(|f| f.authorized_at), lifetime) {
        let due = at + lifetime;
        let mut v = expiry_cell(ctx, Some(due));
        if facts.is_some_and(|f| f.authorized_inferred) {
            html!(
                v,
                " <span class=\"rel\">{}</span>",
                fill(lang, "page.fact.inferred", &[])
            );
        }
        fact("page.fact.reauthorize", v);
    }
    fact(
        "page.fact.roles",
        facts.map_or_else(dash, |f| list(&f.roles)),
    );
    fact(
        "page.fact.marketplaces",
        facts.map_or_else(dash, |f| list(&f.marketplaces)),
    );
    fact(
        "page.fact.store_name",
        facts
            .and_then(|f| f.store_name.as_deref())
            .map_or_else(dash, Html::text),
    );
    fact(
        "page.fact.premium",
        facts
            .and_then(|f| f.premium.as_deref())
            .map_or_else(dash, masked),
    );
    fact(
        "page.fact.egress",
        facts
            .and_then(|f| f.egress.as_deref())
            .map_or_else(dash, masked),
    );
    fact(
        "page.fact.http_status",
        facts
            .and_then(|f| f.http_status)
            .map_or_else(dash, |c| markup!("{}", c)),
    );
    fact(
        "page.fact.latency",
        s.latency_ms.map_or_else(dash, |ms| markup!("{} ms", ms)),
    );
    fact(
        "page.fact.last_check",
        s.last_check
            .map_or_else(|| t(lang, "page.never"), |l| when(ctx, l, false)),
    );
    fact(
        "page.fact.next_check",
        s.next_check.map_or_else(dash, |n| {
            let mut v = when_due(ctx, n, false);
            if s.backing_off {
                html!(
                    v,
                    " <span class=\"rel\">{}</span>",
                    t(lang, "page.fact.backoff")
                );
            }
            v
        }),
    );
    out.raw_str("</dl>\n");
}

fn incidents_section(out: &mut Html, ctx: &Ctx, incidents: &[IncidentRow]) {
    let lang = ctx.lang;
    html!(out, "<h2>{}</h2>\n", t(lang, "page.store.incidents"));
    if incidents.is_empty() {
        html!(
            out,
            "<p class=\"note\">{}</p>\n",
            t(lang, "page.incident.none")
        );
        return;
    }
    out.raw_str("<table class=\"incidents\"><thead><tr>");
    for key in [
        "page.incident.finding",
        "page.incident.severity",
        "page.incident.opened",
        "page.incident.resolved",
        "page.incident.detail",
    ] {
        html!(out, "<th>{}</th>", t(lang, key));
    }
    out.raw_str("</tr></thead><tbody>\n");
    for i in incidents {
        let sev = match i.severity.as_str() {
            "critical" => Shown::Critical,
            "warning" => Shown::Warning,
            _ => Shown::Unknown,
        };
        let resolved = match i.resolved_at {
            Some(r) => markup!(
                "{} <span class=\"rel\">{}</span>",
                when(ctx, r, false),
                fill(
                    lang,
                    "page.incident.lasted",
                    &[(
                        "duration",
                        Html::text(&crate::alert::render::human_duration(lang, r - i.opened_at))
                    )]
                )
            ),
            None => markup!("<b>{}</b>", t(lang, "page.incident.open")),
        };
        html!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"detail\">{}</td></tr>\n",
            if i.resolved_at.is_none() {
                "open"
            } else {
                "resolved"
            },
            finding_words(lang, &i.finding),
            badge(lang, sev),
            when(ctx, i.opened_at, false),
            resolved,
            mask_tax_ids(&i.detail)
        );
    }
    out.raw_str("</tbody></table>\n");
}

/// Security mail from the store's mailbox, as login records.
fn mail_section(out: &mut Html, ctx: &Ctx, p: &Detail<'_>) {
    if p.mail.is_empty() {
        return;
    }
    let lang = ctx.lang;
    html!(out, "<h2>{}</h2>\n", t(lang, "page.store.mail"));
    out.raw_str("<table class=\"history mail\"><thead><tr>");
    for key in [
        "page.history.time",
        "page.mail.event",
        "page.mail.from",
        "page.mail.facts",
    ] {
        html!(out, "<th>{}</th>", t(lang, key));
    }
    out.raw_str("</tr></thead><tbody>\n");
    for m in p.mail {
        let mut event = finding_words(lang, &m.event);
        if let Some(f) = m.finding.as_deref().filter(|f| *f != m.event) {
            event.raw_str(" → ");
            event.push(&finding_words(lang, f));
        }
        let facts = if m.facts.is_empty() {
            dash()
        } else {
            let joined: Vec<String> = m.facts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            Html::text(&joined.join(" · "))
        };
        html!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{} ({})</td><td class=\"detail\">{}</td></tr>\n",
            if m.verdict == "authenticated" {
                "mail-ok"
            } else {
                "mail-doubt"
            },
            full_time(m.at, ctx.tz),
            event,
            m.domain,
            m.verdict,
            facts
        );
    }
    out.raw_str("</tbody></table>\n");
}

/// Login history.
fn history_section(out: &mut Html, ctx: &Ctx, p: &Detail<'_>) {
    let lang = ctx.lang;
    html!(out, "<h2>{}</h2>\n", t(lang, "page.store.history"));
    if !p.history_ok {
        html!(
            out,
            "<p class=\"note\">{}</p>\n",
            t(lang, "page.history_unavailable")
        );
    }
    out.push(&strip(ctx, p.history, true));
    if p.history.is_empty() {
        html!(
            out,
            "<p class=\"note\">{}</p>\n",
            t(lang, "page.history.none")
        );
        return;
    }
    out.raw_str("<table class=\"history\"><thead><tr>");
    for key in [
        "page.history.time",
        "page.col.status",
        "page.col.findings",
        "page.history.latency",
        "page.fact.egress",
        "page.col.account",
    ] {
        html!(out, "<th>{}</th>", t(lang, key));
    }
    out.raw_str("</tr></thead><tbody>\n");
    for r in p.history.iter().take(HISTORY_ROWS) {
        let findings = if r.findings.is_empty() {
            dash()
        } else {
            let mut h = Html::new();
            for (i, f) in r.findings.iter().enumerate() {
                if i > 0 {
                    h.raw_str("; ");
                }
                h.push(&finding_words(lang, f));
            }
            h
        };
        html!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td></tr>\n",
            full_time(r.at, ctx.tz),
            badge(lang, Shown::status(r.status)),
            findings,
            r.latency_ms,
            r.egress
                .as_deref()
                .map_or_else(dash, |e| Html::text(&mask_tax_ids(e))),
            r.account.as_deref().map_or_else(dash, Html::text)
        );
    }
    out.raw_str("</tbody></table>\n");
    html!(
        out,
        "<p class=\"note\">{}</p>\n",
        fill(
            lang,
            "page.history.more",
            &[
                ("count", num(HISTORY_ROWS)),
                ("store_id", Html::text(&p.store.id))
            ]
        )
    );
}

/// A small page with a title and one paragraph (not found, token needed).
pub fn render_message(
    ctx: &Ctx,
    title_key: &str,
    body_key: &str,
    lang_param: Option<Language>,
) -> String {
    let lang = ctx.lang;
    let mut out = head(lang, &t(lang, title_key));
    html!(
        out,
        "<header><a href=\"{}\">{}</a></header>\n<h1>{}</h1>\n<p>{}</p>\n",
        PageQuery::default().href("/", lang_param, false),
        t(lang, "page.back"),
        t(lang, title_key),
        fill(lang, body_key, &[])
    );
    out.push(&footer(ctx, false));
    out.into_string()
}
