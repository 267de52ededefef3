//! Login-health probes: one per marketplace behind the [`Probe`] trait, and the [`Prober`] that
//! holds HTTP clients, vault entries and per-store memory and runs one check of one store.
//!
//! A probe turns the marketplace's answer into an [`Outcome`]: facts plus findings, classified
//! on the error code and text as MARKETPLACES.md lists them. An answer we do not recognise is a
//! `protocol_error` carrying the HTTP status and a short sanitised excerpt, never a guess.
//! Credentials stay in `secrecy` types; nothing here derives `Debug` on anything holding one.

pub mod alibaba;
pub mod aliexpress;
pub mod amazon;
pub mod iop;
pub mod lazada;
pub mod ozon;
mod rotate;
pub mod shopee;
pub mod tiktok;
pub mod wildberries;
pub mod yandex;

use crate::config::{Config, Store};
use crate::http::{self, HttpError, MAX_BODY_BYTES};
use crate::model::Marketplace;
use crate::outcome::{Facts, Finding, FindingKind, Outcome};
use crate::vault::{Document, EntryId, Identity, Schema, Vault};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use url::Url;
use zeroize::Zeroizing;

/// What one probe found (the [`Prober`] adds latency, egress and posture).
#[derive(Default)]
pub struct Probed {
    pub findings: Vec<Finding>,
    pub facts: Facts,
}

impl Probed {
    fn finding(f: Finding) -> Self {
        Probed {
            findings: vec![f],
            facts: Facts::default(),
        }
    }
}

/// One marketplace's login-health probe.
pub trait Probe: Send + Sync {
    fn marketplace(&self) -> Marketplace;
    /// Proves the store's credentials still log in. Must not panic; may be cancelled at any
    /// await point (the [`Prober`] enforces the store's timeout).
    fn probe(&self, ctx: &ProbeCtx<'_>) -> impl Future<Output = Probed> + Send;
}

/// Everything a probe may use for one check.
pub struct ProbeCtx<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub client: &'a reqwest::Client,
    /// Injected clock for expiry maths.
    pub now: DateTime<Utc>,
    creds: &'a Arc<Creds>,
    memory: &'a Memory,
    vault: &'a Vault,
    identity: &'a Arc<Identity>,
    /// Vault write-backs in flight (they outlive a cancelled check; drained before exit).
    writes: &'a tokio_util::task::TaskTracker,
    /// Where a rotated token goes once it is in the local file (replica mode).
    mirror: Option<&'a Arc<dyn TokenMirror>>,
}

/// Told of every rotated token once it is in the store's vault file: several replicas keep
/// the truth in their shared database, so the next holder of the store spends the newest
/// refresh token. Called on the blocking task of the write-back.
pub trait TokenMirror: Send + Sync {
    /// `entry` now holds tokens of `generation` in the local vault. An error is logged.
    fn rotated(&self, entry: &EntryId, generation: u64) -> Result<(), String>;
}

impl ProbeCtx<'_> {
    /// A text field of the store's vault entry.
    fn secret(&self, name: &str) -> Result<SecretString, Finding> {
        self.creds.get(name).ok_or_else(|| no_field(name))
    }

    /// A text field of the store's vault entry as a sensitive header value, built from the
    /// entry itself rather than from a copy of the secret.
    fn secret_header(&self, name: &str) -> Result<HeaderValue, Finding> {
        let doc = self.creds.doc();
        secret_header(doc.get(name).ok_or_else(|| no_field(name))?, name)
    }

    /// The longest expiry-warning window.
    fn warning_window(&self) -> Duration {
        self.config
            .defaults
            .expiry_warning
            .first()
            .copied()
            .unwrap_or(Duration::from_secs(14 * 86_400))
    }

    fn timeout(&self) -> Duration {
        self.store.timeout
    }
}

/// A store's decrypted vault entry, shared by its checks.
pub(crate) struct Creds {
    entry: EntryId,
    schema: Schema,
    doc: Mutex<Document>,
    /// Held while tokens are refreshed and written back: one refresh in flight per store.
    refresh: Arc<tokio::sync::Mutex<()>>,
}

impl Creds {
    fn new(entry: EntryId, schema: Schema, doc: Document) -> Self {
        Creds {
            entry,
            schema,
            doc: Mutex::new(doc),
            refresh: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn doc(&self) -> std::sync::MutexGuard<'_, Document> {
        self.doc.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, name: &str) -> Option<SecretString> {
        self.doc().get(name).cloned()
    }

    fn time(&self, name: &str) -> Option<DateTime<Utc>> {
        self.doc().time(name)
    }

    fn generation(&self) -> u64 {
        self.doc().generation
    }

    /// Every secret value in the entry (for redaction of details), longer than 3 characters.
    /// The copies are wiped when dropped, as the entry's own values are.
    fn secret_values(&self) -> Vec<Zeroizing<String>> {
        let doc = self.doc();
        let mut out = Vec::new();
        collect_secrets(&doc, self.schema.fields(), &mut out);
        if let (Some(web), Some(fields)) = (doc.web(), self.schema.web_fields()) {
            collect_secrets(web, fields, &mut out);
        }
        out
    }
}

fn collect_secrets(
    doc: &Document,
    fields: &[crate::vault::entry::Field],
    out: &mut Vec<Zeroizing<String>>,
) {
    for f in fields.iter().filter(|f| f.secret) {
        if let Some(v) = doc.get(f.name) {
            let v = v.expose_secret();
            if v.chars().count() > 3 {
                out.push(Zeroizing::new(v.to_string()));
            }
        }
    }
}

/// Per-store memory that outlives reloads.
#[derive(Default)]
struct Memory {
    /// Amazon LWA access token.
    lwa: tokio::sync::Mutex<Option<amazon::CachedToken>>,
    /// Ozon `/v1/seller/info`, fetched at most once a day.
    ozon_info: Mutex<Option<ozon::SellerInfo>>,
    /// Alibaba.com seller id from the last token refresh (the cheap read does not name it).
    seller_id: Mutex<Option<String>>,
    /// Yandex Market key scopes, fetched at most once a day.
    yandex_scopes: Mutex<Option<yandex::Scopes>>,
    /// Amazon: (authorisation fingerprint, first day it was seen working), when the vault
    /// does not say when the app was authorised.
    authorized_seen: Mutex<Option<(String, DateTime<Utc>)>>,
}

/// One store as the prober knows it.
struct Slot {
    /// Position of the store in the snapshot's `config.stores` (not a copy: 100,000 stores).
    index: usize,
    memory: Arc<Memory>,
    /// What was loaded from the vault entry; replaced when the entry changes on disk.
    loaded: RwLock<Arc<Loaded>>,
}

/// A store's credentials and the client built with them.
struct Loaded {
    client: Result<reqwest::Client, String>,
    egress: String,
    creds: Result<Arc<Creds>, String>,
    /// The entry file as it was just before it was read.
    stamp: Option<crate::vault::Stamp>,
}

impl Slot {
    fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct Snapshot {
    config: Arc<Config>,
    slots: HashMap<String, Arc<Slot>>,
    /// The client of every store without a proxy.
    direct: reqwest::Client,
}

/// The client and egress for `store`, given its credentials (a proxy password lives there).
fn client_for(
    store: &Store,
    direct: &reqwest::Client,
    creds: &Result<Arc<Creds>, String>,
) -> (Result<reqwest::Client, String>, String) {
    match &store.proxy {
        None => (Ok(direct.clone()), "direct".to_string()),
        Some(proxy) => {
            let password = creds.as_ref().ok().and_then(|c| c.get("proxy_password"));
            (
                proxy_client(store, proxy, password.as_ref()),
                proxy.host_str().unwrap_or("proxy").to_string(),
            )
        }
    }
}

/// Runs login-health checks. `Send + Sync`; share it through an `Arc`.
pub struct Prober {
    vault: Vault,
    identity: Arc<Identity>,
    snapshot: RwLock<Arc<Snapshot>>,
    writes: tokio_util::task::TaskTracker,
    mirror: std::sync::OnceLock<Arc<dyn TokenMirror>>,
}

impl Prober {
    /// Sends every rotated token to `mirror` too (replica mode; set once).
    pub fn set_token_mirror(&self, mirror: Arc<dyn TokenMirror>) {
        let _ = self.mirror.set(mirror);
    }

    /// Builds HTTP clients and loads every store's vault entry once (bad entries are remembered
    /// as unreadable, not fatal).
    pub fn new(
        config: Arc<Config>,
        vault: Vault,
        identity: Arc<Identity>,
    ) -> anyhow::Result<Prober> {
        let snapshot = build_snapshot(config, &vault, &identity, None)?;
        Ok(Prober {
            vault,
            identity,
            snapshot: RwLock::new(Arc::new(snapshot)),
            writes: tokio_util::task::TaskTracker::new(),
            mirror: std::sync::OnceLock::new(),
        })
    }

    /// Waits until every vault write-back started so far (refreshed tokens) has finished.
    /// Call before the process exits, including on SIGINT/SIGTERM.
    pub async fn drain_writes(&self) {
        self.writes.close();
        self.writes.wait().await;
        self.writes.reopen();
    }

    /// Re-reads config + vault (SIGHUP). An entry that is now unreadable makes that store report
    /// UNKNOWN `vault_unreadable`; other stores keep working.
    pub fn reload(&self, config: Arc<Config>) -> anyhow::Result<()> {
        let old = self.current();
        let snapshot = build_snapshot(config, &self.vault, &self.identity, Some(&old))?;
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        Ok(())
    }

    /// Whether the store's vault entry changed on disk since it was read (one `stat`): a key
    /// fixed with `vault put` or `vault edit`, seen without SIGHUP.
    pub fn entry_changed(&self, store_id: &str) -> bool {
        let snapshot = self.current();
        let Some(slot) = snapshot.slots.get(store_id) else {
            return false;
        };
        self.slot_changed(&snapshot.config.stores[slot.index], slot)
    }

    /// [`Prober::entry_changed`] for a slot already in hand.
    fn slot_changed(&self, store: &Store, slot: &Slot) -> bool {
        self.vault.stamp(&EntryId::store(&store.id)) != slot.loaded().stamp
    }

    /// Enabled stores whose vault entry could not be read, with the (sanitised) reason.
    pub fn unreadable(&self) -> Vec<(String, String)> {
        let snapshot = self.current();
        snapshot
            .config
            .stores
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| {
                let loaded = snapshot.slots.get(&s.id)?.loaded();
                loaded
                    .creds
                    .as_ref()
                    .err()
                    .map(|e| (s.id.clone(), e.clone()))
            })
            .collect()
    }

    /// The config this prober currently runs with.
    pub fn config(&self) -> Arc<Config> {
        self.current().config.clone()
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs one check of one store now. `now` is the injected clock for expiry maths and
    /// `Outcome::checked_at`; latency is measured with Instant. Never panics, never hangs past
    /// the store's timeout (+ a small margin). `None` for a store the config does not have (a
    /// reload removed it while its check was queued): there is nothing to record for it.
    /// Takes what an earlier check found out over time (the daemon gives its state here): the
    /// first day an Amazon authorisation was seen working, when the vault does not say when
    /// it was given. Only for the same authorisation, and only when nothing is known yet.
    pub fn remember(&self, store_id: &str, facts: &Facts) {
        let (Some(fp), Some(at), true) = (
            facts.authorization.as_ref(),
            facts.authorized_at,
            facts.authorized_inferred,
        ) else {
            return;
        };
        let snapshot = self.current();
        if let Some(slot) = snapshot.slots.get(store_id) {
            let mut seen = slot
                .memory
                .authorized_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if seen.is_none() {
                *seen = Some((fp.clone(), at));
            }
        }
    }

    pub async fn check(&self, store_id: &str, now: DateTime<Utc>) -> Option<Outcome> {
        let snapshot = self.current();
        let slot = snapshot.slots.get(store_id).cloned()?;
        let store = &snapshot.config.stores[slot.index];
        let start = Instant::now();
        if self.slot_changed(store, &slot) {
            let vault = self.vault.clone();
            let identity = self.identity.clone();
            let (slot2, snap2) = (slot.clone(), snapshot.clone());
            let _ = tokio::task::spawn_blocking(move || {
                reload_entry(&vault, &identity, &snap2, &slot2);
            })
            .await;
        }
        let loaded = slot.loaded();
        let mut probed = match (&loaded.creds, &loaded.client) {
            (Err(reason), _) => Probed::finding(Finding::new(FindingKind::VaultUnreadable, reason)),
            (Ok(_), Err(reason)) => Probed::finding(Finding::new(FindingKind::Unreachable, reason)),
            (Ok(creds), Ok(client)) => {
                let ctx = ProbeCtx {
                    store,
                    config: &snapshot.config,
                    client,
                    now,
                    creds,
                    memory: &slot.memory,
                    vault: &self.vault,
                    identity: &self.identity,
                    writes: &self.writes,
                    mirror: self.mirror.get(),
                };
                let mut secrets = creds.secret_values();
                let posture = posture(&creds.doc(), &snapshot.config, now);
                let mut probed = match tokio::time::timeout(store.timeout, run_probe(&ctx)).await {
                    Ok(p) => p,
                    Err(_) => Probed::finding(Finding::new(
                        FindingKind::Unreachable,
                        format!(
                            "no complete answer within {}",
                            crate::duration::format(store.timeout)
                        ),
                    )),
                };
                probed.findings.extend(posture);
                // Tokens may have been refreshed during the check: redact those too.
                secrets.extend(creds.secret_values());
                if let Ok(lwa) = slot.memory.lwa.try_lock()
                    && let Some(token) = lwa.as_ref()
                {
                    secrets.push(Zeroizing::new(token.text().to_string()));
                }
                redact(&mut probed.findings, &secrets);
                probed
            }
        };
        probed.facts.latency_ms = start.elapsed().as_millis().min(u64::MAX as u128) as u64;
        probed.facts.egress = Some(loaded.egress.clone());
        Some(Outcome::new(
            store_id,
            store.marketplace,
            now,
            probed.findings,
            probed.facts,
        ))
    }
}

async fn run_probe(ctx: &ProbeCtx<'_>) -> Probed {
    match ctx.store.marketplace {
        Marketplace::Ozon => ozon::Ozon.probe(ctx).await,
        Marketplace::Amazon => amazon::Amazon.probe(ctx).await,
        Marketplace::Alibaba => alibaba::Alibaba.probe(ctx).await,
        Marketplace::Aliexpress => aliexpress::Aliexpress.probe(ctx).await,
        Marketplace::Wildberries => wildberries::Wildberries.probe(ctx).await,
        Marketplace::YandexMarket => yandex::YandexMarket.probe(ctx).await,
        Marketplace::Lazada => lazada::Lazada.probe(ctx).await,
        Marketplace::Shopee => shopee::Shopee.probe(ctx).await,
        Marketplace::TiktokShop => tiktok::TiktokShop.probe(ctx).await,
    }
}

fn build_snapshot(
    config: Arc<Config>,
    vault: &Vault,
    identity: &Identity,
    old: Option<&Snapshot>,
) -> anyhow::Result<Snapshot> {
    let direct_timeout = config
        .stores
        .iter()
        .filter(|s| s.proxy.is_none())
        .map(|s| s.timeout)
        .max()
        .unwrap_or(config.defaults.timeout);
    let direct = http::client_builder(direct_timeout)
        .no_proxy()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {}", e.without_url()))?;
    let mut slots = HashMap::with_capacity(config.stores.len());
    let entries: Vec<(EntryId, Schema)> = config
        .stores
        .iter()
        .map(|s| (EntryId::store(&s.id), Schema::Store(s.marketplace)))
        .collect();
    fold_pending_rotations(vault, identity, &entries);
    // Stamped before reading: a write between the two is seen (and read) at the next check.
    let stamps: Vec<_> = entries.iter().map(|(e, _)| vault.stamp(e)).collect();
    let docs = vault.load_all(&entries, identity);
    for (index, (((store, (entry, schema)), doc), stamp)) in config
        .stores
        .iter()
        .zip(entries)
        .zip(docs)
        .zip(stamps)
        .enumerate()
    {
        let creds = doc
            .map(|doc| Arc::new(Creds::new(entry, schema, doc)))
            .map_err(|e| crate::outcome::sanitize(&e.to_string(), 300));
        let (client, egress) = client_for(store, &direct, &creds);
        let memory = old
            .and_then(|o| {
                o.slots.get(&store.id).filter(|s| {
                    o.config
                        .stores
                        .get(s.index)
                        .is_some_and(|old| old.marketplace == store.marketplace)
                })
            })
            .map(|s| s.memory.clone())
            .unwrap_or_default();
        slots.insert(
            store.id.clone(),
            Arc::new(Slot {
                index,
                memory,
                loaded: RwLock::new(Arc::new(Loaded {
                    client,
                    egress,
                    creds,
                    stamp,
                })),
            }),
        );
    }
    Ok(Snapshot {
        config,
        slots,
        direct,
    })
}

/// Reads a store's changed vault entry. A newer generation is taken into the same `Creds`
/// (a refresh in flight keeps its lock; the single-use refresh token is never raced); an
/// entry that became readable gets new `Creds`; one that became unreadable makes the store
/// report `vault_unreadable`. The client is rebuilt when a proxy password may have changed.
fn reload_entry(vault: &Vault, identity: &Identity, snapshot: &Snapshot, slot: &Slot) {
    let store = &snapshot.config.stores[slot.index];
    let entry = EntryId::store(&store.id);
    let schema = Schema::Store(store.marketplace);
    let old = slot.loaded();
    // A refresh in flight rewrites the entry itself: leave it be, and look again next check.
    let _refreshing = match &old.creds {
        Ok(creds) => match creds.refresh.clone().try_lock_owned() {
            Ok(guard) => Some(guard),
            Err(_) => return,
        },
        Err(_) => None,
    };
    let stamp = vault.stamp(&entry);
    let creds = match (vault.load(&entry, schema, identity), &old.creds) {
        (Ok(doc), Ok(creds)) => {
            if doc.generation != creds.generation() {
                tracing::info!(store = %store.id, "vault entry changed on disk; using the new one");
                *creds.doc() = doc;
            }
            Ok(creds.clone())
        }
        (Ok(doc), Err(_)) => {
            tracing::info!(store = %store.id, "vault entry is readable again");
            Ok(Arc::new(Creds::new(entry, schema, doc)))
        }
        (Err(e), _) => Err(crate::outcome::sanitize(&e.to_string(), 300)),
    };
    let (client, egress) = match (&store.proxy, &old.client) {
        (None, Ok(_)) => (old.client.clone(), old.egress.clone()),
        _ => client_for(store, &snapshot.direct, &creds),
    };
    *slot.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Loaded {
        client,
        egress,
        creds,
        stamp,
    });
}

/// Folds tokens a killed process journaled but did not fold (see `vault::journal`), so every
/// store starts from its newest authorization. A fold that fails leaves the journal for the
/// next start; the entry's own problem (if any) is reported by the load that follows.
fn fold_pending_rotations(vault: &Vault, identity: &Identity, entries: &[(EntryId, Schema)]) {
    let pending = match vault.pending_rotations() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot read the vault's rotation journal: {e}");
            return;
        }
    };
    for id in pending {
        let Some((_, schema)) = entries.iter().find(|(e, _)| *e == id) else {
            continue;
        };
        match vault.fold_rotations(&id, *schema, identity) {
            Ok(_) => tracing::info!(entry = %id, "folded refreshed tokens from the journal"),
            Err(e) => tracing::warn!(entry = %id, "cannot fold journaled tokens yet: {e}"),
        }
    }
}

/// A client of its own for a store behind a proxy (so it leaves through its own address).
fn proxy_client(
    store: &Store,
    proxy: &Url,
    password: Option<&SecretString>,
) -> Result<reqwest::Client, String> {
    let bad = |what: &str| format!("proxy for store `{}`: {what}", store.id);
    let mut p = reqwest::Proxy::all(proxy.as_str()).map_err(|_| bad("not a usable proxy URL"))?;
    if let Some(pass) = password {
        let user = percent_decode(proxy.username());
        p = p.basic_auth(&user, pass.expose_secret());
    }
    http::client_builder(store.timeout)
        .proxy(p)
        .build()
        .map_err(|e| bad(&crate::outcome::sanitize(&e.without_url().to_string(), 120)))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("u={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `posture` findings for a store's web login.
fn posture(doc: &Document, config: &Config, now: DateTime<Utc>) -> Vec<Finding> {
    let Some(web) = doc.web() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if web.get("totp_secret").is_none() {
        out.push(Finding::new(
            FindingKind::Posture,
            "web login has no 2FA (no totp_secret in the vault)",
        ));
    }
    if let Some(changed) = web.time("password_changed_at") {
        let max = config.defaults.password_max_age;
        let age = now.signed_duration_since(changed);
        if age.num_seconds() > max.as_secs() as i64 {
            out.push(Finding::new(
                FindingKind::Posture,
                format!(
                    "web-login password is {} days old (policy: change every {} days)",
                    age.num_days(),
                    max.as_secs() / 86_400
                ),
            ));
        }
    }
    out
}

/// Replaces any secret value, or a part of one, that slipped into a detail.
fn redact(findings: &mut [Finding], secrets: &[Zeroizing<String>]) {
    if findings.is_empty() {
        return;
    }
    let secrets: Vec<&str> = secrets.iter().map(|s| s.as_str()).collect();
    for f in findings {
        f.detail = crate::outcome::redact(&f.detail, &secrets);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers shared by the probes
// ---------------------------------------------------------------------------------------------

/// A whole answer, body capped at 1 MiB.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// `base` with `path` appended to its own path.
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    u.set_path(&joined);
    u
}

/// The finding for a vault entry without the field a probe needs.
fn no_field(name: &str) -> Finding {
    Finding::new(
        FindingKind::VaultUnreadable,
        format!("vault entry has no `{name}`"),
    )
}

/// A header value built from a secret, marked sensitive.
pub(crate) fn secret_header(value: &SecretString, field: &str) -> Result<HeaderValue, Finding> {
    let mut v = HeaderValue::from_str(value.expose_secret().trim()).map_err(|_| {
        Finding::new(
            FindingKind::VaultUnreadable,
            format!("`{field}` holds characters that cannot be sent in an HTTP header"),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Sends a request and reads its body to the cap; transport failures become findings.
pub(crate) async fn send(
    client: &reqwest::Client,
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, Finding> {
    let req = req
        .timeout(timeout)
        .build()
        .map_err(|e| transport(HttpError::from_reqwest(e), None))?;
    http::check_url(req.url()).map_err(|e| transport(e, None))?;
    let mut resp = client
        .execute(req)
        .await
        .map_err(|e| transport(HttpError::from_reqwest(e), None))?;
    let status = resp.status().as_u16();
    // Taken, not copied: reading the body needs none of them.
    let headers = std::mem::take(resp.headers_mut());
    let body = http::read_capped(resp, MAX_BODY_BYTES)
        .await
        .map_err(|e| transport(e, Some(status)))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn transport(e: HttpError, status: Option<u16>) -> Finding {
    let kind = match e {
        HttpError::TooLarge | HttpError::InsecureUrl => FindingKind::ProtocolError,
        _ => FindingKind::Unreachable,
    };
    let detail = match status {
        Some(s) => format!("HTTP {s}: {e}"),
        None => e.to_string(),
    };
    Finding::new(kind, detail)
}

/// Answers every marketplace means the same way by: rate limits, server errors, redirects.
pub(crate) fn generic(answer: &Answer) -> Option<Finding> {
    match answer.status {
        429 => Some(rate_limited(answer, "HTTP 429 Too Many Requests")),
        500..=599 => Some(Finding::new(
            FindingKind::Unreachable,
            format!("server error HTTP {}", answer.status),
        )),
        300..=399 => Some(Finding::new(
            FindingKind::ProtocolError,
            format!(
                "HTTP {} redirect to another location (not followed)",
                answer.status
            ),
        )),
        _ => None,
    }
}

pub(crate) fn rate_limited(answer: &Answer, detail: &str) -> Finding {
    let mut f = Finding::new(FindingKind::RateLimited, detail);
    f.retry_after_secs =
        http::retry_after(&answer.headers, Duration::from_secs(3600)).map(|d| d.as_secs());
    f
}

/// The catch-all for answers nobody documented.
pub(crate) fn unrecognised(answer: &Answer) -> Finding {
    Finding::new(
        FindingKind::ProtocolError,
        format!(
            "unrecognised answer HTTP {}: {}",
            answer.status,
            http::excerpt(&answer.body)
        ),
    )
}

/// `credential_expiring` when `expires` falls inside the warning window.
pub(crate) fn expiring(
    what: &str,
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
    window: Duration,
) -> Option<Finding> {
    let left = expires.signed_duration_since(now);
    if left.num_seconds() > window.as_secs() as i64 {
        return None;
    }
    let date = expires.format("%Y-%m-%d");
    Some(Finding::new(
        FindingKind::CredentialExpiring,
        if left.num_seconds() <= 0 {
            format!("{what} expired on {date}")
        } else {
            // Calendar days, as the status page counts them, so both say the same.
            let days = (expires.date_naive() - now.date_naive()).num_days();
            match days {
                0 => format!("{what} expires on {date} (today)"),
                1 => format!("{what} expires on {date} (tomorrow)"),
                d => format!("{what} expires on {date} (in {d} days)"),
            }
        },
    ))
}

/// A JSON value's text, for ids that arrive as numbers or strings.
pub(crate) fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `identity_mismatch` when the account the API answered for is not the configured one.
pub(crate) fn identity(store: &Store, seen: Option<&str>, what: &str) -> Option<Finding> {
    let (Some(want), Some(seen)) = (store.account.as_deref(), seen) else {
        return None;
    };
    (want.trim() != seen.trim()).then(|| {
        Finding::new(
            FindingKind::IdentityMismatch,
            format!(
                "{what} answered for account {}, the config expects {}",
                crate::outcome::sanitize(seen, 40),
                want
            ),
        )
    })
}

/// Entry points for the fuzz harness (`examples/fuzz.rs`, replayed by `tests/it/fuzz.rs`): every
/// parser a probe runs on a marketplace's answer, fed arbitrary status, headers and body. Each
/// must return (a finding, facts, nothing) and never panic. Not an API.
#[doc(hidden)]
pub mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_a_base_path() {
        let b = Url::parse("http://127.0.0.1:9/prefix/").unwrap();
        assert_eq!(
            endpoint(&b, "/v1/roles").as_str(),
            "http://127.0.0.1:9/prefix/v1/roles"
        );
        let b = Url::parse("https://api-seller.ozon.ru").unwrap();
        assert_eq!(
            endpoint(&b, "/v1/roles").as_str(),
            "https://api-seller.ozon.ru/v1/roles"
        );
    }

    #[test]
    fn expiry_window() {
        let now = Utc::now();
        let w = Duration::from_secs(14 * 86_400);
        assert!(expiring("key", now + chrono::Duration::days(30), now, w).is_none());
        let f = expiring("key", now + chrono::Duration::days(5), now, w).unwrap();
        assert_eq!(f.kind, FindingKind::CredentialExpiring);
        assert!(f.detail.contains("in 4 days") || f.detail.contains("in 5 days"));
        assert!(
            expiring("key", now - chrono::Duration::days(1), now, w)
                .unwrap()
                .detail
                .contains("expired")
        );
    }

    #[test]
    fn redaction() {
        let mut f = vec![Finding::new(
            FindingKind::ProtocolError,
            "got CANARY-x back",
        )];
        redact(&mut f, &[Zeroizing::new("CANARY-x".to_string())]);
        assert_eq!(f[0].detail, "got [REDACTED] back");
    }
}
