//! The mailbox watchers: one task and one persistent IMAP connection per `[[mailbox]]`. Each
//! reads new mail in INBOX, the spam folder and the extra folders, classifies it, checks its
//! DKIM signature, and records every marketplace security mail as a login record of the stores
//! the mailbox serves, with one alert per mail in the same transaction as the folder's cursor.

use super::{Parts, Shared};
use crate::config::{Config, Mailbox, Store};
use crate::event::{AlertEvent, EventKind, Subject};
use crate::mail::auth::{Verdict, Verifier};
use crate::mail::imap::{FETCH_BATCH, Folder, ImapError, Secret, Session};
use crate::mail::{Catalogue, Classified};
use crate::model::Severity;
use crate::outcome::FindingKind;
use crate::route::Routed;
use crate::state::{MailCursor, MailRecord};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One mailbox and the secret it logs in with.
pub struct MailLogin {
    pub mailbox: Mailbox,
    pub secret: Secret,
}

/// What every watcher shares.
pub struct MailCx {
    pub catalogue: Catalogue,
    pub verifier: Verifier,
}

/// Longest pause between two connection attempts.
const MAX_RETRY: Duration = Duration::from_secs(15 * 60);

/// Runs the watchers of the live config's mailboxes until `cancel`, and starts them again
/// after every reload (mailboxes added or removed, a password changed in the vault).
pub async fn supervise(shared: Arc<Shared>, parts: Arc<dyn Parts>, cancel: CancellationToken) {
    loop {
        let config = shared.live().config.clone();
        let mut logins = parts.mail(&config);
        // Replica mode: a mailbox is watched by the holder of its shard only.
        if let Some(leases) = shared.state.leases() {
            let now = std::time::Instant::now();
            logins.retain(|l| {
                leases
                    .fence_for_store(&mailbox_key(&l.mailbox.name), now)
                    .is_some()
            });
        }
        let round = cancel.child_token();
        let tasks = TaskTracker::new();
        if !logins.is_empty() {
            match Verifier::new(config.mail.resolver) {
                Ok(verifier) => {
                    let cx = Arc::new(MailCx {
                        catalogue: config.mail.catalogue(),
                        verifier,
                    });
                    for login in logins {
                        tasks.spawn(watch_mailbox(
                            shared.clone(),
                            cx.clone(),
                            login,
                            round.clone(),
                        ));
                    }
                }
                Err(e) => tracing::error!(error = %e, "no mailbox is watched"),
            }
        }
        tasks.close();
        tokio::select! {
            _ = shared.mail_restart.notified() => {
                round.cancel();
                tasks.wait().await;
                tracing::info!("mailbox watchers restarted (a reload, or the mailboxes this replica holds changed)");
            }
            _ = cancel.cancelled() => {
                tasks.wait().await;
                return;
            }
        }
    }
}

/// The key a mailbox is sharded by in replica mode (never a store id: those have no ':').
pub(super) fn mailbox_key(name: &str) -> String {
    format!("mailbox:{name}")
}

/// Runs one mailbox's watcher until `cancel`.
pub async fn watch_mailbox(
    shared: Arc<Shared>,
    cx: Arc<MailCx>,
    login: MailLogin,
    cancel: CancellationToken,
) {
    let name = login.mailbox.name.clone();
    let mut retry = Duration::from_secs(5);
    let mut refused = false;
    while !cancel.is_cancelled() {
        let opened = tokio::select! {
            r = Session::open(&login.mailbox, &login.secret) => r,
            _ = cancel.cancelled() => return,
        };
        match opened {
            Ok(session) => {
                retry = Duration::from_secs(5);
                if refused {
                    refused = false;
                    tracing::info!(mailbox = %name, "the mailbox accepts storeguard's login again");
                }
                tracing::info!(mailbox = %name, idle = session.idle, "mailbox watcher connected");
                if let Err(e) = watch_session(&shared, &cx, &login, session, &cancel).await {
                    tracing::warn!(mailbox = %name, error = %e, "mailbox connection lost; reconnecting");
                }
            }
            Err(ImapError::Rejected(why)) => {
                tracing::warn!(mailbox = %name, reason = %why, "the mailbox refused storeguard's login");
                if !refused {
                    refused = true;
                    mailbox_refused(&shared, &login.mailbox, &why);
                }
                retry = retry.max(Duration::from_secs(300));
            }
            Err(e) => tracing::warn!(mailbox = %name, error = %e, "cannot reach the mailbox"),
        }
        // QQ and 163 throttle clients that reconnect fast: back off, with jitter.
        let jitter = Duration::from_millis(rand::random::<u64>() % 1000);
        tokio::select! {
            _ = tokio::time::sleep(retry + jitter) => {}
            _ = cancel.cancelled() => return,
        }
        retry = (retry * 2).min(MAX_RETRY);
    }
}

async fn watch_session(
    shared: &Arc<Shared>,
    cx: &MailCx,
    login: &MailLogin,
    mut session: Session,
    cancel: &CancellationToken,
) -> Result<(), ImapError> {
    let folders = session.folders(&login.mailbox.folders).await?;
    tracing::debug!(
        mailbox = %login.mailbox.name,
        folders = ?folders.iter().map(|f| f.display.as_str()).collect::<Vec<_>>(),
        "watching folders"
    );
    let mut first = true;
    loop {
        for f in &folders {
            read_folder(shared, cx, login, &mut session, f).await?;
        }
        if std::mem::take(&mut first) {
            tracing::info!(mailbox = %login.mailbox.name, folders = folders.len(), "mailbox watcher caught up");
        }
        let poll = shared.live().config.mail.poll;
        if session.idle {
            // IDLE watches INBOX; the other folders are read when it wakes or every `poll`.
            session.examine(&folders[0].name).await?;
            let (s, _news) = session.idle(poll, cancel).await?;
            session = s;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = cancel.cancelled() => {}
            }
        }
        if cancel.is_cancelled() {
            session.close().await;
            return Ok(());
        }
    }
}

/// Which of a folder's mail may alert.
#[derive(Clone, Copy)]
enum Alerting {
    /// New mail since the cursor: all.
    All,
    /// The first read: history, recorded only.
    None,
    /// The folder was rebuilt (new UIDVALIDITY): what arrived after the last read.
    After(DateTime<Utc>),
}

async fn read_folder(
    shared: &Arc<Shared>,
    cx: &MailCx,
    login: &MailLogin,
    session: &mut Session,
    folder: &Folder,
) -> Result<(), ImapError> {
    let mailbox = &login.mailbox.name;
    let opened = session.examine(&folder.name).await?;
    let state_err = |e: crate::state::StateError| ImapError::Protocol(format!("state: {e}"));
    let cursor = shared
        .state
        .mail_cursor(mailbox, &folder.name)
        .map_err(state_err)?;
    let now = shared.clock.now();
    let backfill = shared.live().config.mail.backfill;
    let since = now - chrono::Duration::from_std(backfill).unwrap_or_default();
    let (uids, alerting) = match cursor {
        Some(c) if c.uid_validity == opened.uid_validity => {
            if opened.uid_next != 0 && opened.uid_next <= c.last_uid.saturating_add(1) {
                return Ok(()); // nothing new
            }
            (session.uids_after(c.last_uid).await?, Alerting::All)
        }
        Some(c) => {
            tracing::info!(mailbox = %mailbox, folder = %folder.display, "the folder was rebuilt (new UIDVALIDITY): reading it again");
            (
                session.uids_since(since.date_naive()).await?,
                Alerting::After(c.updated_at),
            )
        }
        None => (
            session.uids_since(since.date_naive()).await?,
            Alerting::None,
        ),
    };
    let mut last = cursor
        .filter(|c| c.uid_validity == opened.uid_validity)
        .map_or(0, |c| c.last_uid);
    for chunk in uids.chunks(FETCH_BATCH) {
        let fetched = session.fetch(chunk).await?;
        let now = shared.clock.now();
        let config = shared.live().config.clone();
        let mut mails = Vec::new();
        for m in &fetched {
            let at = m.received.unwrap_or(now);
            if !matches!(alerting, Alerting::All) && at < since {
                continue;
            }
            let alert = match alerting {
                Alerting::All => true,
                Alerting::None => false,
                // INTERNALDATE has whole seconds, and a mail read before is not recorded or
                // alerted twice anyway (its Message-ID hash): a minute of slack loses nothing.
                Alerting::After(t) => at > t - chrono::Duration::minutes(1),
            };
            mails.extend(judge(cx, &config, &login.mailbox, &m.raw, at, alert, now).await);
        }
        last = last.max(chunk.last().copied().unwrap_or(0));
        let cursor = MailCursor {
            uid_validity: opened.uid_validity,
            last_uid: last,
            updated_at: now,
        };
        let new = shared
            .state
            .record_mail(mailbox, &folder.name, cursor, &mails)
            .map_err(state_err)?;
        if mails.iter().any(|(_, r)| r.is_some()) {
            shared.outbox_kick.notify_one();
        }
        if new > 0 {
            tracing::info!(mailbox = %mailbox, folder = %folder.display, records = new, "security mail recorded");
        }
    }
    // The first read, or a rebuilt folder, starts after everything it holds now.
    let settled = last.max(opened.uid_next.saturating_sub(1));
    let stored = if uids.is_empty() {
        cursor.map(|c| (c.uid_validity, c.last_uid))
    } else {
        Some((opened.uid_validity, last))
    };
    if stored != Some((opened.uid_validity, settled)) {
        let cursor = MailCursor {
            uid_validity: opened.uid_validity,
            last_uid: settled,
            updated_at: shared.clock.now(),
        };
        shared
            .state
            .record_mail(mailbox, &folder.name, cursor, &[])
            .map_err(state_err)?;
    }
    Ok(())
}

/// The login records (and alerts) one raw message makes.
async fn judge(
    cx: &MailCx,
    config: &Config,
    mailbox: &Mailbox,
    raw: &[u8],
    at: DateTime<Utc>,
    alert: bool,
    now: DateTime<Utc>,
) -> Vec<(MailRecord, Option<Routed>)> {
    let Some(c) = cx.catalogue.classify(raw) else {
        return Vec::new();
    };
    let verdict = cx.verifier.verdict(raw, &c).await;
    let hash = mail_hash(&c, raw);
    let served: Vec<&Store> = mailbox
        .stores
        .iter()
        .filter_map(|id| config.store(id))
        .collect();
    let own: Vec<&Store> = served
        .iter()
        .copied()
        .filter(|s| s.marketplace.as_str() == c.marketplace)
        .collect();
    // A forgery warns every store the mailbox serves when it claims none of their marketplaces.
    let stores = if own.is_empty() && verdict.is_forged() {
        served
    } else {
        own
    };
    let mut out = Vec::new();
    for store in stores {
        let (finding, severity) = finding_for(&c, verdict, store, at);
        let record = MailRecord {
            mail_hash: hash.clone(),
            store_id: store.id.clone(),
            at,
            event: if verdict.is_forged() {
                "phishing_suspected".into()
            } else {
                c.event.map_or("unclassified", |e| e.as_str()).to_string()
            },
            finding: finding.map(|f| f.as_str().to_string()),
            verdict: verdict.as_str().into(),
            domain: c.domain.clone(),
            facts: c.facts.clone(),
            mailbox: mailbox.name.clone(),
            alerted: alert && finding.is_some(),
        };
        let routed = finding.filter(|_| alert).map(|finding| {
            notice(
                config,
                store,
                Notice {
                    event_id: format!("mail-{}", short(&format!("{hash}/{}", store.id), 24)),
                    incident_id: format!("mail:{}:{}", &hash[..16], store.id),
                    finding,
                    severity,
                    detail: detail(&c, verdict, mailbox),
                    at,
                },
                now,
            )
        });
        out.push((record, routed));
    }
    out
}

/// The finding and severity of one mail for one store; `None`: a record without an alert.
fn finding_for(
    c: &Classified,
    verdict: Verdict,
    store: &Store,
    at: DateTime<Utc>,
) -> (Option<FindingKind>, Severity) {
    if verdict.is_forged() {
        return (Some(FindingKind::PhishingSuspected), Severity::Warning);
    }
    let Some(event) = c.event else {
        return (None, Severity::Warning);
    };
    if event.is_sign_in()
        && let Some(hours) = &store.login_hours
    {
        if !hours.contains(at) {
            return (Some(FindingKind::SuspiciousLogin), Severity::Critical);
        }
        return (Some(event.finding()), Severity::Warning);
    }
    let finding = event.finding();
    let severity = if c.critical {
        Severity::Critical
    } else {
        finding.severity()
    };
    (Some(finding), severity)
}

/// The alert's detail: who sent it, how far it is believed, and the facts it gives. Never a
/// link, a code or the body.
fn detail(c: &Classified, verdict: Verdict, mailbox: &Mailbox) -> String {
    let mut s = format!(
        "mail from {} ({}{}) in mailbox {}",
        c.domain,
        verdict.as_str(),
        if verdict == Verdict::Unverified {
            ": DKIM could not confirm the sender"
        } else {
            ""
        },
        mailbox.name
    );
    for (k, v) in &c.facts {
        s.push_str(&format!(" · {k}: {v}"));
    }
    crate::outcome::sanitize(&s, 300)
}

/// The key that keeps one record per mail: a hash of its Message-ID, or of the whole
/// message when it has none.
fn mail_hash(c: &Classified, raw: &[u8]) -> String {
    match c
        .message_id
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        Some(id) => short(&format!("id:{id}"), 32),
        None => hex::encode(Sha256::digest(raw))[..32].to_string(),
    }
}

fn short(s: &str, n: usize) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))[..n].to_string()
}

/// What a mail notice says; [`notice`] makes the store's event of it.
struct Notice {
    event_id: String,
    incident_id: String,
    finding: FindingKind,
    severity: Severity,
    detail: String,
    /// When it happened (the mail's arrival).
    at: DateTime<Utc>,
}

/// A notice about `store` as an opened event, with its channels and maintenance hold.
fn notice(config: &Config, store: &Store, n: Notice, now: DateTime<Utc>) -> Routed {
    let event = AlertEvent {
        event_id: n.event_id,
        event: EventKind::Opened,
        incident_id: n.incident_id,
        subject: Subject::store(&store.id, &store.name, store.marketplace),
        severity: n.severity,
        finding: n.finding,
        detail: n.detail,
        opened_at: n.at,
        created_at: now,
        affected: Vec::new(),
        test: false,
    };
    Routed {
        channels: crate::route::channels_for(config, &event),
        hold_until: crate::route::held_until(config, store, None, now),
        event,
    }
}

/// A mailbox refused the login: every store it serves is warned once, until it logs in again.
fn mailbox_refused(shared: &Arc<Shared>, mailbox: &Mailbox, why: &str) {
    let live = shared.live();
    let now = shared.clock.now();
    let day = now.format("%Y-%m-%d");
    let mut routed = Vec::new();
    for store in mailbox.stores.iter().filter_map(|id| live.config.store(id)) {
        let n = Notice {
            event_id: format!(
                "mailbox-{}",
                short(&format!("{}/{}/{day}", mailbox.name, store.id), 24)
            ),
            incident_id: format!("mailbox:{}:{}:{day}", mailbox.name, store.id),
            finding: FindingKind::MailboxRejected,
            severity: Severity::Warning,
            detail: crate::outcome::sanitize(
                &format!(
                    "mailbox {} ({}) refused the login: {why}",
                    mailbox.name, mailbox.host
                ),
                300,
            ),
            at: now,
        };
        routed.push(notice(&live.config, store, n, now));
    }
    if let Err(e) = shared.state.record_notices(&routed) {
        tracing::error!(error = %e, "cannot queue the mailbox alert");
    }
    shared.outbox_kick.notify_one();
}
