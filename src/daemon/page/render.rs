//! The pages themselves: the index, a store's page, a short message page.

use super::*;

/// `GET /`: summary, filters, and one row per store grouped by marketplace.
pub fn render_index(p: &Index<'_>) -> String {
    let ctx = &p.ctx;
    let lang = ctx.lang;
    let q = p.query;
    let mut out = String::with_capacity(4096 + p.stores.len() * 4096);
    out.push_str(&head(lang, &t(lang, "page.title")));
    let _ = writeln!(
        out,
        "<header><h1>{}</h1>{}</header>",
        t(lang, "page.title"),
        lang_nav(lang, |l| q.href("/", Some(l), true))
    );

    // Summary line (over every enabled store, whatever the filters).
    let enabled: Vec<&StoreView> = p.stores.iter().filter(|s| s.enabled).collect();
    out.push_str("<p class=\"summary\" id=\"summary\">");
    let _ = write!(
        out,
        "<span class=\"total\">{}</span>",
        fill(
            lang,
            "page.summary.stores",
            &[("count", &format!("<b>{}</b>", enabled.len()))]
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
        let _ = write!(
            out,
            "<a class=\"n {}\" data-count=\"{n}\" href=\"{}\">{}</a>",
            s.class(),
            PageQuery {
                status: Some(s),
                ..PageQuery::default()
            }
            .href("/", q.lang, true),
            fill(
                lang,
                "page.summary.count",
                &[
                    ("count", &format!("<b>{n}</b>")),
                    ("status", &t(lang, s.key()))
                ]
            )
        );
    }
    let _ = write!(
        out,
        "<span class=\"sep\">·</span><span class=\"incidents\" data-count=\"{}\">{}</span>",
        p.open_incidents,
        fill(
            lang,
            "page.summary.open_incidents",
            &[("count", &format!("<b>{}</b>", p.open_incidents))]
        )
    );
    out.push_str("<span class=\"sep\">·</span><span class=\"next\">");
    match p.next_sweep {
        Some(n) => out.push_str(&fill(
            lang,
            "page.summary.next_sweep",
            &[("when", &when_due(ctx, n, true))],
        )),
        None => out.push_str(&t(lang, "page.summary.no_sweep")),
    }
    out.push_str("</span></p>\n");
    if !p.history_ok {
        let _ = writeln!(
            out,
            "<p class=\"note\">{}</p>",
            t(lang, "page.history_unavailable")
        );
    }

    // Filters: a plain GET form, so they work without script.
    out.push_str("<form class=\"filters\" method=\"get\" action=\"/\">");
    if let Some(l) = q.lang {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"lang\" value=\"{}\">",
            l.as_str()
        );
    }
    let select =
        |out: &mut String, name: &str, label: &str, options: Vec<(String, String, bool)>| {
            let _ = write!(
                out,
                "<label>{}<select name=\"{name}\"><option value=\"\">{}</option>",
                t(lang, label),
                t(lang, "page.filter.all")
            );
            for (value, words, selected) in options {
                let _ = write!(
                    out,
                    "<option value=\"{}\"{}>{}</option>",
                    esc(&value),
                    if selected { " selected" } else { "" },
                    words
                );
            }
            out.push_str("</select></label>");
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
                    esc(m.display_name()),
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
                .map(|tag| (tag.clone(), esc(tag), q.tag.as_ref() == Some(tag)))
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
    let _ = write!(
        out,
        "<label>{}<input type=\"search\" name=\"q\" value=\"{}\" maxlength=\"{MAX_SEARCH}\"></label>\
         <button type=\"submit\">{}</button>",
        t(lang, "page.filter.search"),
        esc(&q.q),
        t(lang, "page.filter.apply")
    );
    if q.is_filtered() {
        let _ = write!(
            out,
            "<a href=\"{}\">{}</a>",
            q.href("/", q.lang, false),
            t(lang, "page.filter.clear")
        );
    }
    out.push_str("</form>\n");

    // Rows, grouped by marketplace, worst first.
    let matching: Vec<&StoreView> = p.stores.iter().filter(|s| q.matches(s)).collect();
    if p.stores.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"empty\">{}</p>",
            fill(lang, "page.no_stores", &[])
        );
    } else if matching.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"empty\">{}</p>",
            t(lang, "page.filter.none")
        );
    } else if q.is_filtered() {
        let _ = writeln!(
            out,
            "<p class=\"shown\">{}</p>",
            fill(
                lang,
                "page.filter.shown",
                &[
                    ("shown", &matching.len().to_string()),
                    ("total", &p.stores.len().to_string())
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
        let _ = write!(
            out,
            "<section id=\"mp-{}\"><h2>{} <small>{}</small></h2>\n<table class=\"stores\"><thead><tr>",
            m.as_str(),
            esc(m.display_name()),
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
            let _ = write!(out, "<th class=\"{class}\">{}</th>", t(lang, key));
        }
        let _ = writeln!(
            out,
            "<th class=\"w-strip\">{}</th></tr></thead><tbody>",
            fill(lang, "page.col.strip", &[("count", &STRIP_LEN.to_string())])
        );
        for s in rows {
            store_row(&mut out, ctx, q, s);
        }
        out.push_str("</tbody></table></section>\n");
    }
    out.push_str(&footer(ctx, true));
    out
}

pub(super) fn store_row(out: &mut String, ctx: &Ctx, q: &PageQuery, s: &StoreView) {
    let lang = ctx.lang;
    let shown = s.shown();
    let _ = write!(
        out,
        "<tr id=\"store-{id}\" class=\"row {class}\" data-status=\"{status}\" data-marketplace=\"{mp}\">\
         <td class=\"name\"><a href=\"{href}\">{name}</a><div class=\"id\">{id}</div>",
        id = esc(&s.id),
        class = shown.class(),
        status = shown.as_str(),
        mp = s.marketplace.as_str(),
        href = q.href(&format!("/stores/{}", s.id), q.lang, false),
        name = esc(&s.name),
    );
    for tag in &s.tags {
        let _ = write!(out, "<span class=\"tag\">{}</span>", esc(tag));
    }
    let _ = write!(
        out,
        "</td><td class=\"account\">{}</td><td class=\"status\">{}",
        s.account.as_deref().map_or("—".to_string(), esc),
        badge(lang, shown)
    );
    if s.open_incidents > 0 {
        let _ = write!(
            out,
            "<div class=\"rel\">{}</div>",
            fill(
                lang,
                "page.summary.open_incidents",
                &[("count", &s.open_incidents.to_string())]
            )
        );
    }
    let _ = writeln!(
        out,
        "</td><td class=\"findings\">{}</td><td class=\"expiry\">{}</td><td class=\"last\">{}</td><td>{}</td></tr>",
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
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(&head(
        lang,
        &fill(lang, "page.store_title", &[("store", &esc(&s.name))]),
    ));
    let path = format!("/stores/{}", s.id);
    let _ = writeln!(
        out,
        "<header><a href=\"{}\">{}</a>{}</header>",
        only_lang.href("/", p.lang_param, false),
        t(lang, "page.back"),
        lang_nav(lang, |l| only_lang.href(&path, Some(l), false))
    );
    let _ = write!(
        out,
        "<h1 id=\"store-{id}\" data-status=\"{status}\">{name} {badge}</h1>\n\
         <p class=\"id\">{mp} · {id}",
        id = esc(&s.id),
        status = shown.as_str(),
        name = esc(&s.name),
        badge = badge(lang, shown),
        mp = esc(s.marketplace.display_name()),
    );
    for tag in &s.tags {
        let _ = write!(out, " <span class=\"tag\">{}</span>", esc(tag));
    }
    out.push_str("</p>\n");

    // Findings of the last check, each with what to do.
    let _ = writeln!(out, "<h2>{}</h2>", t(lang, "page.store.now"));
    if s.status.is_none() {
        let _ = writeln!(
            out,
            "<p class=\"note\">{}</p>",
            t(lang, "page.store.pending")
        );
    } else if s.findings.is_empty() {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", t(lang, "page.store.ok"));
    } else {
        out.push_str("<ul class=\"findings\">");
        for f in &s.findings {
            let _ = write!(
                out,
                "<li class=\"finding {}\"><b>{}</b> {}",
                f.kind.as_str(),
                t(lang, &format!("finding.{}", f.kind.as_str())),
                badge(lang, Shown::status(f.kind.status()))
            );
            if !f.detail.is_empty() {
                let _ = write!(
                    out,
                    "<span class=\"detail\">{} {}</span>",
                    t(lang, "alert.label.detail"),
                    esc(&mask_tax_ids(&f.detail))
                );
            }
            let specific = format!("alert.todo.{}.{}", f.kind.as_str(), s.marketplace.as_str());
            let key = if i18n::lookup(lang, &specific).is_none() {
                format!("alert.todo.{}", f.kind.as_str())
            } else {
                specific
            };
            if i18n::lookup(lang, &key).is_some() {
                let _ = write!(
                    out,
                    "<p class=\"todo\">{} {}</p>",
                    t(lang, "alert.label.todo"),
                    fill(
                        lang,
                        &key,
                        &[
                            ("marketplace", &esc(s.marketplace.display_name())),
                            ("store_id", &esc(&s.id)),
                        ]
                    )
                );
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>\n");
    }

    // Account facts as last seen.
    let _ = writeln!(out, "<h2>{}</h2>", t(lang, "page.store.facts"));
    out.push_str("<dl class=\"facts\">");
    let mut fact = |key: &str, value: String| {
        let _ = write!(out, "<dt>{}</dt><dd>{value}</dd>", t(lang, key));
    };
    let dash = || "—".to_string();
    let masked = |v: &str| esc(&mask_tax_ids(v));
    let facts = p.facts;
    fact(
        "page.fact.account",
        if p.show_accounts {
            s.account.as_deref().map_or_else(dash, esc)
        } else {
            t(lang, "page.fact.hidden")
        },
    );
    fact("page.fact.expires", expiry_cell(ctx, s.expires_at));
    let list = |v: &[String]| {
        if v.is_empty() {
            dash()
        } else {
            v.iter().map(|x| masked(x)).collect::<Vec<_>>().join(", ")
        }
    };
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
            .map_or_else(dash, esc),
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
            .map_or_else(dash, |c| c.to_string()),
    );
    fact(
        "page.fact.latency",
        s.latency_ms.map_or_else(dash, |ms| format!("{ms} ms")),
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
                v.push_str(&format!(
                    " <span class=\"rel\">{}</span>",
                    t(lang, "page.fact.backoff")
                ));
            }
            v
        }),
    );
    out.push_str("</dl>\n");

    // Incidents.
    let _ = writeln!(out, "<h2>{}</h2>", t(lang, "page.store.incidents"));
    if p.incidents.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\">{}</p>",
            t(lang, "page.incident.none")
        );
    } else {
        out.push_str("<table class=\"incidents\"><thead><tr>");
        for key in [
            "page.incident.finding",
            "page.incident.severity",
            "page.incident.opened",
            "page.incident.resolved",
            "page.incident.detail",
        ] {
            let _ = write!(out, "<th>{}</th>", t(lang, key));
        }
        out.push_str("</tr></thead><tbody>\n");
        for i in p.incidents {
            let sev = match i.severity.as_str() {
                "critical" => Shown::Critical,
                "warning" => Shown::Warning,
                _ => Shown::Unknown,
            };
            let resolved = match i.resolved_at {
                Some(r) => format!(
                    "{} <span class=\"rel\">{}</span>",
                    when(ctx, r, false),
                    fill(
                        lang,
                        "page.incident.lasted",
                        &[(
                            "duration",
                            &esc(&crate::alert::render::human_duration(lang, r - i.opened_at))
                        )]
                    )
                ),
                None => format!("<b>{}</b>", t(lang, "page.incident.open")),
            };
            let _ = writeln!(
                out,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{resolved}</td><td class=\"detail\">{}</td></tr>",
                if i.resolved_at.is_none() {
                    "open"
                } else {
                    "resolved"
                },
                finding_words(lang, &i.finding),
                badge(lang, sev),
                when(ctx, i.opened_at, false),
                esc(&mask_tax_ids(&i.detail))
            );
        }
        out.push_str("</tbody></table>\n");
    }

    // Login history.
    let _ = writeln!(out, "<h2>{}</h2>", t(lang, "page.store.history"));
    if !p.history_ok {
        let _ = writeln!(
            out,
            "<p class=\"note\">{}</p>",
            t(lang, "page.history_unavailable")
        );
    }
    out.push_str(&strip(ctx, p.history, true));
    if p.history.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\">{}</p>",
            t(lang, "page.history.none")
        );
    } else {
        out.push_str("<table class=\"history\"><thead><tr>");
        let mut keys = vec![
            "page.history.time",
            "page.col.status",
            "page.col.findings",
            "page.history.latency",
            "page.fact.egress",
        ];
        if p.show_accounts {
            keys.push("page.col.account");
        }
        for key in keys {
            let _ = write!(out, "<th>{}</th>", t(lang, key));
        }
        out.push_str("</tr></thead><tbody>\n");
        for r in p.history.iter().take(HISTORY_ROWS) {
            let st = Shown::status(r.status);
            let findings = if r.findings.is_empty() {
                "—".to_string()
            } else {
                r.findings
                    .iter()
                    .map(|f| finding_words(lang, f))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{findings}</td><td>{} ms</td><td>{}</td>",
                esc(&full_time(r.at, ctx.tz)),
                badge(lang, st),
                r.latency_ms,
                r.egress.as_deref().map_or_else(dash, masked)
            );
            if p.show_accounts {
                let _ = write!(
                    out,
                    "<td>{}</td>",
                    r.account.as_deref().map_or_else(dash, esc)
                );
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n");
        let _ = writeln!(
            out,
            "<p class=\"note\">{}</p>",
            fill(
                lang,
                "page.history.more",
                &[
                    ("count", &HISTORY_ROWS.to_string()),
                    ("store_id", &esc(&s.id))
                ]
            )
        );
    }
    out.push_str(&footer(ctx, true));
    out
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
    let _ = write!(
        out,
        "<header><a href=\"{}\">{}</a></header>\n<h1>{}</h1>\n<p>{}</p>\n",
        PageQuery::default().href("/", lang_param, false),
        t(lang, "page.back"),
        t(lang, title_key),
        fill(lang, body_key, &[])
    );
    out.push_str(&footer(ctx, false));
    out
}
