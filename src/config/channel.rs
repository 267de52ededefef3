//! `[[channel]]`: where alerts go.

use super::*;

impl Channel {
    pub(super) fn from_raw(
        c: &mut Collector<'_>,
        ch: RawChannel,
        span: std::ops::Range<usize>,
        names: &mut HashSet<String>,
    ) -> Option<Channel> {
        let name = ch.name.get_ref().clone();
        let kind = *ch.kind.get_ref();
        let mut ok = true;
        if !is_valid_id(&name) {
            c.at(
                ch.name.span(),
                format!("channel name `{name}` is not allowed"),
                "use lowercase letters, digits, '-' and '_' (e.g. \"ops-dingtalk\")",
            );
            ok = false;
        }
        if !names.insert(name.clone()) {
            c.at(
                ch.name.span(),
                format!("duplicate channel name `{name}`"),
                "give every [[channel]] its own name",
            );
            ok = false;
        }
        // Settings that belong to one kind only.
        let mut only =
            |present: bool, field: &str, for_kinds: &[ChannelKind], at: std::ops::Range<usize>| {
                if present && !for_kinds.contains(&kind) {
                    let kinds: Vec<&str> = for_kinds.iter().map(|k| k.as_str()).collect();
                    c.at(
                        at,
                        format!(
                            "channel `{name}`: `{field}` applies only to {} channels",
                            kinds.join("/")
                        ),
                        "remove it",
                    );
                    ok = false;
                }
            };
        use ChannelKind as K;
        let sp = |o: Option<std::ops::Range<usize>>| o.unwrap_or(span.clone());
        only(
            ch.from.is_some(),
            "from",
            &[K::Email],
            sp(ch.from.as_ref().map(|v| v.span())),
        );
        only(
            ch.to.is_some(),
            "to",
            &[K::Email],
            sp(ch.to.as_ref().map(|v| v.span())),
        );
        only(
            ch.smtp_host.is_some(),
            "smtp_host",
            &[K::Email],
            sp(ch.smtp_host.as_ref().map(|v| v.span())),
        );
        only(
            ch.smtp_port.is_some(),
            "smtp_port",
            &[K::Email],
            sp(ch.smtp_port.as_ref().map(|v| v.span())),
        );
        only(
            ch.smtp_tls.is_some(),
            "smtp_tls",
            &[K::Email],
            sp(ch.smtp_tls.as_ref().map(|v| v.span())),
        );
        only(
            ch.chat_id.is_some(),
            "chat_id",
            &[K::Telegram],
            sp(ch.chat_id.as_ref().map(|v| v.span())),
        );
        only(
            ch.urls.is_some(),
            "urls",
            &[K::Alertmanager],
            sp(ch.urls.as_ref().map(|v| v.span())),
        );
        only(
            ch.endpoint.is_some(),
            "endpoint",
            &[
                K::Dingtalk,
                K::Wecom,
                K::Feishu,
                K::Telegram,
                K::Slack,
                K::Webhook,
            ],
            sp(ch.endpoint.as_ref().map(|v| v.span())),
        );
        let endpoint = ch
            .endpoint
            .as_ref()
            .and_then(|e| match check_endpoint(e.get_ref()) {
                Ok(u) => Some(u),
                Err((m, h)) => {
                    c.at(e.span(), m, h);
                    None
                }
            });
        let missing = |c: &mut Collector<'_>, field: &str, example: &str| {
            c.at(
                span.clone(),
                format!("{kind} channel `{name}` has no `{field}`"),
                format!("add {field} = {example}"),
            );
        };
        let settings = match kind {
            K::Email => {
                let from = ch.from.as_ref().map(|v| v.get_ref().clone());
                let to = ch
                    .to
                    .as_ref()
                    .map(|v| v.get_ref().clone())
                    .unwrap_or_default();
                let host = ch.smtp_host.as_ref().map(|v| v.get_ref().clone());
                if from.is_none() {
                    missing(c, "from", "\"storeguard@example.com\"");
                }
                if to.is_empty() {
                    missing(c, "to", "[\"ops@example.com\"]");
                }
                if host.is_none() {
                    missing(c, "smtp_host", "\"smtp.example.com\"");
                }
                let tls = ch
                    .smtp_tls
                    .as_ref()
                    .map_or(SmtpTls::Starttls, |t| *t.get_ref());
                if let (Some(h), Some(t)) = (&host, &ch.smtp_tls) {
                    let loopback = crate::http::is_loopback_host(h);
                    if *t.get_ref() == SmtpTls::None && !loopback {
                        c.at(
                            t.span(),
                            format!(
                                "channel `{name}`: smtp_tls = \"none\" to a host that is not loopback"
                            ),
                            "use \"starttls\" or \"tls\"; plain SMTP is allowed only to a local relay",
                        );
                    }
                }
                let port = ch.smtp_port.as_ref().map_or(
                    match tls {
                        SmtpTls::Tls => 465,
                        SmtpTls::Starttls => 587,
                        SmtpTls::None => 25,
                    },
                    |p| *p.get_ref(),
                );
                match (from, host) {
                    (Some(from), Some(smtp_host)) if !to.is_empty() => ChannelSettings::Email {
                        from,
                        to,
                        smtp_host,
                        smtp_port: port,
                        tls,
                    },
                    _ => {
                        ok = false;
                        ChannelSettings::None
                    }
                }
            }
            K::Telegram => match ch.chat_id.as_ref().and_then(|v| scalar_string(v.get_ref())) {
                Some(chat_id) => ChannelSettings::Telegram { chat_id, endpoint },
                None => {
                    missing(c, "chat_id", "\"-1001234567890\"");
                    ok = false;
                    ChannelSettings::None
                }
            },
            K::Alertmanager => {
                let mut urls = Vec::new();
                for u in ch
                    .urls
                    .as_ref()
                    .map(|u| u.get_ref().as_slice())
                    .unwrap_or_default()
                {
                    match check_endpoint(u.get_ref()) {
                        Ok(url) => urls.push(url),
                        Err((m, h)) => c.at(u.span(), m, h),
                    }
                }
                if ch.urls.as_ref().is_none_or(|u| u.get_ref().is_empty()) {
                    missing(
                        c,
                        "urls",
                        "[\"http://127.0.0.1:9093\"] (every Alertmanager peer)",
                    );
                    ok = false;
                }
                ChannelSettings::Alertmanager { urls }
            }
            K::Log => ChannelSettings::None,
            _ => ChannelSettings::Endpoint(endpoint),
        };
        let mut events = Vec::new();
        for e in ch.events.iter().flatten() {
            if let Some(kind) = crate::event::EventKind::parse(e.get_ref()) {
                events.push(kind);
            } else {
                c.at(
                    e.span(),
                    format!(
                        "channel `{name}`: unknown event `{}`",
                        crate::outcome::sanitize(e.get_ref(), 40)
                    ),
                    "use \"opened\", \"reminder\" or \"resolved\"",
                );
                ok = false;
            }
        }
        ok.then_some(Channel {
            name,
            kind,
            min_severity: ch.min_severity.unwrap_or(Severity::Unknown),
            language: ch.language,
            settings,
            filter: Selector {
                stores: ch.stores.clone().unwrap_or_default(),
                tags: ch.tags.clone().unwrap_or_default(),
                marketplaces: ch.marketplaces.clone().unwrap_or_default(),
            },
            events,
        })
    }
}
