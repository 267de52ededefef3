//! The real parts the daemon runs with: the marketplace prober as its checker, the channel
//! set as its sender.

use super::{Checker, Parts, Sender};
use crate::alert::{ChannelSet, Delivery};
use crate::clock::BoxFuture;
use crate::config::Config;
use crate::event::AlertEvent;
use crate::marketplace::Prober;
use crate::outcome::Outcome;
use crate::vault::{Identity, Vault};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

impl Checker for Prober {
    fn check<'a>(
        &'a self,
        store_id: &'a str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Option<Outcome>> {
        Box::pin(Prober::check(self, store_id, now))
    }

    fn entry_changed(&self, store_id: &str) -> bool {
        Prober::entry_changed(self, store_id)
    }

    fn unreadable(&self) -> Vec<(String, String)> {
        Prober::unreadable(self)
    }

    fn remember(&self, store_id: &str, facts: &crate::outcome::Facts) {
        Prober::remember(self, store_id, facts)
    }

    fn set_token_mirror(&self, mirror: Arc<dyn crate::marketplace::TokenMirror>) {
        Prober::set_token_mirror(self, mirror)
    }
}

impl Sender for ChannelSet {
    fn send<'a>(
        &'a self,
        channel: &'a str,
        event: &'a AlertEvent,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Delivery> {
        Box::pin(ChannelSet::send(self, channel, event, now))
    }
}

/// Real prober and channels; the prober is kept across reloads (token caches survive).
pub struct RealParts {
    pub vault: Vault,
    pub identity: Arc<Identity>,
    prober: Mutex<Option<Arc<Prober>>>,
}

impl RealParts {
    pub fn new(vault: Vault, identity: Arc<Identity>) -> Self {
        RealParts {
            vault,
            identity,
            prober: Mutex::new(None),
        }
    }
}

impl Parts for RealParts {
    fn vault(&self) -> Option<(Vault, Arc<Identity>)> {
        Some((self.vault.clone(), self.identity.clone()))
    }

    fn mail(&self, config: &Config) -> Vec<super::mail::MailLogin> {
        let mut out = Vec::new();
        for mb in &config.mailboxes {
            match crate::mail::imap::Secret::load(mb, &self.vault, &self.identity) {
                Ok(secret) => out.push(super::mail::MailLogin {
                    mailbox: mb.clone(),
                    secret,
                }),
                Err(e) => {
                    tracing::error!(mailbox = %mb.name, error = %e, "this mailbox is not watched")
                }
            }
        }
        out
    }

    fn build(&self, config: &Arc<Config>) -> anyhow::Result<(Arc<dyn Checker>, Arc<dyn Sender>)> {
        let channels = Arc::new(ChannelSet::new(config, &self.vault, &self.identity)?);
        let mut slot = self.prober.lock().unwrap_or_else(|e| e.into_inner());
        let prober = match slot.as_ref() {
            Some(p) => {
                p.reload(config.clone())?;
                p.clone()
            }
            None => {
                let p = Arc::new(Prober::new(
                    config.clone(),
                    self.vault.clone(),
                    self.identity.clone(),
                )?);
                *slot = Some(p.clone());
                p
            }
        };
        Ok((prober, channels))
    }
}
