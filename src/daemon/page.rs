//! The HTML status page on the status listener: `GET /` shows every store grouped by
//! marketplace with a strip of its last 48 checks, `GET /stores/{id}` one store's incidents,
//! login history and account facts.
//!
//! Why server-rendered HTML: sellers open it on a server through an SSH tunnel, often with no
//! internet on either end, so there are no external assets, only a small inline style sheet and
//! a few lines of inline script for auto-refresh (filters work as a plain form without it).
//!
//! Rendering is pure ([`render_index`], [`render_store`], [`render_message`]): plain data in,
//! HTML out, so the unit tests need no daemon. Everything that comes from the config, a
//! marketplace or the state database is HTML-escaped; words come from the catalogues. No secret
//! is ever in the data: only names, statuses, finding details (already sanitised), expiry dates
//! and account numbers, and those only when the caller may see them (same token rule as the API).
//! Anything in facts or details that looks like a company tax id is masked.

use super::Shared;
use crate::config::Config;
use crate::i18n;
use crate::model::{Language, Marketplace};
use crate::outcome::{Facts, Finding, FindingKind, Status};
use crate::state::{CheckRow, IncidentRow};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

/// How many checks the strip of each store shows.
pub const STRIP_LEN: usize = 48;
/// How many login records the store page lists.
pub const HISTORY_ROWS: usize = 100;
/// How many incidents the store page lists.
pub const INCIDENT_ROWS: usize = 50;
/// Longest search text kept (characters).
const MAX_SEARCH: usize = 100;
/// Longest query string considered at all.
const MAX_QUERY: usize = 2048;

const CSS: &str = include_str!("page.css");
/// Marks that script and style sheet ran (the browser test checks both under the CSP), then
/// reloads every minute unless someone is typing in the filter form.
const JS: &str = r#"(function(){var d=document.documentElement,s=document.querySelector("style");d.setAttribute("data-js","on");d.setAttribute("data-css",s&&s.sheet&&s.sheet.cssRules.length?"on":"off");function t(){var a=document.activeElement;if(a&&/^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)){setTimeout(t,10000);return}location.reload()}setTimeout(t,60000)})();"#;

/// `Content-Security-Policy`: nothing but this page's own inline style and script (by hash).
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = |s: &str| {
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s.as_bytes()))
        };
        format!(
            "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; img-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            hash(CSS),
            hash(JS)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Plain data the renderers take.

/// How a store shows on the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Ok,
    Warning,
    Critical,
    Unknown,
    /// Enabled, never checked yet.
    Pending,
    /// `enabled = false` in the config.
    Disabled,
}

impl Shown {
    pub const ALL: [Shown; 6] = [
        Shown::Critical,
        Shown::Unknown,
        Shown::Warning,
        Shown::Ok,
        Shown::Pending,
        Shown::Disabled,
    ];

    pub fn of(enabled: bool, status: Option<Status>) -> Shown {
        match (enabled, status) {
            (false, _) => Shown::Disabled,
            (true, None) => Shown::Pending,
            (true, Some(s)) => Self::status(s),
        }
    }

    fn status(s: Status) -> Shown {
        match s {
            Status::Ok => Shown::Ok,
            Status::Warning => Shown::Warning,
            Status::Critical => Shown::Critical,
            Status::Unknown => Shown::Unknown,
        }
    }

    /// The canonical name (`?status=` value, `data-status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Shown::Ok => "OK",
            Shown::Warning => "WARNING",
            Shown::Critical => "CRITICAL",
            Shown::Unknown => "UNKNOWN",
            Shown::Pending => "PENDING",
            Shown::Disabled => "DISABLED",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Shown::Ok => "ok",
            Shown::Warning => "warning",
            Shown::Critical => "critical",
            Shown::Unknown => "unknown",
            Shown::Pending => "pending",
            Shown::Disabled => "disabled",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Shown::Ok => "status.OK",
            Shown::Warning => "status.WARNING",
            Shown::Critical => "status.CRITICAL",
            Shown::Unknown => "status.UNKNOWN",
            Shown::Pending => "page.status.PENDING",
            Shown::Disabled => "page.status.DISABLED",
        }
    }

    /// Worst first on the page.
    fn rank(self) -> u8 {
        match self {
            Shown::Critical => 0,
            Shown::Unknown => 1,
            Shown::Warning => 2,
            Shown::Ok => 3,
            Shown::Pending => 4,
            Shown::Disabled => 5,
        }
    }

    fn parse(s: &str) -> Option<Shown> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str().eq_ignore_ascii_case(s))
    }
}

/// One store as the page shows it. Holds no secret; `account` only when the caller may see it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreView {
    pub id: String,
    pub name: String,
    pub marketplace: Marketplace,
    pub tags: Vec<String>,
    pub enabled: bool,
    /// Status of the last check; `None` before the first one.
    pub status: Option<Status>,
    pub findings: Vec<Finding>,
    pub account: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_check: Option<DateTime<Utc>>,
    /// When the next check runs (after a backoff, when one is in force).
    pub next_check: Option<DateTime<Utc>>,
    /// Checks wait after a refused or throttled login.
    pub backing_off: bool,
    pub latency_ms: Option<u64>,
    pub open_incidents: usize,
    /// The newest login records, newest first (at most [`STRIP_LEN`] are drawn).
    pub recent: Vec<CheckRow>,
}

impl StoreView {
    pub fn shown(&self) -> Shown {
        Shown::of(self.enabled, self.status)
    }
}

/// Language, timezone and "now" of one rendering.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub lang: Language,
    pub tz: chrono_tz::Tz,
    pub now: DateTime<Utc>,
}

/// The validated query string of the page. Unknown values are dropped, never reflected.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PageQuery {
    /// Set only when the URL asked for a language (`?lang=en` / `?lang=zh-CN`).
    pub lang: Option<Language>,
    pub marketplace: Option<Marketplace>,
    pub tag: Option<String>,
    pub status: Option<Shown>,
    /// Search text for store names (sanitised, capped).
    pub q: String,
}

impl PageQuery {
    /// Parses `raw` (the part after `?`), keeping only known values.
    pub fn parse(raw: Option<&str>, known_tags: &[String]) -> PageQuery {
        let mut out = PageQuery::default();
        let Some(raw) = raw.filter(|r| r.len() <= MAX_QUERY) else {
            return out;
        };
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            match &*k {
                "lang" => out.lang = parse_lang(&v),
                "marketplace" => out.marketplace = Marketplace::parse(&v),
                "tag" => out.tag = known_tags.iter().find(|t| **t == *v).cloned(),
                "status" => out.status = Shown::parse(&v),
                "q" => out.q = crate::outcome::sanitize(&v, MAX_SEARCH).replace('…', ""),
                _ => {}
            }
        }
        out
    }

    pub fn is_filtered(&self) -> bool {
        self.marketplace.is_some()
            || self.tag.is_some()
            || self.status.is_some()
            || !self.q.is_empty()
    }

    pub fn matches(&self, s: &StoreView) -> bool {
        self.marketplace.is_none_or(|m| m == s.marketplace)
            && self.tag.as_ref().is_none_or(|t| s.tags.contains(t))
            && self.status.is_none_or(|st| st == s.shown())
            && (self.q.is_empty() || {
                let q = self.q.to_lowercase();
                s.name.to_lowercase().contains(&q) || s.id.contains(&q)
            })
    }

    /// A link to `path` with these filters and `lang` (already HTML-escaped).
    fn href(&self, path: &str, lang: Option<Language>, with_filters: bool) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        if with_filters {
            if let Some(m) = self.marketplace {
                ser.append_pair("marketplace", m.as_str());
            }
            if let Some(t) = &self.tag {
                ser.append_pair("tag", t);
            }
            if let Some(s) = self.status {
                ser.append_pair("status", s.as_str());
            }
            if !self.q.is_empty() {
                ser.append_pair("q", &self.q);
            }
        }
        if let Some(l) = lang {
            ser.append_pair("lang", l.as_str());
        }
        let qs = ser.finish();
        if qs.is_empty() {
            esc(path)
        } else {
            esc(&format!("{path}?{qs}"))
        }
    }
}

fn parse_lang(v: &str) -> Option<Language> {
    match v {
        "en" => Some(Language::En),
        "zh-CN" => Some(Language::ZhCn),
        _ => None,
    }
}

/// Everything `GET /` shows.
pub struct Index<'a> {
    pub ctx: Ctx,
    /// Every configured store (the filters pick from these).
    pub stores: &'a [StoreView],
    /// Every tag in the config, sorted (the tag filter's choices).
    pub tags: &'a [String],
    pub open_incidents: usize,
    pub next_sweep: Option<DateTime<Utc>>,
    pub query: &'a PageQuery,
    /// False when the login history could not be read (strips are then empty).
    pub history_ok: bool,
}

/// Everything `GET /stores/{id}` shows.
pub struct Detail<'a> {
    pub ctx: Ctx,
    pub store: &'a StoreView,
    /// Facts of the last check (`account` already removed when the caller may not see it).
    pub facts: Option<&'a Facts>,
    pub incidents: &'a [IncidentRow],
    /// Newest first.
    pub history: &'a [CheckRow],
    pub show_accounts: bool,
    pub lang_param: Option<Language>,
    pub history_ok: bool,
}

// ---------------------------------------------------------------------------------------------
// Small HTML helpers.

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
fn t(lang: Language, key: &str) -> String {
    esc(i18n::text(lang, key))
}

/// Catalogue text with `{name}` placeholders filled in one pass by `args`, which are HTML
/// already (the caller escapes what it passes). Text between backticks becomes `<code>`.
fn fill(lang: Language, key: &str, args: &[(&str, &str)]) -> String {
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

fn finding_words(lang: Language, kind: &str) -> String {
    match FindingKind::parse(kind) {
        Some(k) => t(lang, &format!("finding.{}", k.as_str())),
        None => esc(kind),
    }
}

fn full_time(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn date(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d").to_string()
}

/// `<time>` with the local time and how long ago or how soon. `short` leaves out the date
/// when it is today (the full time is in the tooltip).
fn when(ctx: &Ctx, t: DateTime<Utc>, short: bool) -> String {
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
fn when_due(ctx: &Ctx, at: DateTime<Utc>, short: bool) -> String {
    if at <= ctx.now {
        time_tag(ctx, at, short, &t(ctx.lang, "page.due_now"))
    } else {
        when(ctx, at, short)
    }
}

fn time_tag(ctx: &Ctx, t: DateTime<Utc>, short: bool, rel: &str) -> String {
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
fn days_until(ctx: &Ctx, t: DateTime<Utc>) -> i64 {
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

fn expiry_cell(ctx: &Ctx, t: Option<DateTime<Utc>>) -> String {
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

fn badge(lang: Language, s: Shown) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        s.class(),
        t(lang, s.key())
    )
}

fn findings_list(lang: Language, findings: &[Finding]) -> String {
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
fn strip(ctx: &Ctx, recent: &[CheckRow], big: bool) -> String {
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

fn head(lang: Language, title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>{CSS}</style></head>\n<body>\n",
        lang.as_str()
    )
}

fn lang_nav(current: Language, link: impl Fn(Language) -> String) -> String {
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

fn footer(ctx: &Ctx, refresh: bool) -> String {
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

// ---------------------------------------------------------------------------------------------
// Pages.

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

fn store_row(out: &mut String, ctx: &Ctx, q: &PageQuery, s: &StoreView) {
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

// ---------------------------------------------------------------------------------------------
// Tax ids.

/// Labels after which a long run of digits is a company tax id (INN, TIN, VAT, 税号 …).
const TAX_LABELS: [&str; 10] = [
    "inn",
    "инн",
    "tax",
    "tin",
    "vat",
    "kpp",
    "кпп",
    "税号",
    "纳税人识别号",
    "统一社会信用代码",
];

/// Masks every alphanumeric run of at least 8 characters (6 of them digits) that follows a
/// tax-id label within a few characters: `INN 7707083893` → `INN ••••••••93`.
pub fn mask_tax_ids(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let lower: Vec<char> = chars
        .iter()
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    let mut masked = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        let label = TAX_LABELS.iter().find_map(|l| {
            let l: Vec<char> = l.chars().collect();
            let fits = lower.get(i..i + l.len()) == Some(&l[..]);
            let ascii_word = l[0].is_alphabetic();
            let boundary_before = i == 0 || !ascii_word || !lower[i - 1].is_alphanumeric();
            fits.then_some(l.len()).filter(|_| boundary_before)
        });
        let Some(len) = label else {
            i += 1;
            continue;
        };
        // Skip a short gap ("INN: ", "tax id ", "税号：") to the value.
        let mut j = i + len;
        let gap_end = (j + 16).min(chars.len());
        while j < gap_end && !chars[j].is_ascii_digit() {
            j += 1;
        }
        // Back up to the start of an alphanumeric token the digit is in (USCC starts with digits
        // or letters).
        while j > i + len && chars[j - 1].is_ascii_alphanumeric() && j < chars.len() {
            j -= 1;
        }
        let start = j;
        let mut end = start;
        while end < chars.len() && chars[end].is_ascii_alphanumeric() {
            end += 1;
        }
        let token = &chars[start..end];
        let digits = token.iter().filter(|c| c.is_ascii_digit()).count();
        if token.len() >= 8 && digits >= 6 {
            for c in &mut masked[start..end - 2] {
                *c = '•';
            }
            i = end;
        } else {
            i += len;
        }
    }
    masked.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Handlers: gather plain data from the daemon, render, answer with safe headers.

fn html(status: StatusCode, body: String) -> Response {
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

fn known_tags(config: &Config) -> Vec<String> {
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
fn views(
    shared: &Shared,
    show_accounts: bool,
) -> (
    Vec<StoreView>,
    usize,
    Option<DateTime<Utc>>,
    Arc<super::Live>,
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

fn ctx_for(shared: &Shared, config: &Config, lang: Option<Language>) -> Ctx {
    Ctx {
        lang: lang.unwrap_or(config.daemon.language),
        tz: config.daemon.timezone,
        now: shared.clock.now(),
    }
}

fn history_since(ctx: &Ctx, config: &Config) -> DateTime<Utc> {
    crate::duration::before(ctx.now, config.daemon.history_retention)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

fn index_page(shared: &Shared, raw: Option<&str>, show_accounts: bool) -> String {
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

fn store_page(
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
fn denied(shared: &Shared, raw: Option<&str>) -> Response {
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
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

fn failed() -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        "<!doctype html><title>storeguard</title><p>internal error; see the daemon log</p>\n"
            .to_string(),
    )
}

/// `GET /`.
pub(super) async fn index(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if !super::api::read_allowed(&shared, &headers) {
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
pub(super) async fn store(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if !super::api::read_allowed(&shared, &headers) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeSet;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 6, 30, 0).unwrap()
    }

    fn ctx(lang: Language) -> Ctx {
        Ctx {
            lang,
            tz: chrono_tz::Asia::Shanghai,
            now: now(),
        }
    }

    fn row(store: &str, mins_ago: i64, status: Status, findings: &[&str]) -> CheckRow {
        CheckRow {
            store_id: store.into(),
            at: now() - chrono::Duration::minutes(mins_ago),
            status,
            findings: findings.iter().map(|s| s.to_string()).collect(),
            latency_ms: 120,
            egress: Some("direct".into()),
            account: Some("1000001".into()),
        }
    }

    fn view(id: &str, name: &str, m: Marketplace, findings: Vec<Finding>) -> StoreView {
        let status = findings
            .iter()
            .fold(Status::Ok, |s, f| s.worst(f.kind.status()));
        StoreView {
            id: id.into(),
            name: name.into(),
            marketplace: m,
            tags: vec![],
            enabled: true,
            status: Some(status),
            findings,
            account: Some("1000001".into()),
            expires_at: None,
            last_check: Some(now() - chrono::Duration::minutes(2)),
            next_check: Some(now() + chrono::Duration::minutes(3)),
            backing_off: false,
            latency_ms: Some(120),
            open_incidents: 0,
            recent: (0..60).map(|i| row(id, i * 5, status, &[])).collect(),
        }
    }

    fn sample() -> Vec<StoreView> {
        let mut broken = view(
            "ozon-broken",
            "<b>Shop & Co</b> 'x'",
            Marketplace::Ozon,
            vec![Finding::new(
                FindingKind::AuthRejected,
                "Api-key is deactivated \"><img src=x onerror=alert(1)> company INN 7707083893",
            )],
        );
        broken.open_incidents = 1;
        broken.tags = vec!["eu".into()];
        broken.recent[0].findings = vec!["auth_rejected".into()];
        broken.recent[0].status = Status::Critical;
        let mut expiring = view(
            "ozon-exp",
            "Ozon 圣彼得堡店",
            Marketplace::Ozon,
            vec![Finding::new(FindingKind::CredentialExpiring, "key expires")],
        );
        expiring.expires_at = Some(now() + chrono::Duration::days(12));
        expiring.tags = vec!["ru".into(), "eu".into()];
        let mut pending = view("ali-new", "速卖通新店", Marketplace::Aliexpress, vec![]);
        pending.status = None;
        pending.last_check = None;
        pending.recent.clear();
        let mut off = view("amz-off", "Amazon off", Marketplace::Amazon, vec![]);
        off.enabled = false;
        vec![
            view("ozon-ok", "Ozon OK", Marketplace::Ozon, vec![]),
            broken,
            expiring,
            view(
                "alibaba-down",
                "Alibaba down",
                Marketplace::Alibaba,
                vec![Finding::new(FindingKind::Unreachable, "connect timed out")],
            ),
            pending,
            off,
        ]
    }

    fn index(lang: Language, stores: &[StoreView], q: &PageQuery) -> String {
        let tags = vec!["eu".to_string(), "ru".to_string()];
        render_index(&Index {
            ctx: ctx(lang),
            stores,
            tags: &tags,
            open_incidents: 2,
            next_sweep: Some(now() + chrono::Duration::minutes(1)),
            query: q,
            history_ok: true,
        })
    }

    fn row_html<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page
            .find(&format!("<tr id=\"store-{id}\""))
            .unwrap_or_else(|| panic!("no row for {id}"));
        let end = page[start..].find("</tr>").unwrap();
        &page[start..start + end]
    }

    /// Every `page.*` key the code names, plus the dynamic ones.
    fn page_keys() -> BTreeSet<String> {
        let src = include_str!("page.rs");
        let mut keys: BTreeSet<String> = src
            .split('"')
            .filter(|s| s.starts_with("page.") && !s.contains('{') && !s.ends_with('.'))
            .filter(|s| !s.ends_with(".rs") && !s.ends_with(".css"))
            .map(str::to_string)
            .collect();
        keys.insert("page.lang.en".into());
        keys.insert("page.lang.zh-CN".into());
        keys
    }

    #[test]
    fn every_word_of_the_page_is_in_both_catalogues() {
        let en: toml::Table = toml::from_str(include_str!("../i18n/en.toml")).unwrap();
        let zh: toml::Table = toml::from_str(include_str!("../i18n/zh-CN.toml")).unwrap();
        let keys = page_keys();
        assert!(keys.len() > 50, "{keys:?}");
        for k in &keys {
            for (name, cat) in [("en", &en), ("zh-CN", &zh)] {
                let v = cat.get(k).and_then(|v| v.as_str());
                assert!(
                    v.is_some_and(|v| !v.is_empty()),
                    "missing translation: `{k}` in {name}.toml"
                );
            }
        }
    }

    #[test]
    fn index_in_english_shows_statuses_findings_expiry_and_strips() {
        let page = index(Language::En, &sample(), &PageQuery::default());
        assert!(page.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(page.contains("<b>5</b> stores:"), "disabled not counted");
        let broken = row_html(&page, "ozon-broken");
        assert!(broken.contains("data-status=\"CRITICAL\""));
        assert!(broken.contains("<span class=\"badge critical\">CRITICAL</span>"));
        assert!(broken.contains("login refused (key, token or secret rejected)"));
        assert!(broken.contains("Api-key is deactivated"));
        assert!(broken.contains("open incidents: 1"));
        assert!(broken.contains("href=\"/stores/ozon-broken\""));
        let exp = row_html(&page, "ozon-exp");
        assert!(exp.contains("in 12 days</span> <span class=\"date\">2026-12-08</span>"));
        assert!(exp.contains("WARNING"));
        assert!(row_html(&page, "ali-new").contains("PENDING"));
        assert!(row_html(&page, "ali-new").contains("never"));
        assert!(row_html(&page, "amz-off").contains("DISABLED"));
        // Strips: always 48 cells, newest on the right, hover text with time and finding.
        assert_eq!(broken.matches("<span class=\"c").count(), STRIP_LEN);
        let last_cell = broken.rfind("<span class=\"c ").unwrap();
        assert!(
            broken[last_cell..].starts_with(
                "<span class=\"c critical\" title=\"2026-11-26 14:30:00 · CRITICAL · login refused (key, token or secret rejected)\">"
            ),
            "{}",
            &broken[last_cell..]
        );
        assert_eq!(
            row_html(&page, "ali-new")
                .matches("<span class=\"c\"></span>")
                .count(),
            STRIP_LEN
        );
        // Grouped by marketplace in the usual order, worst first inside a group.
        let pos = |s: &str| page.find(s).unwrap();
        assert!(pos("id=\"mp-ozon\"") < pos("id=\"mp-amazon\""));
        assert!(pos("id=\"mp-alibaba\"") < pos("id=\"mp-aliexpress\""));
        assert!(pos("store-ozon-broken") < pos("store-ozon-exp"));
        assert!(pos("store-ozon-exp") < pos("store-ozon-ok"));
        // Summary.
        assert!(page.contains("data-count=\"1\" href=\"/?status=CRITICAL\""));
        assert!(page.contains("open incidents: <b>2</b>"));
        assert!(page.contains("next check <time datetime=\"2026-11-26T06:31:00Z\" title=\"2026-11-26 14:31:00\">14:31:00</time> <span class=\"rel\">in 1m</span>"));
    }

    #[test]
    fn index_in_chinese_uses_the_chinese_words() {
        let page = index(Language::ZhCn, &sample(), &PageQuery::default());
        assert!(page.contains("<html lang=\"zh-CN\">"));
        let broken = row_html(&page, "ozon-broken");
        assert!(broken.contains(">严重</span>"));
        assert!(broken.contains("登录被拒绝（密钥、令牌或密码无效）"));
        assert!(row_html(&page, "ozon-exp").contains("12 天后到期"));
        assert!(row_html(&page, "ali-new").contains("待检查"));
        assert!(page.contains("共 <b>5</b> 家店铺"));
        assert!(page.contains("最近 48 次检查"));
        assert!(page.contains("<option value=\"CRITICAL\">严重</option>"));
        // No English sentence of the page leaks into the Chinese one.
        for key in [
            "page.col.expiry",
            "page.filter.apply",
            "page.refresh",
            "page.col.last_check",
        ] {
            let en = i18n::text(Language::En, key);
            assert!(!page.contains(en), "`{en}` ({key}) in the zh-CN page");
        }
    }

    #[test]
    fn everything_from_outside_is_escaped_and_tax_ids_masked() {
        let page = index(Language::En, &sample(), &PageQuery::default());
        assert!(page.contains("&lt;b&gt;Shop &amp; Co&lt;/b&gt; &#39;x&#39;"));
        assert!(!page.contains("<b>Shop"));
        assert!(!page.contains("<img"));
        assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("INN ••••••••93"));
        assert!(!page.contains("7707083893"));
        // Only the page's own script and style elements.
        assert_eq!(page.matches("<script").count(), 1);
        assert_eq!(page.matches("<style").count(), 1);
    }

    #[test]
    fn csp_hashes_match_the_inline_style_and_script() {
        use base64::Engine as _;
        use sha2::Digest as _;
        let page = index(Language::En, &sample(), &PageQuery::default());
        let inner = |open: &str, close: &str| {
            let a = page.find(open).unwrap() + open.len();
            let b = page[a..].find(close).unwrap();
            page[a..a + b].to_string()
        };
        let csp = content_security_policy();
        for body in [inner("<style>", "</style>"), inner("<script>", "</script>")] {
            let h = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&body));
            assert!(csp.contains(&format!("'sha256-{h}'")), "{csp}");
        }
        assert!(csp.starts_with("default-src 'none';"));
        assert!(!csp.contains("unsafe"));
    }

    #[test]
    fn filters_pick_stores_and_survive_in_links() {
        let tags = vec!["eu".to_string(), "ru".to_string()];
        let q = PageQuery::parse(
            Some("marketplace=ozon&tag=eu&status=critical&q=SHOP&lang=zh-CN&evil=%3Cx%3E"),
            &tags,
        );
        assert_eq!(
            q,
            PageQuery {
                lang: Some(Language::ZhCn),
                marketplace: Some(Marketplace::Ozon),
                tag: Some("eu".into()),
                status: Some(Shown::Critical),
                q: "SHOP".into(),
            }
        );
        let stores = sample();
        let page = index(Language::ZhCn, &stores, &q);
        assert!(page.contains("store-ozon-broken"));
        assert!(!page.contains("store-ozon-exp"));
        assert!(!page.contains("store-ozon-ok"));
        assert!(page.contains("显示 1 / 6 家店铺"));
        assert!(page.contains("<option value=\"ozon\" selected>Ozon</option>"));
        assert!(page.contains("<option value=\"eu\" selected>eu</option>"));
        assert!(page.contains("<input type=\"hidden\" name=\"lang\" value=\"zh-CN\">"));
        assert!(page.contains("name=\"q\" value=\"SHOP\""));
        // Links keep the filters and the language.
        assert!(page.contains(
            "href=\"/?marketplace=ozon&amp;tag=eu&amp;status=CRITICAL&amp;q=SHOP&amp;lang=en\""
        ));
        assert!(page.contains("href=\"/stores/ozon-broken?lang=zh-CN\""));

        // Unknown values are dropped, never reflected.
        let q = PageQuery::parse(
            Some("lang=fr&marketplace=ebay&tag=%3Cscript%3E&status=BAD&q=%3Cscript%3Ealert(1)"),
            &tags,
        );
        assert_eq!(q.lang, None);
        assert_eq!(q.marketplace, None);
        assert_eq!(q.tag, None);
        assert_eq!(q.status, None);
        let page = index(Language::En, &stores, &q);
        assert!(page.contains("value=\"&lt;script&gt;alert(1)\""));
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("No store matches these filters."));
        // Search matches names in any script, case-insensitively.
        let q = PageQuery::parse(Some("q=%E5%9C%A3%E5%BD%BC%E5%BE%97%E5%A0%A1"), &tags);
        assert!(q.matches(&stores[2]) && !q.matches(&stores[1]));
        let long = format!("q={}", "a".repeat(500));
        assert_eq!(PageQuery::parse(Some(&long), &tags).q.len(), MAX_SEARCH);
        let huge = format!("lang=zh-CN&q={}", "a".repeat(5000));
        assert_eq!(PageQuery::parse(Some(&huge), &tags), PageQuery::default());
    }

    #[test]
    fn expiry_reads_as_days_with_the_date() {
        let c = ctx(Language::En);
        let w = |d: chrono::Duration| expiry_words(&c, now() + d).0;
        assert_eq!(w(chrono::Duration::days(12)), "in 12 days");
        assert_eq!(
            w(chrono::Duration::days(2) - chrono::Duration::seconds(5)),
            "in 2 days"
        );
        assert_eq!(w(chrono::Duration::days(1)), "tomorrow");
        assert_eq!(w(chrono::Duration::hours(2)), "expires today");
        assert_eq!(w(-chrono::Duration::hours(2)), "expired today");
        assert_eq!(w(-chrono::Duration::days(1)), "expired yesterday");
        assert_eq!(w(-chrono::Duration::days(3)), "expired 3 days ago");
        let z = ctx(Language::ZhCn);
        assert_eq!(
            expiry_words(&z, now() + chrono::Duration::days(12)).0,
            "12 天后到期"
        );
        assert_eq!(
            expiry_words(&z, now() - chrono::Duration::days(3)).0,
            "已过期 3 天"
        );
    }

    fn detail(lang: Language, show_accounts: bool) -> String {
        let stores = sample();
        let s = &stores[1];
        let facts = Facts {
            account: show_accounts.then(|| "1000001".to_string()),
            roles: vec!["Admin".into(), "company ИНН: 7707083893".into()],
            premium: Some("PREMIUM_PLUS".into()),
            latency_ms: 120,
            egress: Some("direct".into()),
            ..Facts::default()
        };
        let mut s = s.clone();
        if !show_accounts {
            s.account = None;
        }
        let incidents = vec![
            IncidentRow {
                incident_id: "i1".into(),
                store_id: s.id.clone(),
                finding: "auth_rejected".into(),
                severity: "critical".into(),
                opened_at: now() - chrono::Duration::hours(3),
                resolved_at: None,
                detail: "Api-key is deactivated <i>".into(),
            },
            IncidentRow {
                incident_id: "i0".into(),
                store_id: s.id.clone(),
                finding: "unreachable".into(),
                severity: "unknown".into(),
                opened_at: now() - chrono::Duration::days(2),
                resolved_at: Some(
                    now() - chrono::Duration::days(2) + chrono::Duration::minutes(20),
                ),
                detail: "connect timed out".into(),
            },
        ];
        let mut history = s.recent.clone();
        if !show_accounts {
            for r in &mut history {
                r.account = None;
            }
        }
        render_store(&Detail {
            ctx: ctx(lang),
            store: &s,
            facts: Some(&facts),
            incidents: &incidents,
            history: &history,
            show_accounts,
            lang_param: None,
            history_ok: true,
        })
    }

    #[test]
    fn store_page_shows_incidents_history_and_facts() {
        let page = detail(Language::En, true);
        assert!(page.contains(
            "<h1 id=\"store-ozon-broken\" data-status=\"CRITICAL\">&lt;b&gt;Shop &amp; Co&lt;/b&gt;"
        ));
        assert!(page.contains("What to do: API key deactivated or deleted: create a new key in Seller Center → Settings → API keys, then run <code>storeguard vault edit store/ozon-broken</code>."));
        assert!(page.contains("Admin, company ИНН: ••••••••93"));
        assert!(page.contains("<dt>Account</dt><dd>1000001</dd>"));
        assert!(page.contains("<b>still open</b>"));
        assert!(page.contains("after 20m"));
        assert!(page.contains("Api-key is deactivated &lt;i&gt;"));
        assert_eq!(
            page.matches("<td>120 ms</td>").count(),
            HISTORY_ROWS.min(60)
        );
        assert!(page.contains("<th>Account</th>"));
        assert_eq!(page.matches("<span class=\"c").count(), STRIP_LEN);
        let zh = detail(Language::ZhCn, true);
        assert!(zh.contains("处理方法："));
        assert!(zh.contains("仍未解决"));
        assert!(zh.contains("最近一次看到的账户信息"));
    }

    #[test]
    fn account_numbers_stay_out_when_not_allowed() {
        let page = detail(Language::En, false);
        assert!(page.contains("<dt>Account</dt><dd>hidden</dd>"));
        assert!(!page.contains("1000001"));
        assert!(!page.contains("<th>Account</th>"));
        let mut stores = sample();
        for s in &mut stores {
            s.account = None;
            for r in &mut s.recent {
                r.account = None;
            }
        }
        assert!(!index(Language::En, &stores, &PageQuery::default()).contains("1000001"));
    }

    #[test]
    fn message_pages_reflect_nothing() {
        let page = render_message(
            &ctx(Language::En),
            "page.not_found.title",
            "page.not_found.body",
            Some(Language::ZhCn),
        );
        assert!(page.contains("<h1>No such store</h1>"));
        assert!(page.contains("href=\"/?lang=zh-CN\""));
        assert!(!page.contains("<script"));
        let page = render_message(
            &ctx(Language::ZhCn),
            "page.denied.title",
            "page.denied.body",
            None,
        );
        assert!(page.contains("<code>ssh -L 9464:127.0.0.1:9464 server</code>"));
    }

    #[test]
    fn tax_ids_are_masked() {
        assert_eq!(mask_tax_ids("INN 7707083893"), "INN ••••••••93");
        assert_eq!(
            mask_tax_ids("inn:7707083893, kpp 770701001"),
            "inn:••••••••93, kpp •••••••01"
        );
        assert_eq!(mask_tax_ids("Tax ID: 123456789012"), "Tax ID: ••••••••••12");
        assert_eq!(
            mask_tax_ids("税号：91330100MA2B3C4D5E"),
            "税号：••••••••••••••••5E"
        );
        assert_eq!(
            mask_tax_ids("统一社会信用代码 91330100MA2B3C4D5E"),
            "统一社会信用代码 ••••••••••••••••5E"
        );
        // Not after a label, too short, or inside another word: left alone.
        assert_eq!(mask_tax_ids("seller 1000001"), "seller 1000001");
        assert_eq!(mask_tax_ids("INN 1234"), "INN 1234");
        assert_eq!(mask_tax_ids("listing 12345678"), "listing 12345678");
        assert_eq!(mask_tax_ids(""), "");
    }

    #[test]
    fn a_thousand_stores_render_quickly() {
        let stores: Vec<StoreView> = (0..1000)
            .map(|i| {
                let mut v = view(
                    &format!("s{i}"),
                    &format!("Store {i}"),
                    Marketplace::ALL[i % 4],
                    if i % 7 == 0 {
                        vec![Finding::new(FindingKind::AuthRejected, "refused")]
                    } else {
                        vec![]
                    },
                );
                v.recent.truncate(STRIP_LEN);
                v
            })
            .collect();
        let started = std::time::Instant::now();
        let page = index(Language::En, &stores, &PageQuery::default());
        let took = started.elapsed();
        assert_eq!(page.matches("<tr id=\"store-").count(), 1000);
        assert!(page.len() < 6 * 1024 * 1024, "{} bytes", page.len());
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }
}
