//! `[mail]` and `[[mailbox]]`: the stores' mailboxes, watched for marketplace security mail.

use super::*;

impl MailSettings {
    pub(super) fn from_raw(m: &RawMail, c: &mut Collector<'_>) -> MailSettings {
        let resolver =
            m.resolver
                .as_ref()
                .and_then(|r| match r.get_ref().trim().parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        c.at(
                            r.span(),
                            format!(
                                "resolver `{}` is not an IP:port",
                                crate::outcome::sanitize(r.get_ref(), 60)
                            ),
                            "write it like \"127.0.0.1:53\", or leave it out to use the system's",
                        );
                        None
                    }
                });
        let backfill = duration_field(
            c,
            m.backfill.as_ref(),
            Duration::from_secs(7 * 86_400),
            "backfill",
            Duration::ZERO,
        );
        if backfill > Duration::from_secs(90 * 86_400)
            && let Some(b) = &m.backfill
        {
            c.at(
                b.span(),
                "backfill is longer than 90 days",
                "use at most \"90d\" (older mail says nothing about today's logins)",
            );
        }
        let poll = duration_field(
            c,
            m.poll.as_ref(),
            Duration::from_secs(120),
            "poll",
            Duration::from_secs(1),
        );
        let catalogue = m.catalogue.as_ref().and_then(|f| {
            let path = relative_to(c.src.path, f.get_ref());
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    c.at(
                        f.span(),
                        format!("cannot read the mail catalogue {}: {e}", path.display()),
                        "fix the path (relative paths start at this file's directory), or leave `catalogue` out to use the built-in one",
                    );
                    return None;
                }
            };
            match crate::mail::Catalogue::with_user(&text) {
                Ok(_) => Some((path, text)),
                Err(e) => {
                    c.at(
                        f.span(),
                        format!("the mail catalogue {} is not valid: {e}", path.display()),
                        "see README, Security mail, for its [[marketplace]] and [[rule]] tables",
                    );
                    None
                }
            }
        });
        MailSettings {
            resolver,
            backfill,
            poll,
            catalogue,
        }
    }
}

impl Mailbox {
    pub(super) fn from_raw(
        m: Spanned<RawMailbox>,
        stores: &[Store],
        names: &mut HashSet<String>,
        c: &mut Collector<'_>,
    ) -> Option<Mailbox> {
        let m = m.into_inner();
        let name = m.name.get_ref().clone();
        let mut ok = true;
        if !is_valid_id(&name) {
            c.at(
                m.name.span(),
                format!("mailbox name `{name}` is not allowed"),
                "use lowercase letters, digits, '-' and '_' (e.g. \"us-mail\")",
            );
            ok = false;
        } else if !names.insert(name.clone()) {
            c.at(
                m.name.span(),
                format!("duplicate mailbox name `{name}`"),
                "give every [[mailbox]] its own name",
            );
            ok = false;
        }
        let host = m.host.get_ref().trim().to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            c.at(
                m.host.span(),
                format!("mailbox `{name}`: `host` is not a host name"),
                "write the IMAP server's name, e.g. \"imap.qq.com\"",
            );
            ok = false;
        }
        let tls = m.tls.as_ref().map_or(MailTls::Tls, |t| *t.get_ref());
        if tls == MailTls::None && !crate::http::is_loopback_host(&host) {
            let span = m.tls.as_ref().map_or(m.host.span(), |t| t.span());
            c.at(
                span,
                format!("mailbox `{name}`: tls = \"none\" off loopback would send its password in the clear"),
                "use tls = \"tls\" (port 993) or \"starttls\" (143)",
            );
            ok = false;
        }
        let port = m.port.as_ref().map_or(
            match tls {
                MailTls::Tls => 993,
                MailTls::Starttls | MailTls::None => 143,
            },
            |p| *p.get_ref(),
        );
        if port == 0 {
            c.at(
                m.port.as_ref().map_or(m.host.span(), |p| p.span()),
                format!("mailbox `{name}`: port 0"),
                "use 993 (tls) or 143 (starttls)",
            );
            ok = false;
        }
        let username = m.username.get_ref().trim().to_string();
        if username.is_empty() {
            c.at(
                m.username.span(),
                format!("mailbox `{name}` has an empty `username`"),
                "write the mailbox's login, usually its address",
            );
            ok = false;
        }
        let mut served = Vec::new();
        for s in m.stores.get_ref() {
            if stores.iter().any(|x| x.id == *s.get_ref()) {
                if !served.contains(s.get_ref()) {
                    served.push(s.get_ref().clone());
                }
            } else {
                c.at(
                    s.span(),
                    format!(
                        "mailbox `{name}`: unknown store `{}`",
                        crate::outcome::sanitize(s.get_ref(), 64)
                    ),
                    "name stores by their `id` in a [[store]] table",
                );
                ok = false;
            }
        }
        if served.is_empty() && ok {
            c.at(
                m.stores.span(),
                format!("mailbox `{name}` serves no store"),
                "list the stores whose marketplace mail arrives here: stores = [\"amazon-us\"]",
            );
            ok = false;
        }
        ok.then(|| Mailbox {
            name,
            host,
            port,
            tls,
            username,
            auth: m.auth.unwrap_or_default(),
            stores: served,
            folders: m
                .folders
                .iter()
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect(),
        })
    }
}
