//! Small pieces of the page: words from the catalogues, times, badges, strips. Each returns
//! [`Html`], so what comes from outside is escaped by its type.

use super::*;
use crate::i18n::Piece;
use crate::{html, markup};

/// Catalogue text, escaped.
pub(super) fn t(lang: Language, key: &str) -> Html {
    Html::text(i18n::text(lang, key))
}

/// Catalogue text with `{name}` placeholders filled in one pass by `args`. Text between
/// backticks becomes `<code>`.
pub(super) fn fill(lang: Language, key: &str, args: &[(&str, Html)]) -> Html {
    let mut out = Html::new();
    for (i, part) in i18n::text(lang, key).split('`').enumerate() {
        if i % 2 == 1 {
            out.raw_str("<code>");
        }
        for piece in i18n::pieces(part) {
            match piece {
                Piece::Text(text) => out.push(text),
                Piece::Arg(name) => match args.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push(v),
                    None => out.push(&format!("{{{name}}}")),
                },
            };
        }
        if i % 2 == 1 {
            out.raw_str("</code>");
        }
    }
    out
}

/// A number in bold (summary counts).
pub(super) fn bold(n: usize) -> Html {
    markup!("<b>{}</b>", n)
}

/// A number as plain markup.
pub(super) fn num(n: usize) -> Html {
    markup!("{}", n)
}

pub(super) fn finding_words(lang: Language, kind: &str) -> Html {
    match FindingKind::parse(kind) {
        Some(k) => t(lang, &format!("finding.{}", k.as_str())),
        None => Html::text(kind),
    }
}

pub(super) fn full_time(t: DateTime<Utc>, tz: crate::zone::Zone) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(super) fn date(t: DateTime<Utc>, tz: crate::zone::Zone) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d").to_string()
}

/// `<time>` with the local time and how long ago or how soon. `short` leaves out the date
/// when it is today (the full time is in the tooltip).
pub(super) fn when(ctx: &Ctx, t: DateTime<Utc>, short: bool) -> Html {
    let duration = |d| Html::text(&crate::alert::render::human_duration(ctx.lang, d));
    let rel = if t <= ctx.now {
        fill(ctx.lang, "page.ago", &[("duration", duration(ctx.now - t))])
    } else {
        fill(ctx.lang, "page.in", &[("duration", duration(t - ctx.now))])
    };
    time_tag(ctx, t, short, &rel)
}

/// Like [`when`] for a time something is due: a time already passed reads "due now".
pub(super) fn when_due(ctx: &Ctx, at: DateTime<Utc>, short: bool) -> Html {
    if at <= ctx.now {
        time_tag(ctx, at, short, &t(ctx.lang, "page.due_now"))
    } else {
        when(ctx, at, short)
    }
}

pub(super) fn time_tag(ctx: &Ctx, t: DateTime<Utc>, short: bool, rel: &Html) -> Html {
    let local = t.with_timezone(&ctx.tz);
    let shown = if short && local.date_naive() == ctx.now.with_timezone(&ctx.tz).date_naive() {
        local.format("%H:%M:%S").to_string()
    } else {
        full_time(t, ctx.tz)
    };
    markup!(
        "<time datetime=\"{}\" title=\"{}\">{}</time> <span class=\"rel\">{}</span>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        full_time(t, ctx.tz),
        shown,
        rel
    )
}

/// Whole calendar days from `now` to `t` in the daemon's timezone.
pub(super) fn days_until(ctx: &Ctx, t: DateTime<Utc>) -> i64 {
    let a = ctx.now.with_timezone(&ctx.tz).date_naive();
    let b = t.with_timezone(&ctx.tz).date_naive();
    (b - a).num_days()
}

/// "in 12 days" (or "today", "expired 3 days ago") with the date: the words and a CSS class.
pub fn expiry_words(ctx: &Ctx, t: DateTime<Utc>) -> (Html, &'static str) {
    let days = days_until(ctx, t);
    let n = Html::text(&days.abs().to_string());
    let (key, class) = match days {
        d if d < -1 => ("page.expiry.ago_days", "gone"),
        -1 => ("page.expiry.ago_day", "gone"),
        0 if t <= ctx.now => ("page.expiry.expired_today", "gone"),
        0 => ("page.expiry.today", "soon"),
        1 => ("page.expiry.in_day", "soon"),
        d if d <= 14 => ("page.expiry.in_days", "soon"),
        _ => ("page.expiry.in_days", ""),
    };
    (fill(ctx.lang, key, &[("n", n)]), class)
}

/// A dash for "nothing known".
pub(super) fn dash() -> Html {
    Html::raw("—")
}

pub(super) fn expiry_cell(ctx: &Ctx, t: Option<DateTime<Utc>>) -> Html {
    match t {
        None => Html::raw("<span class=\"rel\">—</span>"),
        Some(t) => {
            let (words, class) = expiry_words(ctx, t);
            markup!(
                "<span class=\"expiry {}\">{}</span> <span class=\"date\">{}</span>",
                class,
                words,
                date(t, ctx.tz)
            )
        }
    }
}

pub(super) fn badge(lang: Language, s: Shown) -> Html {
    markup!(
        "<span class=\"badge {}\">{}</span>",
        s.class(),
        t(lang, s.key())
    )
}

pub(super) fn findings_list(lang: Language, findings: &[Finding]) -> Html {
    if findings.is_empty() {
        return Html::raw("<span class=\"rel\">—</span>");
    }
    let mut out = Html::raw("<ul class=\"findings\">");
    for f in findings {
        html!(
            out,
            "<li class=\"finding {}\"><b>{}</b>",
            f.kind.as_str(),
            t(lang, &format!("finding.{}", f.kind.as_str()))
        );
        if !f.detail.is_empty() {
            html!(
                out,
                "<span class=\"detail\">{}</span>",
                mask_tax_ids(&f.detail)
            );
        }
        out.raw_str("</li>");
    }
    out.raw_str("</ul>");
    out
}

/// The strip of the last [`STRIP_LEN`] checks, oldest on the left; hovering a cell shows its
/// time, status and findings.
pub(super) fn strip(ctx: &Ctx, recent: &[CheckRow], big: bool) -> Html {
    let shown: Vec<&CheckRow> = recent.iter().take(STRIP_LEN).collect();
    let mut out = Html::with_capacity(STRIP_LEN * 64);
    html!(
        out,
        "<div class=\"strip{}\" aria-label=\"{}\">",
        if big { " big" } else { "" },
        fill(ctx.lang, "page.col.strip", &[("count", num(STRIP_LEN))])
    );
    for _ in shown.len()..STRIP_LEN {
        out.raw_str("<span class=\"c\"></span>");
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
        html!(
            out,
            "<span class=\"c {}\" title=\"{}\"></span>",
            s.class(),
            title
        );
    }
    out.raw_str("</div>");
    out
}

pub(super) fn head(lang: Language, title: &Html) -> Html {
    let mut out = markup!(
        "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>",
        lang.as_str(),
        title
    );
    out.raw_str(CSS).raw_str("</style></head>\n<body>\n");
    out
}

pub(super) fn lang_nav(current: Language, link: impl Fn(Language) -> Html) -> Html {
    let mut out = Html::raw("<nav class=\"lang\">");
    for (i, l) in [Language::En, Language::ZhCn].into_iter().enumerate() {
        if i > 0 {
            out.raw_str(" · ");
        }
        html!(
            out,
            "<a href=\"{}\" hreflang=\"{}\"{}>{}</a>",
            link(l),
            l.as_str(),
            Html::raw(if l == current { " class=\"on\"" } else { "" }),
            t(current, &format!("page.lang.{}", l.as_str()))
        );
    }
    out.raw_str("</nav>");
    out
}

pub(super) fn footer(ctx: &Ctx, refresh: bool) -> Html {
    let mut out = Html::raw("<footer>");
    out.push(&fill(
        ctx.lang,
        "page.generated",
        &[
            ("time", Html::text(&full_time(ctx.now, ctx.tz))),
            ("tz", Html::text(ctx.tz.name())),
        ],
    ));
    if refresh {
        out.raw_str(" ").push(&t(ctx.lang, "page.refresh"));
    }
    html!(out, " · storeguard {}</footer>\n", crate::VERSION);
    if refresh {
        out.raw_str("<script>").raw_str(JS).raw_str("</script>\n");
    }
    out.raw_str("</body></html>\n");
    out
}
