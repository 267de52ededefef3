//! A throwaway world of fake marketplaces, a config and a vault, for `storeguard demo`, the
//! integration tests and the benchmarks.
//!
//! Everything lives in a temp directory and talks to loopback fakes only. Every fixture secret
//! carries a `CANARY-` marker so leak tests can grep for it.

use crate::fake::{
    AmazonAccount, AmazonFake, IopAccount, IopFake, IopKind, Options, OzonFake, Scenario,
    ShopeeAccount, ShopeeFake, TiktokAccount, TiktokFake, WildberriesFake, YandexFake,
};
use crate::model::Marketplace;
use crate::vault::{Document, EntryId, Identity, Schema, Vault};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One store of the world.
#[derive(Clone, Debug)]
pub struct StoreSpec {
    pub id: String,
    pub name: String,
    pub marketplace: Marketplace,
    pub scenario: Scenario,
}

impl StoreSpec {
    pub fn new(id: &str, name: &str, marketplace: Marketplace) -> Self {
        StoreSpec {
            id: id.into(),
            name: name.into(),
            marketplace,
            scenario: Scenario::Healthy,
        }
    }

    pub fn with(mut self, scenario: Scenario) -> Self {
        self.scenario = scenario;
        self
    }
}

/// The running fakes plus the files pointing at them.
pub struct World {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub ozon: OzonFake,
    pub amazon: AmazonFake,
    pub alibaba: IopFake,
    pub aliexpress: IopFake,
    pub wildberries: WildberriesFake,
    pub yandex: YandexFake,
    pub lazada: IopFake,
    pub shopee: ShopeeFake,
    pub tiktok: TiktokFake,
    pub stores: Vec<StoreSpec>,
}

/// Expected Amazon marketplace ids for fake sellers (US, CA).
pub const AMAZON_MARKETPLACES: [&str; 2] = ["ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"];

/// The account number a fake store answers for.
pub fn account_of(index: usize, m: Marketplace) -> String {
    match m {
        Marketplace::Ozon => format!("{}", 1_000_000 + index),
        Marketplace::Amazon => format!("A{:013}", index),
        Marketplace::Alibaba => format!("22000{:08}", index),
        Marketplace::Aliexpress => format!("20000{:08}", index),
        Marketplace::Wildberries => format!("e8923014-e233-47a8-898e-{:012x}", index),
        Marketplace::YandexMarket => format!("{}", 70_000_000 + index),
        Marketplace::Lazada => format!("{}", 300_000_000 + index),
        Marketplace::Shopee => format!("{}", 800_000_000 + index),
        Marketplace::TiktokShop => format!("{}", 7_000_714_532_876_000_000_u64 + index as u64),
    }
}

/// The mailbox account of [`World::add_mailbox`].
pub const MAIL_USER: &str = "seller@example.test";

/// A unique fixture secret.
pub fn canary(store: &str, field: &str) -> String {
    format!("CANARY-{store}-{field}-7c1e")
}

/// Settings for the generated config.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub schedule: String,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub remind_every: String,
    pub language: &'static str,
    pub listen: String,
    /// Extra TOML appended verbatim (channels, maintenance windows).
    pub extra: String,
    /// Default channels.
    pub channels: Vec<String>,
    pub fake: Options,
    /// Where the world's temp directory goes (default: the system temp dir). Benchmarks put
    /// 100,000 vault entries on tmpfs, where writing them does not wait for the disk.
    pub parent_dir: Option<PathBuf>,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            schedule: "*/2 * * * * *".into(),
            failure_threshold: 2,
            success_threshold: 1,
            remind_every: "1h".into(),
            language: "en",
            listen: "127.0.0.1:0".into(),
            extra: "[[channel]]\nname = \"console\"\nkind = \"log\"\n".into(),
            channels: vec!["console".into()],
            fake: Options::default(),
            parent_dir: None,
        }
    }
}

impl World {
    /// Starts the fakes and writes config, identity and vault for `stores`.
    pub async fn build(stores: Vec<StoreSpec>, wc: WorldConfig) -> anyhow::Result<World> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("storeguard-demo-");
        let dir = match &wc.parent_dir {
            Some(parent) => builder.tempdir_in(parent)?,
            None => builder.tempdir()?,
        };
        let ozon = OzonFake::start(wc.fake.clone()).await?;
        let amazon = AmazonFake::start(wc.fake.clone()).await?;
        let alibaba = IopFake::start(IopKind::Alibaba, wc.fake.clone()).await?;
        let aliexpress = IopFake::start(IopKind::Aliexpress, wc.fake.clone()).await?;
        let wildberries = WildberriesFake::start(wc.fake.clone()).await?;
        let yandex = YandexFake::start(wc.fake.clone()).await?;
        let lazada = IopFake::start(IopKind::Lazada, wc.fake.clone()).await?;
        let shopee = ShopeeFake::start(wc.fake.clone()).await?;
        let tiktok = TiktokFake::start(wc.fake.clone()).await?;

        let identity = Identity::generate();
        identity.write_new(&dir.path().join("identity.txt"))?;
        let vault = Vault::create(&dir.path().join("vault"), &identity.recipient())?;

        let mut cfg = String::new();
        let _ = write!(
            cfg,
            "[daemon]\nstate_dir = \"state\"\nvault_dir = \"vault\"\nidentity = \"identity.txt\"\nlisten = \"{}\"\nlanguage = \"{}\"\n\n\
             [defaults]\nschedule = \"{}\"\ntimeout = \"5s\"\nfailure_threshold = {}\nsuccess_threshold = {}\nremind_every = \"{}\"\nchannels = [{}]\n\n\
             [marketplace.ozon]\nendpoint = \"{}\"\n\n[marketplace.amazon]\ntoken_endpoint = \"{}\"\nna = \"{}\"\neu = \"{}\"\nfe = \"{}\"\n\n\
             [marketplace.alibaba]\nendpoint = \"{}\"\n\n[marketplace.aliexpress]\nendpoint = \"{}\"\n\n\
             [marketplace.wildberries]\nendpoint = \"{}\"\n\n[marketplace.yandex_market]\nendpoint = \"{}\"\n\n\
             [marketplace.lazada]\nauth_endpoint = \"{lz}\"\nsg = \"{lz}\"\nmy = \"{lz}\"\nvn = \"{lz}\"\nth = \"{lz}\"\nph = \"{lz}\"\nid = \"{lz}\"\n\n\
             [marketplace.shopee]\nendpoint = \"{sp}\"\n\n\
             [marketplace.tiktok_shop]\nendpoint = \"{tt}\"\nauth_endpoint = \"{tt}\"\n\n",
            wc.listen,
            wc.language,
            wc.schedule,
            wc.failure_threshold,
            wc.success_threshold,
            wc.remind_every,
            wc.channels
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", "),
            ozon.url(),
            amazon.token_url(),
            amazon.url(),
            amazon.url(),
            amazon.url(),
            alibaba.url(),
            aliexpress.url(),
            wildberries.url(),
            yandex.url(),
            lz = format!("{}rest", lazada.url()),
            sp = shopee.url(),
            tt = tiktok.url(),
        );
        for (i, s) in stores.iter().enumerate() {
            let account = account_of(i, s.marketplace);
            let _ = writeln!(
                cfg,
                "[[store]]\nid = \"{}\"\nmarketplace = \"{}\"\nname = \"{}\"\naccount = \"{account}\"",
                s.id, s.marketplace, s.name
            );
            if s.marketplace == Marketplace::Lazada {
                cfg.push_str("region = \"sg\"\n");
            }
            if s.marketplace == Marketplace::Amazon {
                let _ = writeln!(
                    cfg,
                    "region = \"na\"\nmarketplaces = [{}]",
                    AMAZON_MARKETPLACES
                        .iter()
                        .map(|m| format!("\"{m}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            cfg.push('\n');
            let fakes = Fakes {
                ozon: &ozon,
                amazon: &amazon,
                alibaba: &alibaba,
                aliexpress: &aliexpress,
                wildberries: &wildberries,
                yandex: &yandex,
                lazada: &lazada,
                shopee: &shopee,
                tiktok: &tiktok,
            };
            let (doc, schema) = add_to_fakes(s, &account, &fakes);
            let mut doc = Document::parse(&doc, schema).context("fixture entry")?;
            vault.write(&EntryId::store(&s.id), &mut doc, None, Some(&identity))?;
        }
        cfg.push_str(&wc.extra);
        let api = format!("api_token = \"{}\"\n", canary("daemon", "api-token"));
        let mut doc = Document::parse(&api, Schema::Daemon)?;
        vault.write(&EntryId::daemon(), &mut doc, None, Some(&identity))?;
        let config_path = dir.path().join("storeguard.toml");
        std::fs::write(&config_path, cfg)?;
        Ok(World {
            dir,
            config_path,
            ozon,
            amazon,
            alibaba,
            aliexpress,
            wildberries,
            yandex,
            lazada,
            shopee,
            tiktok,
            stores,
        })
    }

    /// Adds a mailbox on `port` (an IMAP server on loopback, no TLS) serving `store`, whose
    /// login hours become `hours`; DKIM keys are looked up at `resolver`. The password is a
    /// fixture secret in the vault entry `mailbox/NAME`.
    pub fn add_mailbox(
        &self,
        name: &str,
        port: u16,
        resolver: std::net::SocketAddr,
        store: &str,
        hours: &str,
    ) -> anyhow::Result<()> {
        let cfg = std::fs::read_to_string(&self.config_path)?;
        let marker = format!("id = \"{store}\"\n");
        anyhow::ensure!(cfg.contains(&marker), "no store {store} in the world");
        let mut cfg = cfg.replacen(&marker, &format!("{marker}login_hours = \"{hours}\"\n"), 1);
        let _ = write!(
            cfg,
            "\n[mail]\nresolver = \"{resolver}\"\npoll = \"1s\"\n\n[[mailbox]]\nname = \"{name}\"\n\
             host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"{MAIL_USER}\"\n\
             stores = [\"{store}\"]\n"
        );
        std::fs::write(&self.config_path, cfg)?;
        let identity = self.identity()?;
        let vault = Vault::open(&self.dir.path().join("vault"))?;
        let mut doc = Document::parse(
            &format!("password = \"{}\"\n", canary(name, "password")),
            Schema::Mailbox { xoauth2: false },
        )?;
        vault.write(&EntryId::mailbox(name), &mut doc, None, Some(&identity))?;
        Ok(())
    }

    /// Writes a channel's vault entry.
    pub fn put_channel(
        &self,
        name: &str,
        kind: crate::model::ChannelKind,
        doc: &str,
    ) -> anyhow::Result<()> {
        let identity = self.identity()?;
        let vault = Vault::open(&self.dir.path().join("vault"))?;
        let mut d = Document::parse(doc, Schema::Channel(kind))?;
        vault.write(&EntryId::channel(name), &mut d, None, Some(&identity))?;
        Ok(())
    }

    pub fn identity(&self) -> anyhow::Result<Identity> {
        Ok(Identity::load(
            &self.dir.path().join("identity.txt"),
            || None,
        )?)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Changes how the fake answers one store.
    pub fn set_scenario(&self, store_id: &str, scenario: Scenario) -> bool {
        let Some((i, s)) = self
            .stores
            .iter()
            .enumerate()
            .find(|(_, s)| s.id == store_id)
        else {
            return false;
        };
        match s.marketplace {
            Marketplace::Ozon => self
                .ozon
                .set_scenario(&account_of(i, s.marketplace), scenario),
            Marketplace::Amazon => self
                .amazon
                .set_scenario(&canary(&s.id, "refresh-token"), scenario),
            Marketplace::Alibaba => self.alibaba.set_scenario(&app_key(&s.id), scenario),
            Marketplace::Aliexpress => self.aliexpress.set_scenario(&app_key(&s.id), scenario),
            Marketplace::Lazada => self.lazada.set_scenario(&app_key(&s.id), scenario),
            Marketplace::Shopee => self
                .shopee
                .set_scenario(&account_of(i, s.marketplace), scenario),
            Marketplace::TiktokShop => self.tiktok.set_scenario(&app_key(&s.id), scenario),
            Marketplace::Wildberries => self
                .wildberries
                .set_scenario(&account_of(i, s.marketplace), scenario),
            Marketplace::YandexMarket => self
                .yandex
                .set_scenario(&canary(&s.id, "api-key"), scenario),
        }
    }
}

fn app_key(store_id: &str) -> String {
    format!("app-{store_id}")
}

/// The fakes a world's stores are registered with.
struct Fakes<'a> {
    ozon: &'a OzonFake,
    amazon: &'a AmazonFake,
    alibaba: &'a IopFake,
    aliexpress: &'a IopFake,
    wildberries: &'a WildberriesFake,
    yandex: &'a YandexFake,
    lazada: &'a IopFake,
    shopee: &'a ShopeeFake,
    tiktok: &'a TiktokFake,
}

/// When a Wildberries fixture token expires: in N days for `ExpiringInDays(N)`, else in 150.
fn wildberries_expiry(scenario: &Scenario) -> i64 {
    let days = match scenario {
        Scenario::ExpiringInDays(d) => *d,
        _ => 150,
    };
    (chrono::Utc::now() + chrono::Duration::days(days)).timestamp()
}

fn wildberries_token(s: &StoreSpec, sid: &str, exp: i64) -> String {
    crate::fake::wildberries::token(sid, exp, &canary(&s.id, "token"))
}

fn add_to_fakes(s: &StoreSpec, account: &str, f: &Fakes<'_>) -> (String, Schema) {
    let (ozon, amazon, alibaba, aliexpress) = (f.ozon, f.amazon, f.alibaba, f.aliexpress);
    match s.marketplace {
        Marketplace::Ozon => {
            let key = canary(&s.id, "api-key");
            ozon.add_account(account, &key, s.scenario.clone());
            (
                format!("client_id = \"{account}\"\napi_key = \"{key}\"\n"),
                Schema::Store(Marketplace::Ozon),
            )
        }
        Marketplace::Amazon => {
            let acc = AmazonAccount {
                refresh_token: canary(&s.id, "refresh-token"),
                client_id: format!("amzn1.application-oa2-client.{}", s.id),
                client_secret: canary(&s.id, "client-secret"),
                marketplaces: AMAZON_MARKETPLACES.iter().map(|m| m.to_string()).collect(),
                store_name: Some(s.name.clone()),
            };
            let doc = format!(
                "lwa_client_id = \"{}\"\nlwa_client_secret = \"{}\"\nrefresh_token = \"{}\"\nclient_secret_rotated_at = \"{}\"\n",
                acc.client_id,
                acc.client_secret,
                acc.refresh_token,
                (chrono::Utc::now() - chrono::Duration::days(30))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            amazon.add_account(acc, s.scenario.clone());
            (doc, Schema::Store(Marketplace::Amazon))
        }
        Marketplace::Alibaba | Marketplace::Aliexpress | Marketplace::Lazada => {
            let acc = IopAccount {
                app_key: app_key(&s.id),
                app_secret: canary(&s.id, "app-secret"),
                access_token: canary(&s.id, "access-token"),
                refresh_token: canary(&s.id, "refresh-token"),
                seller_id: account.to_string(),
                store_name: Some(s.name.clone()),
            };
            let doc = format!(
                "app_key = \"{}\"\napp_secret = \"{}\"\naccess_token = \"{}\"\nrefresh_token = \"{}\"\n",
                acc.app_key, acc.app_secret, acc.access_token, acc.refresh_token
            );
            let fake = match s.marketplace {
                Marketplace::Alibaba => alibaba,
                Marketplace::Lazada => f.lazada,
                _ => aliexpress,
            };
            fake.add_account(acc, s.scenario.clone());
            (doc, Schema::Store(s.marketplace))
        }
        Marketplace::Wildberries => {
            let token = wildberries_token(s, account, wildberries_expiry(&s.scenario));
            f.wildberries
                .add_account(account, &token, s.scenario.clone());
            (
                format!("token = \"{token}\"\n"),
                Schema::Store(Marketplace::Wildberries),
            )
        }
        Marketplace::TiktokShop => {
            let acc = TiktokAccount {
                app_key: app_key(&s.id),
                app_secret: canary(&s.id, "app-secret"),
                shop_id: account.to_string(),
                access_token: canary(&s.id, "access-token"),
                refresh_token: canary(&s.id, "refresh-token"),
                shop_name: s.name.clone(),
            };
            let doc = format!(
                "app_key = \"{}\"\napp_secret = \"{}\"\naccess_token = \"{}\"\nrefresh_token = \"{}\"\n",
                acc.app_key, acc.app_secret, acc.access_token, acc.refresh_token
            );
            f.tiktok.add_account(acc, s.scenario.clone());
            (doc, Schema::Store(Marketplace::TiktokShop))
        }
        Marketplace::Shopee => {
            let acc = ShopeeAccount {
                partner_id: "2001887".into(),
                partner_key: canary(&s.id, "partner-key"),
                shop_id: account.to_string(),
                access_token: canary(&s.id, "access-token"),
                refresh_token: canary(&s.id, "refresh-token"),
                shop_name: s.name.clone(),
            };
            let doc = format!(
                "partner_id = \"{}\"\npartner_key = \"{}\"\naccess_token = \"{}\"\nrefresh_token = \"{}\"\n",
                acc.partner_id, acc.partner_key, acc.access_token, acc.refresh_token
            );
            f.shopee.add_account(acc, s.scenario.clone());
            (doc, Schema::Store(Marketplace::Shopee))
        }
        Marketplace::YandexMarket => {
            let key = canary(&s.id, "api-key");
            f.yandex
                .add_account(&key, account, &s.name, s.scenario.clone());
            (
                format!("api_key = \"{key}\"\n"),
                Schema::Store(Marketplace::YandexMarket),
            )
        }
    }
}

/// The seventeen stores of `storeguard demo`, on all nine marketplaces.
pub fn demo_stores() -> Vec<StoreSpec> {
    use Marketplace::*;
    vec![
        StoreSpec::new("ozon-moscow", "Ozon 莫斯科旗舰店", Ozon),
        StoreSpec::new("ozon-outlet", "Ozon Outlet", Ozon),
        StoreSpec::new("ozon-kazan", "Ozon Kazan Home", Ozon),
        StoreSpec::new("ozon-spb", "Ozon 圣彼得堡店", Ozon).with(Scenario::ExpiringInDays(2)),
        StoreSpec::new("amazon-us", "Amazon US — Acme Home", Amazon),
        StoreSpec::new("amazon-ca", "Amazon CA — Acme Home", Amazon),
        StoreSpec::new("amazon-kitchen", "Amazon US — 厨房用品", Amazon),
        StoreSpec::new("alibaba-yiwu", "阿里巴巴国际站 — 义乌家居", Alibaba),
        StoreSpec::new("alibaba-shenzhen", "Alibaba.com — Shenzhen Tech", Alibaba)
            .with(Scenario::IllegalAccessTokenThenRefresh),
        StoreSpec::new("aliexpress-main", "速卖通旗舰店", Aliexpress),
        StoreSpec::new("aliexpress-home", "AliExpress Home", Aliexpress),
        StoreSpec::new("aliexpress-toys", "速卖通玩具店", Aliexpress),
        StoreSpec::new("wb-home", "Wildberries — Flax Store", Wildberries)
            .with(Scenario::ExpiringInDays(5)),
        StoreSpec::new("yandex-market", "Яндекс Маркет — My Business", YandexMarket),
        StoreSpec::new("lazada-sg", "Lazada SG — Acme Home", Lazada)
            .with(Scenario::IllegalAccessTokenThenRefresh),
        StoreSpec::new("shopee-my", "Shopee MY — Acme Home", Shopee),
        StoreSpec::new("tiktok-uk", "TikTok Shop UK — Acme Home", TiktokShop),
    ]
}
