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
use crate::demo::{MAIL_USER, canary};
use crate::demo::{World, WorldConfig, demo_stores};
use crate::event::{AlertEvent, EventKind};
use crate::fake::Scenario;
use crate::fake::dns::{DkimKey, Dns};
use crate::fake::imap::{ImapFake, ImapOptions};
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
    tz: crate::zone::Zone,
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

    fn mail(&self, config: &Config) -> Vec<daemon::mail::MailLogin> {
        self.real.mail(config)
    }
}

/// The security mail of act 4: a real Amazon sign-in attempt (DKIM-signed by the demo's
/// amazon.com key) and a look-alike.
fn act4_mail(key: &DkimKey) -> (Vec<u8>, Vec<u8>) {
    let sign_in = crate::fake::dns::mail(
        MAIL_USER,
        "Amazon <account-update@amazon.com>",
        "Amazon Sign-in attempt",
        "demo-1@amazon.com",
        &format!(
            "Someone who knows your password is attempting to sign-in to your account.\n\
             When: 03:12 CST\nDevice: Firefox on Linux\nNear: Almaty, Kazakhstan\n\n\
             Your one-time code is 482913. Not you? https://www.amazon.com/ap/cvf?t={}\n",
            canary("amazon-us", "mail-link")
        ),
    );
    let phishing = crate::fake::dns::mail(
        MAIL_USER,
        "Amazon Seller Support <support@amaz0n-seller-verify.com>",
        "Your Amazon seller account is suspended",
        "demo-2@amaz0n-seller-verify.com",
        &format!(
            "Verify your identity within 24 hours: https://amaz0n-seller-verify.com/v?t={}\n",
            canary("amazon-us", "phishing-link")
        ),
    );
    (key.sign(&sign_in), phishing.into_bytes())
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
        println!("storeguard demo — fake marketplaces, a fake mailbox and DNS on loopback; nothing leaves this machine.\n");
        let wc = WorldConfig {
            language: if lang == Language::ZhCn { "zh-CN" } else { "en" },
            ..WorldConfig::default()
        };
        let world = World::build(demo_stores(), wc).await?;
        // amazon-us's mailbox: an IMAP server in this process, and DNS that publishes the demo's
        // amazon.com DKIM key.
        let dns = Dns::start().await?;
        let amazon_key = DkimKey::new("amazon.com", "demo", Some(&dns));
        let imap = ImapFake::start(ImapOptions {
            user: MAIL_USER.into(),
            password: canary("us-mail", "password"),
            idle: true,
            require_id: false,
        })
        .await?;
        world.add_mailbox("us-mail", imap.addr.port(), dns.addr, "amazon-us", "08:00-22:00 Asia/Shanghai")?;
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

        println!("\n── Act 4: amazon-us's mailbox receives an Amazon sign-in attempt at 03:12 Shanghai time, outside the store's login hours (08:00-22:00), and a fake \"amaz0n\" mail.\n");
        let (sign_in, phishing) = act4_mail(&amazon_key);
        // The last 19:12 UTC that has passed: 03:12 in Shanghai.
        let now = chrono::Utc::now();
        let night = now
            .date_naive()
            .and_hms_opt(19, 12, 0)
            .map(|t| t.and_utc())
            .map(|t| if t > now { t - chrono::Duration::days(1) } else { t })
            .unwrap_or(now);
        imap.deliver("INBOX", &sign_in, night);
        imap.deliver("spam", &phishing, chrono::Utc::now());
        tokio::time::sleep(pace).await;
        for m in shared.state.mail_records(None, 10)? {
            println!(
                "   mail record: {} {}  {} ({})  → {}",
                m.store_id,
                m.at.with_timezone(&config.daemon.timezone).format("%Y-%m-%d %H:%M"),
                m.domain,
                m.verdict,
                m.finding.as_deref().unwrap_or("recorded"),
            );
        }

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
