//! Alert messages a seller understands at a glance, in zh-CN or English.
//!
//! [`render`] turns an [`AlertEvent`] into a [`Message`]: a title and a few blocks (what is
//! wrong in plain words, the store, since when, what to do). Every sentence comes from the
//! catalogues in `src/i18n/`; catalogue text between backticks is shown as code. The blocks
//! are then written out in the dialect each service renders — plain text, Markdown (DingTalk,
//! WeCom), Telegram HTML, Slack mrkdwn, Feishu `lark_md`, or HTML for email — escaping every
//! piece of text for that dialect, so a store name or a marketplace error with `*`, `<` or `&`
//! in it shows as written and cannot inject markup.

use super::{AlertEvent, EventKind, Subject};
use crate::i18n;
use crate::model::{Language, Severity};
use crate::outcome::{FindingKind, sanitize};
use chrono::{DateTime, Utc};

/// How many affected stores a grouped message lists by name.
const MAX_LISTED: usize = 10;

/// A rendered alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// One line: the e-mail subject, the Slack/Feishu header, the DingTalk notification title.
    pub title: String,
    /// The body as plain text (no title).
    pub text: String,
    /// The body as Markdown (no title), as DingTalk and WeCom render it.
    pub markdown: String,
    pub(crate) tone: Tone,
    pub(crate) blocks: Vec<Block>,
}

/// The colour of a message: what kind of news it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Critical,
    Warning,
    Unknown,
    Resolved,
    Test,
}

/// Output formats of the message body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Plain,
    /// CommonMark subset: DingTalk and WeCom `markdown` messages.
    Markdown,
    /// Telegram `parse_mode: "HTML"`.
    TelegramHtml,
    /// Slack `mrkdwn`.
    SlackMrkdwn,
    /// Feishu / Lark card `lark_md`.
    LarkMd,
    /// An HTML fragment (e-mail).
    Html,
}

/// A piece of text: words, or code shown in a monospace font.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Span {
    Text(String),
    Code(String),
}

type Rich = Vec<Span>;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Block {
    Para(Rich),
    Field { label: String, value: Rich },
    List { label: String, items: Vec<String> },
}

impl Message {
    /// The body in `dialect`, without the title.
    pub fn body(&self, dialect: Dialect) -> String {
        let mut out = String::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let next_is_field = matches!(
                self.blocks.get(i + 1),
                Some(Block::Field { .. } | Block::List { .. })
            );
            match block {
                Block::Para(r) if dialect == Dialect::Html => {
                    out.push_str(&format!("<p>{}</p>\n", rich(dialect, r)));
                }
                Block::Para(r) => {
                    out.push_str(&rich(dialect, r));
                    out.push_str("\n\n");
                }
                Block::Field { label, value } => {
                    out.push_str(&field(dialect, label, &rich(dialect, value)));
                    out.push('\n');
                    if !next_is_field && dialect != Dialect::Html {
                        out.push('\n');
                    }
                }
                Block::List { label, items } => {
                    out.push_str(&list(dialect, label, items));
                    if !next_is_field && dialect != Dialect::Html {
                        out.push('\n');
                    }
                }
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        if dialect == Dialect::Html {
            out = format!("<div>\n{out}\n</div>");
        }
        out
    }

    /// The title escaped for `dialect` (for dialects that put it inside the body).
    pub fn title_in(&self, dialect: Dialect) -> String {
        esc(dialect, &self.title)
    }

    /// A whole HTML e-mail document (title as heading, then the body).
    pub fn html_document(&self) -> String {
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body style=\"font-family: sans-serif\">\n<h2 style=\"color: {c}\">{t}</h2>\n{b}\n</body></html>\n",
            t = esc(Dialect::Html, &self.title),
            c = self.tone.html_colour(),
            b = self.body(Dialect::Html)
        )
    }
}

impl Tone {
    /// Feishu card header template.
    pub fn feishu_template(self) -> &'static str {
        match self {
            Tone::Critical => "red",
            Tone::Warning => "orange",
            Tone::Unknown => "grey",
            Tone::Resolved => "green",
            Tone::Test => "blue",
        }
    }

    fn html_colour(self) -> &'static str {
        match self {
            Tone::Critical => "#c62828",
            Tone::Warning => "#ef6c00",
            Tone::Unknown => "#616161",
            Tone::Resolved => "#2e7d32",
            Tone::Test => "#1565c0",
        }
    }
}

/// Renders `event` in `lang`, with times in `tz`.
pub fn render(event: &AlertEvent, lang: Language, tz: crate::zone::Zone) -> Message {
    let t = |key: &str| i18n::text(lang, key);
    // Alerts about storeguard itself are not about a marketplace.
    let mp = event
        .subject
        .marketplace()
        .map_or("storeguard", |m| m.display_name());
    let finding = t(&format!("finding.{}", event.finding.as_str()));
    let store_name = clean(event.subject.name(), 120);
    let store_id = clean(&event.subject.key(), 80);
    let grouped = is_grouped(event);
    let count = if event.affected.is_empty() {
        String::from("?")
    } else {
        event.affected.len().to_string()
    };
    let status = status_word(lang, event.severity);
    let open_for = human_duration(lang, event.created_at - event.opened_at);

    // Title.
    let mut tag = match event.event {
        EventKind::Opened => fill(lang, "alert.tag", &[("tag", &status)]),
        EventKind::Reminder => {
            let inner = fill(lang, "alert.tag.reminder", &[("status", &status)]);
            fill(lang, "alert.tag", &[("tag", &inner)])
        }
        EventKind::Resolved => {
            let inner = t("alert.tag.resolved").to_string();
            fill(lang, "alert.tag", &[("tag", &inner)])
        }
    };
    if event.test {
        let test = fill(lang, "alert.tag", &[("tag", t("alert.tag.test"))]);
        tag = if lang == Language::ZhCn {
            format!("{test}{tag}")
        } else {
            format!("{test} {tag}")
        };
    }
    let title = if grouped {
        let key = if event.finding == FindingKind::Unreachable {
            "alert.title.group.unreachable"
        } else {
            "alert.title.group"
        };
        fill(
            lang,
            key,
            &[
                ("tag", &tag),
                ("marketplace", mp),
                ("finding", finding),
                ("count", &count),
            ],
        )
    } else {
        fill(
            lang,
            "alert.title.store",
            &[
                ("tag", &tag),
                ("store", &store_name),
                ("marketplace", mp),
                ("finding", finding),
            ],
        )
    };

    // Body.
    let args: Vec<(&str, &str)> = vec![
        ("marketplace", mp),
        ("finding", finding),
        ("store_id", &store_id),
        ("count", &count),
        ("duration", &open_for),
    ];
    let mut blocks = Vec::new();
    if event.test {
        blocks.push(Block::Para(rich_text(lang, "alert.head.test", &args)));
    }
    match event.event {
        EventKind::Resolved => {
            let key = if grouped {
                "alert.head.group.resolved"
            } else {
                "alert.head.resolved"
            };
            blocks.push(Block::Para(rich_text(lang, key, &args)));
        }
        EventKind::Reminder => {
            blocks.push(Block::Para(rich_text(lang, "alert.head.reminder", &args)));
            blocks.push(Block::Para(explain(lang, event, grouped, &args)));
        }
        EventKind::Opened => blocks.push(Block::Para(explain(lang, event, grouped, &args))),
    }
    if !grouped {
        let value = if store_name == store_id {
            vec![Span::Code(store_id.clone())]
        } else {
            vec![
                Span::Text(format!("{store_name} (")),
                Span::Code(store_id.clone()),
                Span::Text(")".into()),
            ]
        };
        blocks.push(Block::Field {
            label: t("alert.label.store").into(),
            value,
        });
    }
    blocks.push(Block::Field {
        label: t("alert.label.marketplace").into(),
        value: vec![Span::Text(mp.into())],
    });
    blocks.push(Block::Field {
        label: t("alert.label.problem").into(),
        value: vec![Span::Text(fill(
            lang,
            "alert.problem",
            &[("finding", finding), ("status", &status)],
        ))],
    });
    let detail = clean(&event.detail, 300);
    if !detail.is_empty() && event.event != EventKind::Resolved {
        blocks.push(Block::Field {
            label: t(if event.finding.is_mail() {
                "alert.label.mail"
            } else {
                "alert.label.detail"
            })
            .into(),
            value: vec![Span::Text(detail)],
        });
    }
    blocks.push(Block::Field {
        label: t("alert.label.since").into(),
        value: vec![Span::Text(local_time(event.opened_at, tz))],
    });
    if event.event == EventKind::Resolved {
        blocks.push(Block::Field {
            label: t("alert.label.resolved_at").into(),
            value: vec![Span::Text(local_time(event.created_at, tz))],
        });
    }
    if !event.affected.is_empty() {
        let mut items: Vec<String> = event
            .affected
            .iter()
            .take(MAX_LISTED)
            .map(|s| clean(s, 80))
            .collect();
        if event.affected.len() > MAX_LISTED {
            let more = (event.affected.len() - MAX_LISTED).to_string();
            items.push(fill(lang, "alert.more", &[("count", &more)]));
        }
        blocks.push(Block::List {
            label: fill(lang, "alert.label.affected", &[("count", &count)]),
            items,
        });
    }
    if event.event != EventKind::Resolved {
        let todo = if event.test {
            rich_text(lang, "alert.todo.test", &args)
        } else {
            rich_text(lang, &todo_key(lang, event, grouped), &args)
        };
        blocks.push(Block::Field {
            label: t("alert.label.todo").into(),
            value: todo,
        });
    }

    // Always the word "storeguard": DingTalk and Feishu robots can require a keyword.
    blocks.push(Block::Para(rich_text(lang, "alert.footer", &args)));

    let tone = if event.test {
        Tone::Test
    } else if event.event == EventKind::Resolved {
        Tone::Resolved
    } else {
        match event.severity {
            Severity::Critical => Tone::Critical,
            Severity::Warning => Tone::Warning,
            Severity::Unknown => Tone::Unknown,
        }
    };
    let mut msg = Message {
        title: clean(&title, 250),
        text: String::new(),
        markdown: String::new(),
        tone,
        blocks,
    };
    msg.text = msg.body(Dialect::Plain);
    msg.markdown = msg.body(Dialect::Markdown);
    msg
}

/// A marketplace-wide incident (or one with its affected stores listed).
pub fn is_grouped(event: &AlertEvent) -> bool {
    !event.affected.is_empty() || matches!(event.subject, Subject::Marketplace(_))
}

fn explain(lang: Language, event: &AlertEvent, grouped: bool, args: &[(&str, &str)]) -> Vec<Span> {
    let key = if grouped {
        if event.finding == FindingKind::Unreachable {
            "alert.explain.group.unreachable".to_string()
        } else {
            "alert.explain.group".to_string()
        }
    } else {
        format!("alert.explain.{}", event.finding.as_str())
    };
    rich_text(lang, &key, args)
}

fn todo_key(lang: Language, event: &AlertEvent, grouped: bool) -> String {
    if grouped {
        return if event.finding == FindingKind::Unreachable {
            "alert.todo.group.unreachable".into()
        } else {
            "alert.todo.group".into()
        };
    }
    let specific = match event.subject.marketplace() {
        Some(m) => format!("alert.todo.{}.{}", event.finding.as_str(), m.as_str()),
        None => String::new(),
    };
    if specific.is_empty() || i18n::lookup(lang, &specific).is_none() {
        format!("alert.todo.{}", event.finding.as_str())
    } else {
        specific
    }
}

/// The status word for a severity ("CRITICAL" / "严重").
fn status_word(lang: Language, s: Severity) -> String {
    let key = match s {
        Severity::Critical => "status.CRITICAL",
        Severity::Warning => "status.WARNING",
        Severity::Unknown => "status.UNKNOWN",
    };
    i18n::text(lang, key).to_string()
}

/// `2026-11-26 09:30 CST`.
pub fn local_time(t: DateTime<Utc>, tz: crate::zone::Zone) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// `2d 3h`, `3h 20m`, `45m` (or in Chinese).
pub fn human_duration(lang: Language, d: chrono::TimeDelta) -> String {
    let mins = d.num_minutes().max(0);
    if mins == 0 {
        return i18n::text(lang, "duration.under_minute").to_string();
    }
    let (days, hours, minutes) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    let mut parts = Vec::new();
    let unit = |key: &str, n: i64| fill(lang, key, &[("n", &n.to_string())]);
    if days > 0 {
        parts.push(unit("duration.days", days));
        if hours > 0 {
            parts.push(unit("duration.hours", hours));
        }
    } else {
        if hours > 0 {
            parts.push(unit("duration.hours", hours));
        }
        if minutes > 0 {
            parts.push(unit("duration.minutes", minutes));
        }
    }
    parts.join(" ")
}

/// Fills `{name}` placeholders in one pass (a value containing `{x}` is left alone).
fn fill(lang: Language, key: &str, args: &[(&str, &str)]) -> String {
    i18n::fill(i18n::text(lang, key), args)
}

/// A catalogue sentence as spans: text between backticks becomes code; placeholders are
/// filled after the split, so a value cannot open or close a code span.
fn rich_text(lang: Language, key: &str, args: &[(&str, &str)]) -> Vec<Span> {
    i18n::text(lang, key)
        .split('`')
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, s)| {
            let s = i18n::fill(s, args);
            if i % 2 == 1 {
                Span::Code(s)
            } else {
                Span::Text(s)
            }
        })
        .collect()
}

/// Untrusted text made printable: one line, no control characters, capped.
fn clean(s: &str, max: usize) -> String {
    sanitize(s, max)
}

fn rich(dialect: Dialect, spans: &[Span]) -> String {
    let mut out = String::new();
    for s in spans {
        match s {
            Span::Text(t) => out.push_str(&esc(dialect, t)),
            Span::Code(c) => out.push_str(&code(dialect, c)),
        }
    }
    out
}

fn field(dialect: Dialect, label: &str, value: &str) -> String {
    let l = esc(dialect, label);
    // Plain Chinese needs no space after "：". Markup always gets one: CommonMark (and Slack)
    // do not close `**` between punctuation and a letter ("**店铺：**Ozon" stays unbold).
    let sep = if dialect != Dialect::Plain || label.ends_with(':') {
        " "
    } else {
        ""
    };
    match dialect {
        Dialect::Plain => format!("{l}{sep}{value}"),
        Dialect::Markdown | Dialect::LarkMd => format!("- **{l}**{sep}{value}"),
        Dialect::TelegramHtml => format!("<b>{l}</b>{sep}{value}"),
        Dialect::SlackMrkdwn => format!("*{l}*{sep}{value}"),
        Dialect::Html => format!("<p><b>{l}</b>{sep}{value}</p>"),
    }
}

fn list(dialect: Dialect, label: &str, items: &[String]) -> String {
    let l = esc(dialect, label);
    let mut out = match dialect {
        Dialect::Plain => format!("{l}\n"),
        Dialect::Markdown | Dialect::LarkMd => format!("- **{l}**\n"),
        Dialect::TelegramHtml => format!("<b>{l}</b>\n"),
        Dialect::SlackMrkdwn => format!("*{l}*\n"),
        Dialect::Html => format!("<p><b>{l}</b></p>\n<ul>\n"),
    };
    for item in items {
        let i = esc(dialect, item);
        match dialect {
            Dialect::Plain => out.push_str(&format!("  - {i}\n")),
            Dialect::Markdown | Dialect::LarkMd => out.push_str(&format!("  - {i}\n")),
            Dialect::TelegramHtml | Dialect::SlackMrkdwn => out.push_str(&format!("• {i}\n")),
            Dialect::Html => out.push_str(&format!("<li>{i}</li>\n")),
        }
    }
    if dialect == Dialect::Html {
        out.push_str("</ul>\n");
    }
    out
}

/// Escapes text for `dialect` so that it shows literally.
pub fn esc(dialect: Dialect, s: &str) -> String {
    if dialect == Dialect::Html {
        // E-mail HTML is escaped exactly as the status page is.
        return crate::web::html::escape(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match dialect {
            Dialect::Plain => out.push(c),
            Dialect::Markdown => match c {
                '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '~' | '|' | '#' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            },
            Dialect::TelegramHtml | Dialect::SlackMrkdwn => match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                _ => out.push(c),
            },
            Dialect::Html => unreachable!("handled above"),
            // Feishu's card Markdown takes HTML character references for its syntax characters.
            Dialect::LarkMd => match c {
                // Only what can start markup mid-line: emphasis, links, tags, code, escapes.
                '&' | '<' | '>' | '*' | '_' | '~' | '[' | ']' | '\\' | '`' => {
                    out.push_str(&format!("&#{};", c as u32))
                }
                _ => out.push(c),
            },
        }
    }
    out
}

fn code(dialect: Dialect, s: &str) -> String {
    match dialect {
        Dialect::Plain => format!("`{s}`"),
        // A code span cannot hold its own delimiter; nothing we show as code needs one.
        Dialect::Markdown | Dialect::LarkMd | Dialect::SlackMrkdwn => {
            let inner: String = s.chars().map(|c| if c == '`' { '\'' } else { c }).collect();
            let inner = if dialect == Dialect::SlackMrkdwn {
                esc(Dialect::SlackMrkdwn, &inner)
            } else {
                inner
            };
            format!("`{inner}`")
        }
        Dialect::TelegramHtml => format!("<code>{}</code>", esc(dialect, s)),
        Dialect::Html => format!("<code>{}</code>", esc(dialect, s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Marketplace;
    use chrono::TimeZone;

    fn event(kind: EventKind) -> AlertEvent {
        AlertEvent {
            event_id: "ev-1".into(),
            event: kind,
            incident_id: "inc-1".into(),
            subject: crate::event::Subject::store(
                "ozon-main",
                "Ozon 主店 (Moscow)",
                Marketplace::Ozon,
            ),
            severity: Severity::Critical,
            finding: FindingKind::AuthRejected,
            detail: "Api-key is deactivated".into(),
            opened_at: Utc.with_ymd_and_hms(2026, 11, 26, 1, 30, 0).unwrap(),
            created_at: Utc.with_ymd_and_hms(2026, 11, 26, 4, 50, 0).unwrap(),
            affected: vec![],
            test: false,
        }
    }

    fn sh() -> crate::zone::Zone {
        crate::zone::Zone::named("Asia/Shanghai").unwrap()
    }

    #[test]
    fn opened_in_english() {
        let m = render(&event(EventKind::Opened), Language::En, sh());
        assert_eq!(
            m.title,
            "[CRITICAL] Ozon 主店 (Moscow) · Ozon: login refused (key, token or secret rejected)"
        );
        assert!(
            m.text.contains("Store: Ozon 主店 (Moscow) (`ozon-main`)"),
            "{}",
            m.text
        );
        assert!(m.text.contains("Since: 2026-11-26 09:30 CST"), "{}", m.text);
        assert!(m.text.contains("Marketplace said: Api-key is deactivated"));
        assert!(
            m.text.contains(
                "API key deactivated or deleted: create a new key in Seller Center → Settings → API keys, then run `storeguard vault edit store/ozon-main`."
            ),
            "{}",
            m.text
        );
    }

    #[test]
    fn opened_in_chinese() {
        let m = render(&event(EventKind::Opened), Language::ZhCn, sh());
        assert_eq!(
            m.title,
            "【严重】Ozon 主店 (Moscow) · Ozon：登录被拒绝（密钥、令牌或密码无效）"
        );
        assert!(
            m.text.contains("店铺：Ozon 主店 (Moscow) (`ozon-main`)"),
            "{}",
            m.text
        );
        assert!(m.text.contains("开始时间：2026-11-26 09:30 CST"));
        assert!(m.text.contains("卖家后台 → 设置 → API 密钥"));
        assert!(m.markdown.contains("- **处理方法：**"), "{}", m.markdown);
    }

    #[test]
    fn resolved_and_reminder_read_differently() {
        let r = render(&event(EventKind::Resolved), Language::En, sh());
        assert!(r.title.starts_with("[RESOLVED] "), "{}", r.title);
        assert!(r.text.starts_with("Fixed: login refused"), "{}", r.text);
        assert!(r.text.contains("after 3h 20m"), "{}", r.text);
        assert!(r.text.contains("Resolved at: 2026-11-26 12:50 CST"));
        assert!(!r.text.contains("What to do"));
        let m = render(&event(EventKind::Reminder), Language::ZhCn, sh());
        assert!(m.title.starts_with("【仍未解决 · 严重】"), "{}", m.title);
        assert!(
            m.text.starts_with("问题仍未解决，已持续 3 小时 20 分钟。"),
            "{}",
            m.text
        );
        assert_eq!(r.tone, Tone::Resolved);
    }

    #[test]
    fn grouped_event() {
        let mut e = event(EventKind::Opened);
        e.subject = Subject::Marketplace(Marketplace::Ozon);
        e.finding = FindingKind::Unreachable;
        e.severity = Severity::Unknown;
        e.affected = (1..=37).map(|i| format!("ozon-{i}")).collect();
        let m = render(&e, Language::En, sh());
        assert_eq!(
            m.title,
            "[UNKNOWN] Ozon API unreachable: 37 stores affected"
        );
        assert!(
            m.text.contains("Stores affected (37):\n  - ozon-1\n"),
            "{}",
            m.text
        );
        assert!(m.text.contains("… and 27 more"));
        assert!(!m.text.contains("ozon-11"));
        let z = render(&e, Language::ZhCn, sh());
        assert_eq!(z.title, "【未知】Ozon API 无法访问：37 家店铺受影响");
    }

    #[test]
    fn test_messages_are_marked() {
        let mut e = event(EventKind::Opened);
        e.test = true;
        let m = render(&e, Language::En, sh());
        assert!(m.title.starts_with("[TEST] [CRITICAL]"), "{}", m.title);
        assert!(m.text.starts_with("This is a test message"));
        assert!(m.text.contains("What to do: Nothing: this is only a test."));
        let z = render(&e, Language::ZhCn, sh());
        assert!(z.title.starts_with("【测试】【严重】"), "{}", z.title);
        assert_eq!(z.tone, Tone::Test);
    }

    #[test]
    fn hostile_text_is_escaped_in_every_dialect() {
        let mut e = event(EventKind::Opened);
        e.subject = Subject::store("ozon-main", "A*B_<b>&[x](y)`", Marketplace::Ozon);
        e.detail = "err <script> & *bold* `tick`\n\x1b[31m".into();
        let m = render(&e, Language::En, sh());
        let md = m.body(Dialect::Markdown);
        assert!(md.contains(r"A\*B\_\<b\>&\[x\](y)\`"), "{md}");
        let tg = m.body(Dialect::TelegramHtml);
        assert!(tg.contains("A*B_&lt;b&gt;&amp;[x](y)`"), "{tg}");
        assert!(tg.contains("err &lt;script&gt; &amp; *bold*"), "{tg}");
        assert!(!tg.contains('\x1b'));
        let sl = m.body(Dialect::SlackMrkdwn);
        assert!(sl.contains("&lt;b&gt;&amp;"), "{sl}");
        let lark = m.body(Dialect::LarkMd);
        assert!(
            lark.contains("A&#42;B&#95;&#60;b&#62;&#38;&#91;x&#93;(y)&#96;"),
            "{lark}"
        );
        let html = m.html_document();
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn durations() {
        let d = |m: i64| chrono::TimeDelta::minutes(m);
        assert_eq!(human_duration(Language::En, d(0)), "less than a minute");
        assert_eq!(human_duration(Language::En, d(45)), "45m");
        assert_eq!(human_duration(Language::En, d(200)), "3h 20m");
        assert_eq!(human_duration(Language::En, d(3 * 1440 + 61)), "3d 1h");
        assert_eq!(human_duration(Language::ZhCn, d(61)), "1 小时 1 分钟");
    }

    #[test]
    fn every_finding_and_marketplace_renders_in_both_languages() {
        for lang in [Language::En, Language::ZhCn] {
            for f in FindingKind::ALL {
                for mp in Marketplace::ALL {
                    let mut e = event(EventKind::Opened);
                    e.finding = f;
                    e.subject = Subject::store("s", "S", mp);
                    let m = render(&e, lang, sh());
                    assert!(!m.text.contains('{'), "{f} {mp}: {}", m.text);
                    assert!(!m.title.contains('{'));
                    assert!(m.text.lines().count() >= 5);
                }
            }
        }
    }
}
