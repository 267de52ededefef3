//! E-mail over SMTP with lettre: STARTTLS (587) or implicit TLS (465) through rustls, or plain
//! SMTP to a loopback relay only; AUTH from the vault; a plain-text and an HTML part.
//!
//! SMTP says itself what is temporary: 4xx replies retry, 5xx replies are permanent. Network
//! and TLS failures retry (the relay may be restarting).

use super::AlertEvent;
use super::render::Message;
use super::wire::Verdict;
use crate::config::SmtpTls;
use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Email {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<SecretString>,
    pub password: Option<SecretString>,
}

/// Whether `host` is a loopback address or `localhost` (plain SMTP is allowed only there).
pub fn is_loopback(host: &str) -> bool {
    crate::http::is_loopback_host(host)
}

impl Email {
    /// The message as it goes on the wire.
    pub fn message(
        &self,
        event: &AlertEvent,
        msg: &Message,
        now: DateTime<Utc>,
    ) -> Result<lettre::Message, String> {
        let domain = self.from.email.domain().to_string();
        let id: String = event
            .event_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            .take(100)
            .collect();
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(msg.title.clone())
            .date(std::time::SystemTime::from(now))
            .message_id(Some(format!("<storeguard.{id}@{domain}>")))
            .user_agent(crate::http::user_agent());
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.multipart(MultiPart::alternative_plain_html(
            msg.text.clone(),
            msg.html_document(),
        ))
        .map_err(|e| format!("cannot build the e-mail: {e}"))
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let b = match self.tls {
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host),
            SmtpTls::None => {
                if !is_loopback(&self.host) {
                    return Err(
                        "plain SMTP (smtp_tls = \"none\") is allowed only to a loopback relay"
                            .into(),
                    );
                }
                Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                    &self.host,
                ))
            }
        };
        let mut b = b
            .map_err(|e| format!("SMTP setup failed: {e}"))?
            .port(self.port)
            .timeout(Some(SMTP_TIMEOUT));
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            b = b.credentials(Credentials::new(
                u.expose_secret().to_string(),
                p.expose_secret().to_string(),
            ));
        }
        Ok(b.build())
    }

    pub async fn send(&self, event: &AlertEvent, msg: &Message, now: DateTime<Utc>) -> Verdict {
        let message = match self.message(event, msg, now) {
            Ok(m) => m,
            Err(e) => return Verdict::Permanent(e),
        };
        let transport = match self.transport() {
            Ok(t) => t,
            Err(e) => return Verdict::Permanent(e),
        };
        match transport.send(message).await {
            Ok(_) => Verdict::Delivered,
            Err(e) => classify(&e),
        }
    }
}

/// 5xx permanent, 4xx retry; failures without an SMTP reply retry, except client-side errors.
pub fn classify(e: &lettre::transport::smtp::Error) -> Verdict {
    let text = one_line(e);
    if e.is_permanent() {
        Verdict::Permanent(format!("the SMTP server refused the message: {text}"))
    } else if e.is_transient() {
        Verdict::retry(format!("the SMTP server asked to retry: {text}"))
    } else if e.is_client() {
        Verdict::Permanent(format!("SMTP client error: {text}"))
    } else if e.is_timeout() {
        Verdict::retry("the SMTP server timed out")
    } else {
        Verdict::retry(format!("SMTP failed: {text}"))
    }
}

fn one_line(e: &dyn std::error::Error) -> String {
    crate::http::error_chain_capped(e, 300)
}

/// Parses one address for the config's `from` / `to`.
pub fn mailbox(s: &str) -> Result<Mailbox, String> {
    s.parse::<Mailbox>()
        .map_err(|_| format!("`{s}` is not an e-mail address"))
}
