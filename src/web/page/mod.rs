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

mod handlers;
mod html;
mod render;
mod tax;
#[cfg(test)]
mod tests;

pub(super) use handlers::{index, store};
pub use html::expiry_words;
use html::*;
pub use render::{render_index, render_message, render_store};
pub use tax::mask_tax_ids;

use super::html::Html;
use super::view::StoreView;
use crate::config::Config;
use crate::daemon::Shared;
use crate::i18n;
use crate::model::{Language, Marketplace};
use crate::outcome::{Facts, Finding, FindingKind, Status};
use crate::state::{CheckRow, IncidentRow};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::sync::{Arc, OnceLock};

/// How many checks the strip of each store shows.
pub const STRIP_LEN: usize = 48;
/// How many login records the store page lists.
pub const HISTORY_ROWS: usize = 100;
/// How many incidents the store page lists.
pub const INCIDENT_ROWS: usize = 50;
/// Longest search text kept (characters).
pub(super) const MAX_SEARCH: usize = 100;
/// Longest query string considered at all.
pub(super) const MAX_QUERY: usize = 2048;

pub(super) const CSS: &str = include_str!("page.css");
/// Marks that script and style sheet ran (the browser test checks both under the CSP), then
/// reloads every minute unless someone is typing in the filter form.
pub(super) const JS: &str = r#"(function(){var d=document.documentElement,s=document.querySelector("style");d.setAttribute("data-js","on");d.setAttribute("data-css",s&&s.sheet&&s.sheet.cssRules.length?"on":"off");function t(){var a=document.activeElement;if(a&&/^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)){setTimeout(t,10000);return}location.reload()}setTimeout(t,60000)})();"#;

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

impl StoreView {
    pub fn shown(&self) -> Shown {
        Shown::of(self.enabled, self.status)
    }
}

/// Language, timezone and "now" of one rendering.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub lang: Language,
    pub tz: crate::zone::Zone,
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

    /// A link to `path` with these filters and `lang`.
    fn href(&self, path: &str, lang: Option<Language>, with_filters: bool) -> Html {
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
            Html::text(path)
        } else {
            Html::text(&format!("{path}?{qs}"))
        }
    }
}

pub(super) fn parse_lang(v: &str) -> Option<Language> {
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
    /// Facts of the last check.
    pub facts: Option<&'a Facts>,
    pub incidents: &'a [IncidentRow],
    /// Newest first.
    pub history: &'a [CheckRow],
    /// Security mail of the store, newest first.
    pub mail: &'a [crate::state::MailRecord],
    pub lang_param: Option<Language>,
    pub history_ok: bool,
}
