//! `storeguard check [STORE…] [--json] [--all]`: runs the login-health probes now, a bounded
//! number at a time, and prints a table in the configured language or JSON. The exit code is
//! the worst status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (CRITICAL beats UNKNOWN beats
//! WARNING). A store whose vault entry cannot be read is UNKNOWN; the others are still checked.

use super::load_identity;
use crate::config::{Config, Store};
use crate::i18n;
use crate::marketplace::Prober;
use crate::model::Language;
use crate::outcome::{Finding, Outcome, Status};
use crate::vault::Vault;
use chrono::{DateTime, Utc};
use clap::Args;
use futures_util::StreamExt;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// How many stores are probed at once.
const CONCURRENCY: usize = 32;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Stores to check [default: every enabled store]
    pub stores: Vec<String>,
    /// Print JSON (an array with one object per store) instead of a table
    #[arg(long)]
    pub json: bool,
    /// Include disabled stores
    #[arg(long)]
    pub all: bool,
}

/// Errors before any store is checked exit UNKNOWN (3), as monitoring plugins do.
fn unknown(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(Status::Unknown.exit_code()))
}

pub fn run(config_path: &Path, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return unknown(e),
    };
    let lang = config.daemon.language;
    // Positions in `config.stores` of the stores to check, in output order. Stores are not
    // copied: with 10,000 of them every copy costs megabytes.
    let mut selected: Vec<usize> = Vec::new();
    if args.stores.is_empty() {
        selected.extend(
            config
                .stores
                .iter()
                .enumerate()
                .filter(|(_, s)| args.all || s.enabled)
                .map(|(i, _)| i),
        );
    } else {
        for id in &args.stores {
            match config.store_position(id) {
                Some(i) if !selected.contains(&i) => selected.push(i),
                Some(_) => {}
                None => {
                    return unknown(format!(
                        "store `{id}` is not in {}\n  help: `storeguard vault list` shows the stores",
                        config.path.display()
                    ));
                }
            }
        }
    }
    if selected.is_empty() {
        eprintln!("{}", i18n::text(lang, "check.no_stores"));
        if args.json {
            println!("[]");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let vault = match Vault::open(&config.daemon.vault_dir) {
        Ok(v) => v,
        Err(e) => return unknown(e),
    };
    let identity = match load_identity(&config) {
        Ok(i) => i,
        Err(e) => return unknown(format!("{e:#}")),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let timezone = config.daemon.timezone;
    // Only the selected stores' vault entries are decrypted.
    let mut config = config;
    if selected.len() < config.stores.len() {
        let mut keep = vec![false; config.stores.len()];
        for &i in &selected {
            keep[i] = true;
        }
        // Positions after the cut: a kept store moves down by the dropped ones before it.
        let mut moved = Vec::with_capacity(keep.len());
        let mut next = 0;
        for &k in &keep {
            moved.push(next);
            next += usize::from(k);
        }
        for i in &mut selected {
            *i = moved[*i];
        }
        let mut at = 0;
        config.retain_stores(|_| {
            at += 1;
            keep[at - 1]
        });
    }
    let config = Arc::new(config);
    let prober = {
        let _guard = runtime.enter();
        match Prober::new(config.clone(), vault, Arc::new(identity)) {
            Ok(p) => Arc::new(p),
            Err(e) => return unknown(format!("{e:#}")),
        }
    };
    let now = Utc::now();
    // SIGINT/SIGTERM: start no further check, let those in flight finish (a refresh already
    // sent must reach the vault), drain the write-backs, then print what was checked.
    // A second signal stops waiting for the probes; the write-backs are still drained.
    let stop = tokio_util::sync::CancellationToken::new();
    let hurry = tokio_util::sync::CancellationToken::new();
    let signal = runtime.block_on(async { Interrupt::install() })?;
    let caught = Arc::new(std::sync::OnceLock::new());
    let watcher = {
        let (stop, hurry, caught) = (stop.clone(), hurry.clone(), caught.clone());
        runtime.spawn(async move {
            let mut signal = signal;
            if let Some(first) = signal.next().await {
                let _ = caught.set(first);
                stop.cancel();
            }
            signal.next().await;
            hurry.cancel();
        })
    };
    // The checks are driven from a task on the runtime, not from this thread: each finished
    // check then wakes a worker that is usually awake anyway, instead of this parked thread
    // (one futex wake-up and two context switches per store).
    let json_out = args.json;
    let drive = async move {
        let row_store = |i: usize| &config.stores[selected[i]];
        // JSON rows are written as soon as every row before them is (the array is never
        // held in memory); a table needs every row for its widths, so its outcomes are kept.
        use serde::ser::Serializer as _;
        let mut json = serde_json::Serializer::pretty(std::io::BufWriter::new(std::io::stdout()));
        let mut rows = match json_out {
            true => Some(Rows {
                seq: json.serialize_seq(None)?,
                next: 0,
                waiting: std::collections::BTreeMap::new(),
                failed: None,
            }),
            false => None,
        };
        let mut kept: Vec<(usize, Outcome)> = Vec::new();
        let (mut worst, mut checked) = (Status::Ok, 0usize);
        // Unordered, so one slow store never holds back the next ones; the order is
        // restored by `Rows` (JSON) or by a sort (table).
        let checks =
            futures_util::stream::iter(selected.iter().copied().enumerate().map(|(i, at)| {
                let prober = prober.clone();
                let store = &config.stores[at];
                let (id, marketplace) = (store.id.clone(), store.marketplace);
                let stop = stop.clone();
                async move {
                    if stop.is_cancelled() {
                        return (i, None);
                    }
                    let handle = {
                        let id = id.clone();
                        tokio::spawn(async move { prober.check(&id, now).await })
                    };
                    let outcome = handle.await.ok().flatten().unwrap_or_else(|| {
                        Outcome::new(
                            &id,
                            marketplace,
                            now,
                            vec![Finding::new(
                                crate::outcome::FindingKind::ProtocolError,
                                "the check stopped unexpectedly",
                            )],
                            Default::default(),
                        )
                    });
                    (i, Some(outcome))
                }
            }))
            .buffer_unordered(CONCURRENCY)
            .take_until(hurry.cancelled());
        let mut checks = std::pin::pin!(checks);
        while let Some((i, outcome)) = checks.next().await {
            if let Some(o) = &outcome {
                worst = worst.worst(o.status);
                checked += 1;
            }
            match (&mut rows, outcome) {
                (Some(rows), outcome) => rows.put(i, outcome, row_store),
                (None, Some(o)) => kept.push((i, o)),
                (None, None) => {}
            }
        }
        prober.drain_writes().await;
        // The array is closed first; only then is the writer free to be flushed.
        let closed = rows.map(|rows| rows.finish(row_store));
        let written = closed.map(|closed| {
            closed.and_then(|()| {
                use std::io::Write as _;
                let mut out = json.into_inner();
                writeln!(out)?;
                out.flush()
            })
        });
        anyhow::Ok((worst, checked, kept, written))
    };
    let (worst, checked, mut kept, written) = runtime.block_on(runtime.spawn(drive))??;
    watcher.abort();
    let interrupted = caught.get().copied();
    // Do not wait for probes still parked on hostile servers (they are past their timeout).
    runtime.shutdown_background();
    if let Some(sig) = interrupted {
        eprintln!(
            "interrupted by {}: {checked} store(s) checked, the others were not started; refreshed tokens were saved",
            sig.name(),
        );
    }

    match written {
        // `storeguard check --json | head`: the reader went away; nothing to say.
        Some(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Some(other) => other?,
        None => {
            kept.sort_by_key(|(i, _)| *i);
            let outcomes: Vec<Outcome> = kept.into_iter().map(|(_, o)| o).collect();
            print!("{}", table(&outcomes, lang, timezone));
        }
    }
    match interrupted {
        Some(sig) => Ok(ExitCode::from(sig.exit_code())),
        None => Ok(ExitCode::from(worst.exit_code())),
    }
}

/// JSON rows in store order while the checks finish out of order: a row waits only for the
/// rows before it. `None` is a store that was not started (an interrupted run): no row.
struct Rows<S: serde::ser::SerializeSeq<Ok = (), Error = serde_json::Error>> {
    seq: S,
    next: usize,
    waiting: std::collections::BTreeMap<usize, Option<Outcome>>,
    /// The first write error; nothing more is written after it.
    failed: Option<std::io::Error>,
}

impl<S: serde::ser::SerializeSeq<Ok = (), Error = serde_json::Error>> Rows<S> {
    fn put<'s>(&mut self, i: usize, outcome: Option<Outcome>, store: impl Fn(usize) -> &'s Store) {
        self.waiting.insert(i, outcome);
        while let Some(outcome) = self.waiting.remove(&self.next) {
            self.next += 1;
            if let Some(o) = outcome {
                self.write(&o, store(self.next - 1));
            }
        }
    }

    fn write(&mut self, o: &Outcome, store: &Store) {
        if self.failed.is_none()
            && let Err(e) = self.seq.serialize_element(&JsonRow::new(o, store))
        {
            self.failed = Some(e.into());
        }
    }

    /// Writes the rows still waiting (after an interrupted run some before them never came)
    /// and closes the array.
    fn finish<'s>(mut self, store: impl Fn(usize) -> &'s Store) -> std::io::Result<()> {
        for (i, outcome) in std::mem::take(&mut self.waiting) {
            if let Some(o) = outcome {
                self.write(&o, store(i));
            }
        }
        match self.failed {
            Some(e) => Err(e),
            None => self.seq.end().map_err(Into::into),
        }
    }
}

/// SIGINT and SIGTERM, as `check` handles them.
struct Interrupt {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[derive(Clone, Copy)]
enum Caught {
    Int,
    Term,
}

impl Caught {
    fn name(self) -> &'static str {
        match self {
            Caught::Int => "SIGINT",
            Caught::Term => "SIGTERM",
        }
    }

    /// 128 + the signal number, as a shell reports a process the signal ended.
    fn exit_code(self) -> u8 {
        match self {
            Caught::Int => 130,
            Caught::Term => 143,
        }
    }
}

impl Interrupt {
    fn install() -> std::io::Result<Interrupt> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Interrupt {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> Option<Caught> {
        tokio::select! {
            s = self.int.recv() => s.map(|_| Caught::Int),
            s = self.term.recv() => s.map(|_| Caught::Term),
        }
    }
}

/// One store in `--json` output. Field names are stable (documented in README, `check`).
#[derive(Serialize)]
struct JsonRow<'a> {
    store: &'a str,
    name: &'a str,
    marketplace: &'static str,
    status: Status,
    exit_code: u8,
    findings: Vec<JsonFinding<'a>>,
    account: Option<&'a str>,
    expires_at: Option<String>,
    latency_ms: u64,
    http_status: Option<u16>,
    roles: &'a [String],
    marketplaces: &'a [String],
    store_name: Option<&'a str>,
    premium: Option<&'a str>,
    egress: Option<&'a str>,
    /// When the seller authorised the app (Amazon), and whether that date is only inferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized_at: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    authorized_inferred: bool,
    checked_at: String,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    kind: &'static str,
    status: Status,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_secs: Option<u64>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl<'a> JsonRow<'a> {
    fn new(o: &'a Outcome, store: &'a Store) -> Self {
        JsonRow {
            store: &o.store_id,
            name: &store.name,
            marketplace: o.marketplace.as_str(),
            status: o.status,
            exit_code: o.status.exit_code(),
            findings: o
                .findings
                .iter()
                .map(|f| JsonFinding {
                    kind: f.kind.as_str(),
                    status: f.kind.status(),
                    detail: &f.detail,
                    retry_after_secs: f.retry_after_secs,
                })
                .collect(),
            account: o.facts.account.as_deref(),
            expires_at: o.facts.expires_at.map(rfc3339),
            latency_ms: o.facts.latency_ms,
            http_status: o.facts.http_status,
            roles: &o.facts.roles,
            marketplaces: &o.facts.marketplaces,
            store_name: o.facts.store_name.as_deref(),
            premium: o.facts.premium.as_deref(),
            egress: o.facts.egress.as_deref(),
            authorized_at: o.facts.authorized_at.map(rfc3339),
            authorized_inferred: o.facts.authorized_inferred,
            checked_at: rfc3339(o.checked_at),
        }
    }
}

/// Terminal columns a string takes (East Asian wide characters count two).
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let u = c as u32;
            let wide = matches!(u,
                0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF
                | 0x4E00..=0x9FFF | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
                | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD);
            if wide { 2 } else { 1 }
        })
        .sum()
}

/// The human table: one row per store, then each finding's detail.
fn table(outcomes: &[Outcome], lang: Language, tz: crate::zone::Zone) -> String {
    let t = |k: &str| i18n::text(lang, k).to_string();
    let header = [
        t("check.col.store"),
        t("check.col.marketplace"),
        t("check.col.status"),
        t("check.col.findings"),
        t("check.col.account"),
        t("check.col.expires"),
        t("check.col.latency"),
    ];
    let mut rows: Vec<[String; 7]> = vec![header];
    for o in outcomes {
        let mut kinds: Vec<_> = o.findings.iter().map(|f| f.kind).collect();
        kinds.dedup();
        let findings = if kinds.is_empty() {
            "-".to_string()
        } else {
            kinds
                .iter()
                .map(|k| t(&format!("finding.{}", k.as_str())))
                .collect::<Vec<_>>()
                .join("; ")
        };
        rows.push([
            o.store_id.clone(),
            o.marketplace.display_name().to_string(),
            t(&format!("status.{}", o.status.as_str())),
            findings,
            o.facts.account.clone().unwrap_or_else(|| "-".into()),
            o.facts
                .expires_at
                .map(|e| e.with_timezone(&tz).format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{} ms", o.facts.latency_ms),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(w - width(cell) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let details: Vec<String> = outcomes
        .iter()
        .flat_map(|o| {
            o.findings.iter().map(move |f| {
                format!(
                    "  {} — {}: {}",
                    o.store_id,
                    t(&format!("finding.{}", f.kind.as_str())),
                    f.detail
                )
            })
        })
        .collect();
    if !details.is_empty() {
        out.push('\n');
        out.push_str(&t("check.details"));
        out.push('\n');
        for d in details {
            out.push_str(&d);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_count_two() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("店铺"), 4);
        assert_eq!(width("速卖通-1"), 8);
    }

    #[test]
    fn json_rows_come_out_in_store_order_as_soon_as_the_rows_before_them_did() {
        use serde::ser::Serializer as _;
        let mut text = String::new();
        for i in 0..5 {
            text.push_str(&format!(
                "[[store]]\nid = \"s{i}\"\nmarketplace = \"ozon\"\naccount = \"{i}\"\n"
            ));
        }
        let config = Config::from_toml(Path::new("/x/storeguard.toml"), &text).unwrap();
        let store = |i: usize| &config.stores[i];
        let outcome = |i: usize| {
            Some(Outcome::new(
                &format!("s{i}"),
                crate::model::Marketplace::Ozon,
                Utc::now(),
                Vec::new(),
                Default::default(),
            ))
        };
        let mut out = Vec::new();
        let mut json = serde_json::Serializer::pretty(&mut out);
        let mut rows = Rows {
            seq: json.serialize_seq(None).unwrap(),
            next: 0,
            waiting: Default::default(),
            failed: None,
        };
        let order = |rows: &Rows<_>| rows.next;
        rows.put(1, outcome(1), store);
        assert_eq!(order(&rows), 0, "row 1 waits for row 0");
        rows.put(0, outcome(0), store);
        assert_eq!(order(&rows), 2);
        assert!(rows.waiting.is_empty());
        // Store 2 was never started (interrupted); 4 came back, 3 never did.
        rows.put(2, None, store);
        rows.put(4, outcome(4), store);
        assert_eq!(order(&rows), 3);
        rows.finish(store).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let ids: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["store"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["s0", "s1", "s4"]);
    }
}
