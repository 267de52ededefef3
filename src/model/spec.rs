//! The spec tables: everything storeguard knows about each marketplace and each channel kind
//! beyond its id, in one entry per variant. `spec()` is an exhaustive match, so a new variant
//! does not compile until its entry is written; everything else (vault schema, prompts, config
//! endpoints, rate limits, robot URLs) reads these entries.

use super::{ChannelKind, Marketplace};
use std::time::Duration;

/// A field of a schema.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub required: bool,
    pub ty: FieldType,
    /// Whether the value is a secret (hidden at the prompt, masked by `vault show`).
    pub secret: bool,
    pub help: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Time,
}

impl Field {
    /// A text field.
    pub const fn text(
        name: &'static str,
        required: bool,
        secret: bool,
        help: &'static str,
    ) -> Field {
        Field {
            name,
            required,
            ty: FieldType::Text,
            secret,
            help,
        }
    }

    /// An optional RFC 3339 time, never secret.
    pub const fn time(name: &'static str, help: &'static str) -> Field {
        Field {
            name,
            required: false,
            ty: FieldType::Time,
            secret: false,
            help,
        }
    }
}

const fn f(name: &'static str, required: bool, secret: bool, help: &'static str) -> Field {
    Field::text(name, required, secret, help)
}

const fn t(name: &'static str, help: &'static str) -> Field {
    Field::time(name, help)
}

const PROXY: Field = f(
    "proxy_password",
    false,
    true,
    "password of the store's egress proxy",
);

const OZON_FIELDS: &[Field] = &[
    f(
        "client_id",
        true,
        false,
        "Client-Id (the seller account number)",
    ),
    f(
        "api_key",
        true,
        true,
        "Api-Key from Seller Center → Settings → API keys",
    ),
    PROXY,
];
const AMAZON_FIELDS: &[Field] = &[
    f(
        "lwa_client_id",
        true,
        false,
        "LWA client identifier of the app",
    ),
    f("lwa_client_secret", true, true, "LWA client secret"),
    f(
        "refresh_token",
        true,
        true,
        "refresh token from authorising the app (Atzr|…)",
    ),
    t(
        "client_secret_rotated_at",
        "when the LWA client secret was last rotated (RFC 3339)",
    ),
    t(
        "authorized_at",
        "when the seller last authorised the app in Seller Central (a date): due again after 365 days",
    ),
    PROXY,
];
const IOP_FIELDS: &[Field] = &[
    f(
        "app_key",
        true,
        false,
        "App Key from the Open Platform console",
    ),
    f("app_secret", true, true, "App Secret"),
    f(
        "access_token",
        true,
        true,
        "access token from authorising the app",
    ),
    f(
        "refresh_token",
        true,
        true,
        "refresh token from authorising the app",
    ),
    t(
        "access_token_expires_at",
        "when the access token expires (RFC 3339)",
    ),
    t(
        "refresh_token_expires_at",
        "when the refresh token expires (RFC 3339)",
    ),
    PROXY,
];
const WILDBERRIES_FIELDS: &[Field] = &[
    f(
        "token",
        true,
        true,
        "API token from the seller cabinet → Settings → Access to API (a JWT, valid 180 days)",
    ),
    PROXY,
];
const YANDEX_MARKET_FIELDS: &[Field] = &[
    f(
        "api_key",
        true,
        true,
        "Api-Key token (ACMA:…) from the cabinet → Settings → API and modules",
    ),
    PROXY,
];
const SHOPEE_FIELDS: &[Field] = &[
    f(
        "partner_id",
        true,
        false,
        "Partner ID of the app (Shopee Open Platform console)",
    ),
    f("partner_key", true, true, "Partner Key (live) of the app"),
    f(
        "access_token",
        true,
        true,
        "access token from authorising the shop (4 hours; storeguard refreshes it)",
    ),
    f(
        "refresh_token",
        true,
        true,
        "refresh token (single use, 30 days; storeguard saves each new one)",
    ),
    t(
        "access_token_expires_at",
        "when the access token expires (RFC 3339)",
    ),
    t(
        "refresh_token_expires_at",
        "when the refresh token expires (RFC 3339)",
    ),
    PROXY,
];
const WEBHOOK_FIELDS: &[Field] = &[
    f("url", true, true, "the receiver's URL (may carry a token)"),
    f(
        "signing_secret",
        false,
        true,
        "HMAC key for the X-Storeguard-Signature header",
    ),
];
const SLACK_FIELDS: &[Field] = &[f(
    "url",
    true,
    true,
    "incoming-webhook URL (https://hooks.slack.com/services/…)",
)];
const TELEGRAM_FIELDS: &[Field] = &[f("bot_token", true, true, "bot token from @BotFather")];
const EMAIL_FIELDS: &[Field] = &[
    f("smtp_username", false, false, "SMTP user name"),
    f("smtp_password", false, true, "SMTP password"),
];
const DINGTALK_FIELDS: &[Field] = &[
    f(
        "url",
        false,
        true,
        "the robot's webhook URL exactly as copied (or only its access_token below)",
    ),
    f(
        "access_token",
        false,
        true,
        "access_token from the robot's webhook URL (or the whole URL as `url`)",
    ),
    f(
        "sign_secret",
        false,
        true,
        "加签 secret (SEC…), when signing is on",
    ),
];
const WECOM_FIELDS: &[Field] = &[
    f(
        "url",
        false,
        true,
        "the group robot's webhook URL exactly as copied (or only its key below)",
    ),
    f(
        "key",
        false,
        true,
        "key from the group robot's webhook URL (or the whole URL as `url`)",
    ),
];
const FEISHU_FIELDS: &[Field] = &[
    f(
        "url",
        false,
        true,
        "the bot's webhook URL exactly as copied (or only its token below)",
    ),
    f(
        "hook_token",
        false,
        true,
        "token at the end of the bot's webhook URL (or the whole URL as `url`)",
    ),
    f(
        "sign_secret",
        false,
        true,
        "signature secret, when signing is on",
    ),
];
const ALERTMANAGER_FIELDS: &[Field] = &[f(
    "bearer_token",
    false,
    true,
    "bearer token, when Alertmanager sits behind auth",
)];

/// A base URL in `[marketplace.<id>]`: its key and the built-in value.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub key: &'static str,
    pub default: &'static str,
}

const fn ep(key: &'static str, default: &'static str) -> Endpoint {
    Endpoint { key, default }
}

/// What storeguard knows about a marketplace beyond its id.
#[derive(Debug)]
pub struct MarketplaceSpec {
    /// The name sellers know it by.
    pub display_name: &'static str,
    /// The tightest schedule the marketplace's rate limits allow for a probe.
    pub min_check_interval: Duration,
    /// What a store's `account` holds, as `store add` asks for it.
    pub account_prompt: &'static str,
    /// Whether a store must name its `account` (`config check` insists).
    pub account_required: bool,
    /// What to write when it is missing.
    pub account_help: &'static str,
    /// The fields of a store's vault entry (`store/<id>`).
    pub vault_fields: &'static [Field],
    /// The regions a store must pick one of (`region` in its `[[store]]` table); each is also
    /// the key of that region's endpoint. Empty: stores name no region.
    pub regions: &'static [&'static str],
    /// What the regions are, for the help of a missing or unknown one.
    pub region_help: &'static str,
    /// How long a seller's authorisation of an app lasts before the seller must renew it by
    /// hand (no API says when it was given).
    pub reauthorize_after: Option<Duration>,
    /// Its base URLs, overridable in `[marketplace.<id>]`. The first is where a store's probe
    /// goes unless the marketplace picks one per store (Amazon's regions).
    pub endpoints: &'static [Endpoint],
}

impl Marketplace {
    /// Its table entry; a new marketplace does not compile until it has one.
    pub fn spec(self) -> &'static MarketplaceSpec {
        const MINUTE: Duration = Duration::from_secs(60);
        const SELLER_ID: &str = "Seller id";
        const SELLER_ID_HELP: &str =
            "add account = \"<seller id>\" (the seller id the app was authorised for)";
        const OZON: MarketplaceSpec = MarketplaceSpec {
            display_name: "Ozon",
            min_check_interval: MINUTE,
            account_prompt: "Client-Id (account number)",
            account_required: true,
            account_help: "add account = \"<Client-Id>\" (the seller account number shown next to the API key)",
            vault_fields: OZON_FIELDS,
            regions: &[],
            region_help: "",
            reauthorize_after: None,
            endpoints: &[ep("endpoint", "https://api-seller.ozon.ru")],
        };
        // 0.016 requests/second per app+seller pair: a probe every 5 minutes at most.
        const AMAZON: MarketplaceSpec = MarketplaceSpec {
            display_name: "Amazon",
            min_check_interval: Duration::from_secs(300),
            account_prompt: "Seller id (optional)",
            account_required: false,
            account_help: "",
            vault_fields: AMAZON_FIELDS,
            regions: &["na", "eu", "fe"],
            region_help: "the Selling Partner API region of its marketplaces",
            // Public SP-API apps: every 365 days.
            reauthorize_after: Some(Duration::from_secs(365 * 86_400)),
            endpoints: &[
                ep("na", "https://sellingpartnerapi-na.amazon.com"),
                ep("eu", "https://sellingpartnerapi-eu.amazon.com"),
                ep("fe", "https://sellingpartnerapi-fe.amazon.com"),
                ep("token_endpoint", "https://api.amazon.com/auth/o2/token"),
            ],
        };
        const ALIBABA: MarketplaceSpec = MarketplaceSpec {
            display_name: "Alibaba.com",
            min_check_interval: MINUTE,
            account_prompt: SELLER_ID,
            account_required: true,
            account_help: SELLER_ID_HELP,
            vault_fields: IOP_FIELDS,
            regions: &[],
            region_help: "",
            reauthorize_after: None,
            endpoints: &[ep("endpoint", "https://openapi-api.alibaba.com")],
        };
        const ALIEXPRESS: MarketplaceSpec = MarketplaceSpec {
            display_name: "AliExpress",
            min_check_interval: MINUTE,
            account_prompt: SELLER_ID,
            account_required: true,
            account_help: SELLER_ID_HELP,
            vault_fields: IOP_FIELDS,
            regions: &[],
            region_help: "",
            reauthorize_after: None,
            endpoints: &[ep("endpoint", "https://api-sg.aliexpress.com")],
        };
        // Seller info: 1 request a minute per seller account, bursts of 10.
        const WILDBERRIES: MarketplaceSpec = MarketplaceSpec {
            display_name: "Wildberries",
            min_check_interval: MINUTE,
            account_prompt: "Seller sid (the UUID in the token and in seller-info)",
            account_required: true,
            account_help: "add account = \"<sid>\" (the seller UUID; `storeguard check` shows the one the token answers for)",
            vault_fields: WILDBERRIES_FIELDS,
            regions: &[],
            region_help: "",
            reauthorize_after: None,
            endpoints: &[ep("endpoint", "https://common-api.wildberries.ru")],
        };
        // Campaigns: 1,000 requests an hour, at most 4 in flight per cabinet.
        const YANDEX_MARKET: MarketplaceSpec = MarketplaceSpec {
            display_name: "Yandex Market",
            min_check_interval: MINUTE,
            account_prompt: "Business id (the cabinet's number)",
            account_required: true,
            account_help: "add account = \"<business id>\" (the cabinet's business id; `storeguard check` shows the one the key answers for)",
            vault_fields: YANDEX_MARKET_FIELDS,
            regions: &[],
            region_help: "",
            reauthorize_after: None,
            endpoints: &[ep("endpoint", "https://api.partner.market.yandex.ru")],
        };
        // GetSeller has no published limit; the gateway bans a second or so on `ApiCallLimit`.
        const LAZADA: MarketplaceSpec = MarketplaceSpec {
            display_name: "Lazada",
            min_check_interval: MINUTE,
            account_prompt: "Seller id (GetSeller `seller_id`)",
            account_required: true,
            account_help: "add account = \"<seller id>\" (the seller id the app was authorised for)",
            vault_fields: IOP_FIELDS,
            regions: &["sg", "my", "vn", "th", "ph", "id"],
            region_help: "the country of the seller's Lazada shop",
            reauthorize_after: None,
            endpoints: &[
                ep("sg", "https://api.lazada.sg/rest"),
                ep("my", "https://api.lazada.com.my/rest"),
                ep("vn", "https://api.lazada.vn/rest"),
                ep("th", "https://api.lazada.co.th/rest"),
                ep("ph", "https://api.lazada.com.ph/rest"),
                ep("id", "https://api.lazada.co.id/rest"),
                ep("auth_endpoint", "https://auth.lazada.com/rest"),
            ],
        };
        // get_shop_info publishes no limit; one probe a minute stays far below any.
        const SHOPEE: MarketplaceSpec = MarketplaceSpec {
            display_name: "Shopee",
            min_check_interval: MINUTE,
            account_prompt: "Shop id",
            account_required: true,
            account_help: "add account = \"<shop_id>\" (the shop the app was authorised for; Shopee is asked about this shop)",
            vault_fields: SHOPEE_FIELDS,
            regions: &[],
            region_help: "",
            reauthorize_after: None,
            endpoints: &[ep("endpoint", "https://partner.shopeemobile.com")],
        };
        // 50 requests a second per API and app×shop: a probe a minute is far below.
        const TIKTOK_SHOP: MarketplaceSpec = MarketplaceSpec {
            display_name: "TikTok Shop",
            min_check_interval: MINUTE,
            account_prompt: "Shop id (as /authorization/202309/shops lists it)",
            account_required: true,
            account_help: "add account = \"<shop id>\" (the shop the app was authorised for)",
            vault_fields: IOP_FIELDS,
            regions: &[],
            region_help: "",
            reauthorize_after: None,
            endpoints: &[
                ep("endpoint", "https://open-api.tiktokglobalshop.com"),
                ep("auth_endpoint", "https://auth.tiktok-shops.com"),
            ],
        };
        match self {
            Marketplace::TiktokShop => &TIKTOK_SHOP,
            Marketplace::Shopee => &SHOPEE,
            Marketplace::Lazada => &LAZADA,
            Marketplace::Wildberries => &WILDBERRIES,
            Marketplace::YandexMarket => &YANDEX_MARKET,
            Marketplace::Ozon => &OZON,
            Marketplace::Amazon => &AMAZON,
            Marketplace::Alibaba => &ALIBABA,
            Marketplace::Aliexpress => &ALIEXPRESS,
        }
    }

    /// Display name as sellers know it.
    pub fn display_name(self) -> &'static str {
        self.spec().display_name
    }

    /// The tightest schedule the marketplace's rate limits allow for a probe.
    pub fn min_check_interval(self) -> Duration {
        self.spec().min_check_interval
    }
}

/// Where a robot webhook URL carries its token.
#[derive(Clone, Copy, Debug)]
pub enum TokenAt {
    /// In this query parameter (`?access_token=…`).
    Query(&'static str),
    /// The last path segment after this prefix.
    PathAfter(&'static str),
}

/// A chat robot whose webhook URL is pasted whole (`url`) or given as its token.
#[derive(Debug)]
pub struct Robot {
    /// The vault field that holds the token alone.
    pub token_field: &'static str,
    /// The hosts its URLs may name (the first is the default).
    pub hosts: &'static [&'static str],
    /// The path of the webhook (for [`TokenAt::Query`]).
    pub path: &'static str,
    pub token_at: TokenAt,
    /// What a URL looks like, for error messages.
    pub example: &'static str,
}

/// A setting of a `[[channel]]` table that a kind needs (asked by `channel add`).
#[derive(Clone, Copy, Debug)]
pub struct ConfigField {
    pub key: &'static str,
    pub prompt: &'static str,
    /// A list, given comma-separated.
    pub list: bool,
}

const fn cf(key: &'static str, prompt: &'static str, list: bool) -> ConfigField {
    ConfigField { key, prompt, list }
}

/// What storeguard knows about a channel kind beyond its id.
#[derive(Debug)]
pub struct ChannelSpec {
    /// The name its users know it by.
    pub display_name: &'static str,
    /// The fields of its vault entry (`channel/<name>`); `None` when it needs no entry.
    pub vault_fields: Option<&'static [Field]>,
    /// A robot webhook, when the kind is one.
    pub robot: Option<Robot>,
    /// The service's send limits as (messages, seconds) windows; empty for none.
    pub limits: &'static [(u32, u64)],
    /// Settings its `[[channel]]` table must have.
    pub config_fields: &'static [ConfigField],
}

impl ChannelKind {
    /// Its table entry; a new channel kind does not compile until it has one.
    pub fn spec(self) -> &'static ChannelSpec {
        const WEBHOOK: ChannelSpec = ChannelSpec {
            display_name: "webhook",
            vault_fields: Some(WEBHOOK_FIELDS),
            robot: None,
            limits: &[(10, 1), (300, 60)],
            config_fields: &[],
        };
        // About one message a second per incoming webhook, short bursts tolerated.
        const SLACK: ChannelSpec = ChannelSpec {
            display_name: "Slack",
            vault_fields: Some(SLACK_FIELDS),
            robot: None,
            limits: &[(1, 1)],
            config_fields: &[],
        };
        // About one message a second per chat (groups also at most 20 a minute, see
        // `TELEGRAM_GROUP_LIMITS`).
        const TELEGRAM: ChannelSpec = ChannelSpec {
            display_name: "Telegram",
            vault_fields: Some(TELEGRAM_FIELDS),
            robot: None,
            limits: &[(1, 1)],
            config_fields: &[cf(
                "chat_id",
                "Chat id (a number such as -1001234567890, or @channel)",
                false,
            )],
        };
        // Generous: protects a mail relay and receivers from a runaway loop only.
        const EMAIL: ChannelSpec = ChannelSpec {
            display_name: "e-mail",
            vault_fields: Some(EMAIL_FIELDS),
            robot: None,
            limits: &[(60, 60)],
            config_fields: &[
                cf("from", "Sender address", false),
                cf("to", "Recipients, comma-separated", true),
                cf(
                    "smtp_host",
                    "SMTP server host (port 587 with STARTTLS unless set)",
                    false,
                ),
            ],
        };
        // 20 messages a minute per robot; over that, throttled for 10 minutes.
        const DINGTALK: ChannelSpec = ChannelSpec {
            display_name: "DingTalk",
            vault_fields: Some(DINGTALK_FIELDS),
            robot: Some(Robot {
                token_field: "access_token",
                hosts: &["oapi.dingtalk.com"],
                path: "/robot/send",
                token_at: TokenAt::Query("access_token"),
                example: "https://oapi.dingtalk.com/robot/send?access_token=…",
            }),
            limits: &[(20, 62)],
            config_fields: &[],
        };
        // 20 messages a minute per robot.
        const WECOM: ChannelSpec = ChannelSpec {
            display_name: "WeCom",
            vault_fields: Some(WECOM_FIELDS),
            robot: Some(Robot {
                token_field: "key",
                hosts: &["qyapi.weixin.qq.com"],
                path: "/cgi-bin/webhook/send",
                token_at: TokenAt::Query("key"),
                example: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…",
            }),
            limits: &[(20, 62)],
            config_fields: &[],
        };
        // 5 a second and 100 a minute per bot.
        const FEISHU: ChannelSpec = ChannelSpec {
            display_name: "Feishu/Lark",
            vault_fields: Some(FEISHU_FIELDS),
            robot: Some(Robot {
                token_field: "hook_token",
                hosts: &["open.feishu.cn", "open.larksuite.com"],
                path: "/open-apis/bot/v2/hook/",
                token_at: TokenAt::PathAfter("/open-apis/bot/v2/hook/"),
                example: "https://open.feishu.cn/open-apis/bot/v2/hook/… (or open.larksuite.com)",
            }),
            limits: &[(5, 1), (100, 62)],
            config_fields: &[],
        };
        const ALERTMANAGER: ChannelSpec = ChannelSpec {
            display_name: "Alertmanager",
            vault_fields: Some(ALERTMANAGER_FIELDS),
            robot: None,
            limits: &[(50, 1)],
            config_fields: &[cf(
                "urls",
                "Alertmanager URLs, comma-separated (every peer of the cluster)",
                true,
            )],
        };
        const LOG: ChannelSpec = ChannelSpec {
            display_name: "log",
            vault_fields: None,
            robot: None,
            limits: &[],
            config_fields: &[],
        };
        match self {
            ChannelKind::Webhook => &WEBHOOK,
            ChannelKind::Slack => &SLACK,
            ChannelKind::Telegram => &TELEGRAM,
            ChannelKind::Email => &EMAIL,
            ChannelKind::Dingtalk => &DINGTALK,
            ChannelKind::Wecom => &WECOM,
            ChannelKind::Feishu => &FEISHU,
            ChannelKind::Alertmanager => &ALERTMANAGER,
            ChannelKind::Log => &LOG,
        }
    }

    /// Whether a channel of this kind has a vault entry (`channel/<name>`).
    pub fn has_vault_entry(self) -> bool {
        self.spec().vault_fields.is_some()
    }
}

/// A Telegram group chat: at most 20 messages a minute on top of one a second.
pub const TELEGRAM_GROUP_LIMITS: &[(u32, u64)] = &[(1, 1), (20, 62)];
