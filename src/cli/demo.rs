//! `storeguard demo`: the whole product in under a minute, with no marketplace account.
//!
//! Starts the fake marketplaces in-process, writes a throwaway config and vault with seventeen
//! stores, runs the daemon on a fast schedule, breaks some stores and fixes them again, printing
//! every alert as it would be delivered.

use crate::alert::Delivery;
use crate::clock::BoxFuture;
use crate::config::Config;
use crate::daemon::RealParts;
use crate::daemon::{self, Checker, Parts, Sender, Shared};
use crate::demo::{World, WorldConfig, demo_stores};
use crate::event::{AlertEvent, EventKind};
use crate::fake::Scenario;
use crate::model::Language;
use crate::vault::Vault;
use chrono::{DateTime, Utc};
use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Language of the alerts: en or zh-CN
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// Seconds to wait between the demo's acts
    #[arg(long, default_value_t = 5)]
    pub pace: u64,
}

/// Prints alerts the way a channel would deliver them.
struct Printer {
    lang: Language,
    tz: chrono_tz::Tz,
    opened: AtomicUsize,
    resolved: AtomicUsize,
    reminders: AtomicUsize,
}

impl Sender for Printer {
    fn send<'a>(
        &'a self,
        channel: &'a str,
        e: &'a AlertEvent,
        _now: DateTime<Utc>,
    ) -> BoxFuture<'a, Delivery> {
        let counter = match e.event {
            EventKind::Opened => &self.opened,
            EventKind::Resolved => &self.resolved,
            EventKind::Reminder => &self.reminders,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let m = crate::alert::render(e, self.lang, self.tz);
        println!(
            "  ┌─ alert → {channel} · {} · event {}",
            e.event.as_str(),
            e.event_id
        );
        println!("  │ {}", m.title);
        for line in m.text.lines() {
            println!("  │ {line}");
        }
        println!("  └─");
        Box::pin(async { Delivery::Delivered })
    }
}

struct DemoParts {
    real: RealParts,
    printer: Arc<Printer>,
}

impl Parts for DemoParts {
    fn build(&self, config: &Arc<Config>) -> anyhow::Result<(Arc<dyn Checker>, Arc<dyn Sender>)> {
        let (probe, _) = self.real.build(config)?;
        Ok((probe, self.printer.clone()))
    }
}

fn table(shared: &Shared, lang: Language) {
    let (views, _) = crate::web::view::from_daemon(shared, crate::web::view::Accounts::Shown);
    let rows: Vec<[String; 5]> = views
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.marketplace.as_str().to_string(),
                s.status_words(lang),
                if s.findings.is_empty() {
                    "-".into()
                } else {
                    s.findings
                        .iter()
                        .map(|f| {
                            crate::i18n::text(lang, &format!("finding.{}", f.kind.as_str()))
                                .to_string()
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                },
                s.expires_at
                    .map_or("-".into(), |e| e.format("%Y-%m-%d").to_string()),
            ]
        })
        .collect();
    super::status::print_table(
        &["STORE", "MARKETPLACE", "STATUS", "FINDINGS", "EXPIRES"],
        &rows,
    );
}

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let lang = match args.lang.as_str() {
        "zh-CN" | "zh" | "cn" => Language::ZhCn,
        _ => Language::En,
    };
    let pace = Duration::from_secs(args.pace.clamp(1, 60));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        println!("storeguard demo — fake Ozon, Amazon, Alibaba.com and AliExpress on loopback; nothing leaves this machine.\n");
        let wc = WorldConfig {
            language: if lang == Language::ZhCn { "zh-CN" } else { "en" },
            ..WorldConfig::default()
        };
        let world = World::build(demo_stores(), wc).await?;
        let config = Arc::new(Config::load(&world.config_path).map_err(|e| anyhow::anyhow!("{e}"))?);
        println!(
            "A throwaway config and age vault with {} stores: {}",
            config.stores.len(),
            world.path().display()
        );
        println!("Every store is checked every 2 seconds (real marketplaces are never polled this fast).\n");
        let identity = Arc::new(world.identity()?);
        let vault = Vault::open(&config.daemon.vault_dir)?;
        let printer = Arc::new(Printer {
            lang,
            tz: config.daemon.timezone,
            opened: AtomicUsize::new(0),
            resolved: AtomicUsize::new(0),
            reminders: AtomicUsize::new(0),
        });
        let parts = Arc::new(DemoParts {
            real: RealParts::new(vault, identity),
            printer: printer.clone(),
        });
        let listener = daemon::bind(&config).await?;
        let daemon = daemon::Daemon::start(
            config.clone(),
            parts,
            daemon::Options::default(),
            listener,
        )
        .await?;
        let shared = daemon.shared().clone();

        println!("── Act 1: first checks. One Ozon key expires in 2 days, and one Alibaba.com access token is refused, refreshed and written back to the vault.\n");
        tokio::time::sleep(pace).await;
        table(&shared, lang);

        let broken = [
            ("ozon-outlet", Scenario::DeactivatedKey, "its API key is deactivated"),
            ("ozon-kazan", Scenario::CompanyBlocked, "Ozon blocks the company"),
            ("amazon-ca", Scenario::MissingRole, "the app loses its Selling Partner API role"),
            ("aliexpress-home", Scenario::SellerMismatch("2000099999999".into()), "its tokens now belong to another seller"),
        ];
        println!("\n── Act 2: four stores break:");
        for (id, scenario, what) in &broken {
            println!("   {id}: {what}");
            world.set_scenario(id, scenario.clone());
        }
        println!();
        tokio::time::sleep(pace + Duration::from_secs(1)).await;
        table(&shared, lang);

        println!("\n── Act 3: the seller fixes them and asks for a check now (refused keys back off, so the daemon would otherwise wait).\n");
        for (id, _, _) in &broken {
            world.set_scenario(id, Scenario::Healthy);
            shared.check_now(id);
        }
        tokio::time::sleep(pace).await;
        table(&shared, lang);

        daemon.shutdown().await?;
        println!(
            "\nDone: {} alerts opened, {} resolved, {} reminders — each with a stable event id, queued in SQLite before delivery.",
            printer.opened.load(Ordering::Relaxed),
            printer.resolved.load(Ordering::Relaxed),
            printer.reminders.load(Ordering::Relaxed)
        );
        println!("Next: `storeguard init`, then `storeguard store add` for a real store (see README).");
        Ok(ExitCode::SUCCESS)
    })
}
