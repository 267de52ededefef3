//! Small HTML helpers: escaping, words from the catalogues, times, badges, strips.

use super::*;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Catalogue text, escaped.
pub(super) fn t(lang: Language, key: &str) -> String {
    esc(i18n::text(lang, key))
}

/// Catalogue text with `{name}` placeholders filled in one pass by `args`, which are HTML
/// already (the caller escapes what it passes). Text between backticks becomes `<code>`.
pub(super) fn fill(lang: Language, key: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, part) in i18n::text(lang, key).split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
        }
        let mut rest = part;
        while let Some(open) = rest.find('{') {
            out.push_str(&esc(&rest[..open]));
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    let name = &after[..close];
                    match args.iter().find(|(n, _)| *n == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&esc(&format!("{{{name}}}"))),
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str(&esc(&rest[open..]));
                    rest = "";
                }
            }
        }
        out.push_str(&esc(rest));
        if i % 2 == 1 {
            out.push_str("</code>");
        }
    }
    out
}

pub(super) fn finding_words(lang: Language, kind: &str) -> String {
    match FindingKind::parse(kind) {
        Some(k) => t(lang, &format!("finding.{}", k.as_str())),
        None => esc(kind),
    }
}

pub(super) fn full_time(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(super) fn date(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d").to_string()
}

/// `<time>` with the local time and how long ago or how soon. `short` leaves out the date
/// when it is today (the full time is in the tooltip).
pub(super) fn when(ctx: &Ctx, t: DateTime<Utc>, short: bool) -> String {
    let duration = |d| esc(&crate::alert::render::human_duration(ctx.lang, d));
    let rel = if t <= ctx.now {
        fill(
            ctx.lang,
            "page.ago",
            &[("duration", &duration(ctx.now - t))],
        )
    } else {
        fill(ctx.lang, "page.in", &[("duration", &duration(t - ctx.now))])
    };
    time_tag(ctx, t, short, &rel)
}

/// Like [`when`] for a time something is due: a time already passed reads "due now".
pub(super) fn when_due(ctx: &Ctx, at: DateTime<Utc>, short: bool) -> String {
    if at <= ctx.now {
        time_tag(ctx, at, short, &t(ctx.lang, "page.due_now"))
    } else {
        when(ctx, at, short)
    }
}

pub(super) fn time_tag(ctx: &Ctx, t: DateTime<Utc>, short: bool, rel: &str) -> String {
    let local = t.with_timezone(&ctx.tz);
    let shown = if short && local.date_naive() == ctx.now.with_timezone(&ctx.tz).date_naive() {
        local.format("%H:%M:%S").to_string()
    } else {
        full_time(t, ctx.tz)
    };
    format!(
        "<time datetime=\"{}\" title=\"{}\">{shown}</time> <span class=\"rel\">{rel}</span>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        full_time(t, ctx.tz)
    )
}

/// Whole calendar days from `now` to `t` in the daemon's timezone.
pub(super) fn days_until(ctx: &Ctx, t: DateTime<Utc>) -> i64 {
    let a = ctx.now.with_timezone(&ctx.tz).date_naive();
    let b = t.with_timezone(&ctx.tz).date_naive();
    (b - a).num_days()
}

/// "in 12 days" (or "today", "expired 3 days ago") with the date: the words and a CSS class.
pub fn expiry_words(ctx: &Ctx, t: DateTime<Utc>) -> (String, &'static str) {
    let days = days_until(ctx, t);
    let n = days.abs().to_string();
    let (key, class) = match days {
        d if d < -1 => ("page.expiry.ago_days", "gone"),
        -1 => ("page.expiry.ago_day", "gone"),
        0 if t <= ctx.now => ("page.expiry.expired_today", "gone"),
        0 => ("page.expiry.today", "soon"),
        1 => ("page.expiry.in_day", "soon"),
        d if d <= 14 => ("page.expiry.in_days", "soon"),
        _ => ("page.expiry.in_days", ""),
    };
    (fill(ctx.lang, key, &[("n", &n)]), class)
}

pub(super) fn expiry_cell(ctx: &Ctx, t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "<span class=\"rel\">—</span>".to_string(),
        Some(t) => {
            let (words, class) = expiry_words(ctx, t);
            format!(
                "<span class=\"expiry {class}\">{words}</span> <span class=\"date\">{}</span>",
                date(t, ctx.tz)
            )
        }
    }
}

pub(super) fn badge(lang: Language, s: Shown) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        s.class(),
        t(lang, s.key())
    )
}

pub(super) fn findings_list(lang: Language, findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "<span class=\"rel\">—</span>".to_string();
    }
    let mut out = String::from("<ul class=\"findings\">");
    for f in findings {
        let _ = write!(
            out,
            "<li class=\"finding {}\"><b>{}</b>",
            f.kind.as_str(),
            t(lang, &format!("finding.{}", f.kind.as_str()))
        );
        if !f.detail.is_empty() {
            let _ = write!(
                out,
                "<span class=\"detail\">{}</span>",
                esc(&mask_tax_ids(&f.detail))
            );
        }
        out.push_str("</li>");
    }
    out.push_str("</ul>");
    out
}

/// The strip of the last [`STRIP_LEN`] checks, oldest on the left; hovering a cell shows its
/// time, status and findings.
pub(super) fn strip(ctx: &Ctx, recent: &[CheckRow], big: bool) -> String {
    let shown: Vec<&CheckRow> = recent.iter().take(STRIP_LEN).collect();
    let mut out = String::with_capacity(STRIP_LEN * 64);
    let _ = write!(
        out,
        "<div class=\"strip{}\" aria-label=\"{}\">",
        if big { " big" } else { "" },
        fill(
            ctx.lang,
            "page.col.strip",
            &[("count", &STRIP_LEN.to_string())]
        )
    );
    for _ in shown.len()..STRIP_LEN {
        out.push_str("<span class=\"c\"></span>");
    }
    for r in shown.iter().rev() {
        let s = Shown::status(r.status);
        let mut title = format!(
            "{} · {}",
            full_time(r.at, ctx.tz),
            i18n::text(ctx.lang, s.key())
        );
        for f in &r.findings {
            title.push_str(" · ");
            title.push_str(&match FindingKind::parse(f) {
                Some(k) => i18n::text(ctx.lang, &format!("finding.{}", k.as_str())).to_string(),
                None => f.clone(),
            });
        }
        let _ = write!(
            out,
            "<span class=\"c {}\" title=\"{}\"></span>",
            s.class(),
            esc(&title)
        );
    }
    out.push_str("</div>");
    out
}

pub(super) fn head(lang: Language, title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>{CSS}</style></head>\n<body>\n",
        lang.as_str()
    )
}

pub(super) fn lang_nav(current: Language, link: impl Fn(Language) -> String) -> String {
    let mut out = String::from("<nav class=\"lang\">");
    for (i, l) in [Language::En, Language::ZhCn].into_iter().enumerate() {
        if i > 0 {
            out.push_str(" · ");
        }
        let _ = write!(
            out,
            "<a href=\"{}\" hreflang=\"{}\"{}>{}</a>",
            link(l),
            l.as_str(),
            if l == current { " class=\"on\"" } else { "" },
            t(current, &format!("page.lang.{}", l.as_str()))
        );
    }
    out.push_str("</nav>");
    out
}

pub(super) fn footer(ctx: &Ctx, refresh: bool) -> String {
    let mut out = String::from("<footer>");
    let generated = esc(&full_time(ctx.now, ctx.tz));
    out.push_str(&fill(
        ctx.lang,
        "page.generated",
        &[("time", &generated), ("tz", &esc(ctx.tz.name()))],
    ));
    if refresh {
        out.push(' ');
        out.push_str(&t(ctx.lang, "page.refresh"));
    }
    let _ = writeln!(out, " · storeguard {}</footer>", crate::VERSION);
    if refresh {
        let _ = writeln!(out, "<script>{JS}</script>");
    }
    out.push_str("</body></html>\n");
    out
}
