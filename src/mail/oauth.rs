//! XOAUTH2 for Gmail and Outlook mailboxes: an access token from the provider's token endpoint
//! (`grant_type=refresh_token`), kept until shortly before it expires. When the provider answers
//! with a new refresh token, it is written to the vault entry `mailbox/NAME` (atomic, checked
//! against the generation it was read at) before the access token is used, so a restart starts
//! from the token the provider still honours.

use crate::config::Mailbox;
use crate::vault::{Document, EntryId, Identity, Schema, Vault};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest token answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The provider refused the grant (revoked, expired, wrong client): someone must sign in
    /// again and store a new refresh token.
    #[error("the provider refused the refresh token: {0}")]
    Refused(String),
    #[error("the token endpoint failed: {0}")]
    Unavailable(String),
    /// The rotated refresh token could not be saved; it is kept in memory meanwhile.
    #[error("the new refresh token could not be written to the vault: {0}")]
    NotSaved(String),
}

struct Cached {
    token: SecretString,
    until: DateTime<Utc>,
}

/// A mailbox's OAuth 2 grant, read from the vault.
pub struct Grant {
    mailbox: String,
    doc: Mutex<Document>,
    vault: Vault,
    identity: Arc<Identity>,
    cached: Mutex<Option<Cached>>,
}

impl Grant {
    pub fn load(
        mailbox: &Mailbox,
        vault: &Vault,
        identity: &Arc<Identity>,
    ) -> Result<Grant, String> {
        let doc = vault
            .load(
                &EntryId::mailbox(&mailbox.name),
                Schema::Mailbox { xoauth2: true },
                identity,
            )
            .map_err(|e| e.to_string())?;
        let endpoint = doc
            .get("token_endpoint")
            .map(|e| e.expose_secret().to_string())
            .unwrap_or_default();
        match url::Url::parse(&endpoint) {
            Ok(u) if u.scheme() == "https" || crate::http::is_loopback_url(&u) => {}
            _ => {
                return Err(format!(
                    "mailbox/{}: token_endpoint must be an https URL (Gmail: https://oauth2.googleapis.com/token, Outlook: https://login.microsoftonline.com/common/oauth2/v2.0/token)",
                    mailbox.name
                ));
            }
        }
        Ok(Grant {
            mailbox: mailbox.name.clone(),
            doc: Mutex::new(doc),
            vault: vault.clone(),
            identity: identity.clone(),
            cached: Mutex::new(None),
        })
    }

    fn field(&self, name: &str) -> String {
        self.doc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|v| v.expose_secret().to_string())
            .unwrap_or_default()
    }

    /// A valid access token, from the cache or the token endpoint.
    pub async fn access_token(&self, now: DateTime<Utc>) -> Result<SecretString, GrantError> {
        if let Some(c) = self
            .cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|c| c.until > now)
        {
            return Ok(c.token.clone());
        }
        let client = crate::http::client_builder(Duration::from_secs(20))
            .build()
            .map_err(|e| GrantError::Unavailable(e.to_string()))?;
        let refresh = self.field("refresh_token");
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", &self.field("client_id")),
            ("client_secret", &self.field("client_secret")),
            ("refresh_token", &refresh),
        ];
        let resp = client
            .post(self.field("token_endpoint"))
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                GrantError::Unavailable(crate::http::HttpError::from_reqwest(e).to_string())
            })?;
        let status = resp.status();
        let body = crate::http::read_capped(resp, MAX_ANSWER)
            .await
            .map_err(|e| GrantError::Unavailable(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let text = |k: &str| json[k].as_str().unwrap_or_default().to_string();
        if !status.is_success() {
            let why = crate::outcome::sanitize(
                &format!("{} {}", text("error"), text("error_description")),
                200,
            );
            return Err(if status.as_u16() == 400 || status.as_u16() == 401 {
                GrantError::Refused(why)
            } else {
                GrantError::Unavailable(format!("HTTP {}: {why}", status.as_u16()))
            });
        }
        let access = text("access_token");
        if access.is_empty() {
            return Err(GrantError::Unavailable(
                "the answer has no access_token".into(),
            ));
        }
        let lifetime = json["expires_in"]
            .as_i64()
            .unwrap_or(3600)
            .clamp(60, 86_400);
        let rotated = text("refresh_token");
        if !rotated.is_empty() && rotated != refresh {
            self.save_refresh(rotated)?;
        }
        let token = SecretString::from(access);
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
            token: token.clone(),
            // A minute early: a token that expires mid-login is refused.
            until: now + chrono::Duration::seconds(lifetime - 60),
        });
        Ok(token)
    }

    /// Writes the provider's new refresh token to the vault before it is relied on.
    fn save_refresh(&self, rotated: String) -> Result<(), GrantError> {
        let mut doc = self.doc.lock().unwrap_or_else(|e| e.into_inner());
        let expected = doc.generation;
        // Kept in memory either way: the old refresh token may already be dead.
        doc.set("refresh_token", SecretString::from(rotated));
        let id = EntryId::mailbox(&self.mailbox);
        if let Err(e) = self
            .vault
            .write(&id, &mut doc, Some(expected), Some(&self.identity))
        {
            doc.generation = expected;
            return Err(GrantError::NotSaved(e.to_string()));
        }
        tracing::info!(mailbox = %self.mailbox, "the provider rotated the refresh token; the new one is in the vault");
        Ok(())
    }
}
