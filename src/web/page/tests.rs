use super::*;
use chrono::TimeZone;
use std::collections::BTreeSet;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 6, 30, 0).unwrap()
}

fn ctx(lang: Language) -> Ctx {
    Ctx {
        lang,
        tz: crate::zone::Zone::named("Asia/Shanghai").unwrap(),
        now: now(),
    }
}

fn row(store: &str, mins_ago: i64, status: Status, findings: &[&str]) -> CheckRow {
    CheckRow {
        store_id: store.into(),
        at: now() - chrono::Duration::minutes(mins_ago),
        status,
        findings: findings.iter().map(|s| s.to_string()).collect(),
        latency_ms: 120,
        egress: Some("direct".into()),
        account: Some("1000001".into()),
    }
}

fn view(id: &str, name: &str, m: Marketplace, findings: Vec<Finding>) -> StoreView {
    let status = findings
        .iter()
        .fold(Status::Ok, |s, f| s.worst(f.kind.status()));
    StoreView {
        id: id.into(),
        name: name.into(),
        marketplace: m,
        tags: vec![],
        enabled: true,
        status: Some(status),
        findings,
        account: Some("1000001".into()),
        expires_at: None,
        last_check: Some(now() - chrono::Duration::minutes(2)),
        next_check: Some(now() + chrono::Duration::minutes(3)),
        backing_off: false,
        latency_ms: Some(120),
        open_incidents: vec![],
        recent: (0..60).map(|i| row(id, i * 5, status, &[])).collect(),
    }
}

fn sample() -> Vec<StoreView> {
    let mut broken = view(
        "ozon-broken",
        "<b>Shop & Co</b> 'x'",
        Marketplace::Ozon,
        vec![Finding::new(
            FindingKind::AuthRejected,
            "Api-key is deactivated \"><img src=x onerror=alert(1)> company INN 7707083893",
        )],
    );
    broken.open_incidents = vec![crate::web::view::OpenIncident {
        incident_id: "i1".into(),
        finding: FindingKind::AuthRejected,
        severity: crate::model::Severity::Critical,
        opened_at: now() - chrono::Duration::hours(3),
    }];
    broken.tags = vec!["eu".into()];
    broken.recent[0].findings = vec!["auth_rejected".into()];
    broken.recent[0].status = Status::Critical;
    let mut expiring = view(
        "ozon-exp",
        "Ozon 圣彼得堡店",
        Marketplace::Ozon,
        vec![Finding::new(FindingKind::CredentialExpiring, "key expires")],
    );
    expiring.expires_at = Some(now() + chrono::Duration::days(12));
    expiring.tags = vec!["ru".into(), "eu".into()];
    let mut pending = view("ali-new", "速卖通新店", Marketplace::Aliexpress, vec![]);
    pending.status = None;
    pending.last_check = None;
    pending.recent.clear();
    let mut off = view("amz-off", "Amazon off", Marketplace::Amazon, vec![]);
    off.enabled = false;
    vec![
        view("ozon-ok", "Ozon OK", Marketplace::Ozon, vec![]),
        broken,
        expiring,
        view(
            "alibaba-down",
            "Alibaba down",
            Marketplace::Alibaba,
            vec![Finding::new(FindingKind::Unreachable, "connect timed out")],
        ),
        pending,
        off,
    ]
}

fn index(lang: Language, stores: &[StoreView], q: &PageQuery) -> String {
    let tags = vec!["eu".to_string(), "ru".to_string()];
    render_index(&Index {
        ctx: ctx(lang),
        stores,
        tags: &tags,
        open_incidents: 2,
        next_sweep: Some(now() + chrono::Duration::minutes(1)),
        query: q,
        history_ok: true,
    })
}

fn row_html<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<tr id=\"store-{id}\""))
        .unwrap_or_else(|| panic!("no row for {id}"));
    let end = page[start..].find("</tr>").unwrap();
    &page[start..start + end]
}

/// Every `page.*` key the code names, plus the dynamic ones.
fn page_keys() -> BTreeSet<String> {
    let src = [
        include_str!("mod.rs"),
        include_str!("html.rs"),
        include_str!("render.rs"),
        include_str!("handlers.rs"),
    ]
    .concat();
    let mut keys: BTreeSet<String> = src
        .split('"')
        .filter(|s| s.starts_with("page.") && !s.contains('{') && !s.ends_with('.'))
        .filter(|s| !s.ends_with(".rs") && !s.ends_with(".css"))
        .map(str::to_string)
        .collect();
    keys.insert("page.lang.en".into());
    keys.insert("page.lang.zh-CN".into());
    keys
}

#[test]
fn every_word_of_the_page_is_in_both_catalogues() {
    let en: toml::Table = toml::from_str(include_str!("../../i18n/en.toml")).unwrap();
    let zh: toml::Table = toml::from_str(include_str!("../../i18n/zh-CN.toml")).unwrap();
    let keys = page_keys();
    assert!(keys.len() > 50, "{keys:?}");
    for k in &keys {
        for (name, cat) in [("en", &en), ("zh-CN", &zh)] {
            let v = cat.get(k).and_then(|v| v.as_str());
            assert!(
                v.is_some_and(|v| !v.is_empty()),
                "missing translation: `{k}` in {name}.toml"
            );
        }
    }
}

#[test]
fn index_in_english_shows_statuses_findings_expiry_and_strips() {
    let page = index(Language::En, &sample(), &PageQuery::default());
    assert!(page.starts_with("<!doctype html>\n<html lang=\"en\">"));
    assert!(page.contains("<b>5</b> stores:"), "disabled not counted");
    let broken = row_html(&page, "ozon-broken");
    assert!(broken.contains("data-status=\"CRITICAL\""));
    assert!(broken.contains("<span class=\"badge critical\">CRITICAL</span>"));
    assert!(broken.contains("login refused (key, token or secret rejected)"));
    assert!(broken.contains("Api-key is deactivated"));
    assert!(broken.contains("open incidents: 1"));
    assert!(broken.contains("href=\"/stores/ozon-broken\""));
    let exp = row_html(&page, "ozon-exp");
    assert!(exp.contains("in 12 days</span> <span class=\"date\">2026-12-08</span>"));
    assert!(exp.contains("WARNING"));
    assert!(row_html(&page, "ali-new").contains("PENDING"));
    assert!(row_html(&page, "ali-new").contains("never"));
    assert!(row_html(&page, "amz-off").contains("DISABLED"));
    // Strips: always 48 cells, newest on the right, hover text with time and finding.
    assert_eq!(broken.matches("<span class=\"c").count(), STRIP_LEN);
    let last_cell = broken.rfind("<span class=\"c ").unwrap();
    assert!(
        broken[last_cell..].starts_with(
            "<span class=\"c critical\" title=\"2026-11-26 14:30:00 · CRITICAL · login refused (key, token or secret rejected)\">"
        ),
        "{}",
        &broken[last_cell..]
    );
    assert_eq!(
        row_html(&page, "ali-new")
            .matches("<span class=\"c\"></span>")
            .count(),
        STRIP_LEN
    );
    // Grouped by marketplace in the usual order, worst first inside a group.
    let pos = |s: &str| page.find(s).unwrap();
    assert!(pos("id=\"mp-ozon\"") < pos("id=\"mp-amazon\""));
    assert!(pos("id=\"mp-alibaba\"") < pos("id=\"mp-aliexpress\""));
    assert!(pos("store-ozon-broken") < pos("store-ozon-exp"));
    assert!(pos("store-ozon-exp") < pos("store-ozon-ok"));
    // Summary.
    assert!(page.contains("data-count=\"1\" href=\"/?status=CRITICAL\""));
    assert!(page.contains("open incidents: <b>2</b>"));
    assert!(page.contains("next check <time datetime=\"2026-11-26T06:31:00Z\" title=\"2026-11-26 14:31:00\">14:31:00</time> <span class=\"rel\">in 1m</span>"));
}

#[test]
fn index_in_chinese_uses_the_chinese_words() {
    let page = index(Language::ZhCn, &sample(), &PageQuery::default());
    assert!(page.contains("<html lang=\"zh-CN\">"));
    let broken = row_html(&page, "ozon-broken");
    assert!(broken.contains(">严重</span>"));
    assert!(broken.contains("登录被拒绝（密钥、令牌或密码无效）"));
    assert!(row_html(&page, "ozon-exp").contains("12 天后到期"));
    assert!(row_html(&page, "ali-new").contains("待检查"));
    assert!(page.contains("共 <b>5</b> 家店铺"));
    assert!(page.contains("最近 48 次检查"));
    assert!(page.contains("<option value=\"CRITICAL\">严重</option>"));
    // No English sentence of the page leaks into the Chinese one.
    for key in [
        "page.col.expiry",
        "page.filter.apply",
        "page.refresh",
        "page.col.last_check",
    ] {
        let en = i18n::text(Language::En, key);
        assert!(!page.contains(en), "`{en}` ({key}) in the zh-CN page");
    }
}

#[test]
fn everything_from_outside_is_escaped_and_tax_ids_masked() {
    let page = index(Language::En, &sample(), &PageQuery::default());
    assert!(page.contains("&lt;b&gt;Shop &amp; Co&lt;/b&gt; &#39;x&#39;"));
    assert!(!page.contains("<b>Shop"));
    assert!(!page.contains("<img"));
    assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.contains("INN ••••••••93"));
    assert!(!page.contains("7707083893"));
    // Only the page's own script and style elements.
    assert_eq!(page.matches("<script").count(), 1);
    assert_eq!(page.matches("<style").count(), 1);
}

#[test]
fn csp_hashes_match_the_inline_style_and_script() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let page = index(Language::En, &sample(), &PageQuery::default());
    let inner = |open: &str, close: &str| {
        let a = page.find(open).unwrap() + open.len();
        let b = page[a..].find(close).unwrap();
        page[a..a + b].to_string()
    };
    let csp = content_security_policy();
    for body in [inner("<style>", "</style>"), inner("<script>", "</script>")] {
        let h = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&body));
        assert!(csp.contains(&format!("'sha256-{h}'")), "{csp}");
    }
    assert!(csp.starts_with("default-src 'none';"));
    assert!(!csp.contains("unsafe"));
}

#[test]
fn filters_pick_stores_and_survive_in_links() {
    let tags = vec!["eu".to_string(), "ru".to_string()];
    let q = PageQuery::parse(
        Some("marketplace=ozon&tag=eu&status=critical&q=SHOP&lang=zh-CN&evil=%3Cx%3E"),
        &tags,
    );
    assert_eq!(
        q,
        PageQuery {
            lang: Some(Language::ZhCn),
            marketplace: Some(Marketplace::Ozon),
            tag: Some("eu".into()),
            status: Some(Shown::Critical),
            q: "SHOP".into(),
        }
    );
    let stores = sample();
    let page = index(Language::ZhCn, &stores, &q);
    assert!(page.contains("store-ozon-broken"));
    assert!(!page.contains("store-ozon-exp"));
    assert!(!page.contains("store-ozon-ok"));
    assert!(page.contains("显示 1 / 6 家店铺"));
    assert!(page.contains("<option value=\"ozon\" selected>Ozon</option>"));
    assert!(page.contains("<option value=\"eu\" selected>eu</option>"));
    assert!(page.contains("<input type=\"hidden\" name=\"lang\" value=\"zh-CN\">"));
    assert!(page.contains("name=\"q\" value=\"SHOP\""));
    // Links keep the filters and the language.
    assert!(page.contains(
        "href=\"/?marketplace=ozon&amp;tag=eu&amp;status=CRITICAL&amp;q=SHOP&amp;lang=en\""
    ));
    assert!(page.contains("href=\"/stores/ozon-broken?lang=zh-CN\""));

    // Unknown values are dropped, never reflected.
    let q = PageQuery::parse(
        Some("lang=fr&marketplace=ebay&tag=%3Cscript%3E&status=BAD&q=%3Cscript%3Ealert(1)"),
        &tags,
    );
    assert_eq!(q.lang, None);
    assert_eq!(q.marketplace, None);
    assert_eq!(q.tag, None);
    assert_eq!(q.status, None);
    let page = index(Language::En, &stores, &q);
    assert!(page.contains("value=\"&lt;script&gt;alert(1)\""));
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("No store matches these filters."));
    // Search matches names in any script, case-insensitively.
    let q = PageQuery::parse(Some("q=%E5%9C%A3%E5%BD%BC%E5%BE%97%E5%A0%A1"), &tags);
    assert!(q.matches(&stores[2]) && !q.matches(&stores[1]));
    let long = format!("q={}", "a".repeat(500));
    assert_eq!(PageQuery::parse(Some(&long), &tags).q.len(), MAX_SEARCH);
    let huge = format!("lang=zh-CN&q={}", "a".repeat(5000));
    assert_eq!(PageQuery::parse(Some(&huge), &tags), PageQuery::default());
}

#[test]
fn expiry_reads_as_days_with_the_date() {
    let c = ctx(Language::En);
    let w = |d: chrono::Duration| expiry_words(&c, now() + d).0.into_string();
    assert_eq!(w(chrono::Duration::days(12)), "in 12 days");
    assert_eq!(
        w(chrono::Duration::days(2) - chrono::Duration::seconds(5)),
        "in 2 days"
    );
    assert_eq!(w(chrono::Duration::days(1)), "tomorrow");
    assert_eq!(w(chrono::Duration::hours(2)), "expires today");
    assert_eq!(w(-chrono::Duration::hours(2)), "expired today");
    assert_eq!(w(-chrono::Duration::days(1)), "expired yesterday");
    assert_eq!(w(-chrono::Duration::days(3)), "expired 3 days ago");
    let z = ctx(Language::ZhCn);
    assert_eq!(
        expiry_words(&z, now() + chrono::Duration::days(12))
            .0
            .as_str(),
        "12 天后到期"
    );
    assert_eq!(
        expiry_words(&z, now() - chrono::Duration::days(3))
            .0
            .as_str(),
        "已过期 3 天"
    );
}

fn detail(lang: Language, with_accounts: bool) -> String {
    let stores = sample();
    let s = &stores[1];
    let facts = Facts {
        account: with_accounts.then(|| "1000001".to_string()),
        roles: vec!["Admin".into(), "company ИНН: 7707083893".into()],
        premium: Some("PREMIUM_PLUS".into()),
        latency_ms: 120,
        egress: Some("direct".into()),
        ..Facts::default()
    };
    let mut s = s.clone();
    if !with_accounts {
        s.account = None;
    }
    let incidents = vec![
        IncidentRow {
            incident_id: "i1".into(),
            store_id: s.id.clone(),
            finding: "auth_rejected".into(),
            severity: "critical".into(),
            opened_at: now() - chrono::Duration::hours(3),
            resolved_at: None,
            detail: "Api-key is deactivated <i>".into(),
        },
        IncidentRow {
            incident_id: "i0".into(),
            store_id: s.id.clone(),
            finding: "unreachable".into(),
            severity: "unknown".into(),
            opened_at: now() - chrono::Duration::days(2),
            resolved_at: Some(now() - chrono::Duration::days(2) + chrono::Duration::minutes(20)),
            detail: "connect timed out".into(),
        },
    ];
    let mut history = s.recent.clone();
    if !with_accounts {
        for r in &mut history {
            r.account = None;
        }
    }
    let mail = [crate::state::MailRecord {
        mail_hash: "h".into(),
        store_id: s.id.clone(),
        at: now() - chrono::Duration::hours(3),
        event: "phishing_suspected".into(),
        finding: Some("phishing_suspected".into()),
        verdict: "look-alike".into(),
        domain: "amaz0n-verify.com<b>".into(),
        facts: vec![("Near".into(), "Shenzhen <i>".into())],
        mailbox: "us-mail".into(),
        alerted: true,
    }];
    render_store(&Detail {
        ctx: ctx(lang),
        store: &s,
        facts: Some(&facts),
        incidents: &incidents,
        history: &history,
        mail: &mail,
        lang_param: None,
        history_ok: true,
    })
}

#[test]
fn store_page_shows_incidents_history_and_facts() {
    let page = detail(Language::En, true);
    assert!(page.contains("<h2>Security mail</h2>"), "{page}");
    assert!(page.contains("phishing mail suspected"), "{page}");
    assert!(
        page.contains("amaz0n-verify.com&lt;b&gt; (look-alike)"),
        "{page}"
    );
    assert!(page.contains("Near: Shenzhen &lt;i&gt;"), "{page}");
    assert!(page.contains(
        "<h1 id=\"store-ozon-broken\" data-status=\"CRITICAL\">&lt;b&gt;Shop &amp; Co&lt;/b&gt;"
    ));
    assert!(page.contains("What to do: API key deactivated or deleted: create a new key in Seller Center → Settings → API keys, then run <code>storeguard vault edit store/ozon-broken</code>."));
    assert!(page.contains("Admin, company ИНН: ••••••••93"));
    assert!(page.contains("<dt>Account</dt><dd>1000001</dd>"));
    assert!(page.contains("<b>still open</b>"));
    assert!(page.contains("after 20m"));
    assert!(page.contains("Api-key is deactivated &lt;i&gt;"));
    assert_eq!(
        page.matches("<td>120 ms</td>").count(),
        HISTORY_ROWS.min(60)
    );
    assert!(page.contains("<th>Account</th>"));
    assert_eq!(page.matches("<span class=\"c").count(), STRIP_LEN);
    let zh = detail(Language::ZhCn, true);
    assert!(zh.contains("处理方法："));
    assert!(zh.contains("仍未解决"));
    assert!(zh.contains("最近一次看到的账户信息"));
}

#[test]
fn a_view_without_account_numbers_shows_none() {
    let page = detail(Language::En, false);
    assert!(page.contains("<dt>Account</dt><dd>—</dd>"));
    assert!(!page.contains("1000001"));
    let mut stores = sample();
    for s in &mut stores {
        s.account = None;
        for r in &mut s.recent {
            r.account = None;
        }
    }
    assert!(!index(Language::En, &stores, &PageQuery::default()).contains("1000001"));
}

#[test]
fn message_pages_reflect_nothing() {
    let page = render_message(
        &ctx(Language::En),
        "page.not_found.title",
        "page.not_found.body",
        Some(Language::ZhCn),
    );
    assert!(page.contains("<h1>No such store</h1>"));
    assert!(page.contains("href=\"/?lang=zh-CN\""));
    assert!(!page.contains("<script"));
    let page = render_message(
        &ctx(Language::ZhCn),
        "page.denied.title",
        "page.denied.body",
        None,
    );
    assert!(page.contains("<code>ssh -L 9464:127.0.0.1:9464 server</code>"));
}

#[test]
fn tax_ids_are_masked() {
    assert_eq!(mask_tax_ids("INN 7707083893"), "INN ••••••••93");
    assert_eq!(
        mask_tax_ids("inn:7707083893, kpp 770701001"),
        "inn:••••••••93, kpp •••••••01"
    );
    assert_eq!(mask_tax_ids("Tax ID: 123456789012"), "Tax ID: ••••••••••12");
    assert_eq!(
        mask_tax_ids("税号：91330100MA2B3C4D5E"),
        "税号：••••••••••••••••5E"
    );
    assert_eq!(
        mask_tax_ids("统一社会信用代码 91330100MA2B3C4D5E"),
        "统一社会信用代码 ••••••••••••••••5E"
    );
    // Not after a label, too short, or inside another word: left alone.
    assert_eq!(mask_tax_ids("seller 1000001"), "seller 1000001");
    assert_eq!(mask_tax_ids("INN 1234"), "INN 1234");
    assert_eq!(mask_tax_ids("listing 12345678"), "listing 12345678");
    assert_eq!(mask_tax_ids(""), "");
}

#[test]
fn a_thousand_stores_render_quickly() {
    let stores: Vec<StoreView> = (0..1000)
        .map(|i| {
            let mut v = view(
                &format!("s{i}"),
                &format!("Store {i}"),
                Marketplace::ALL[i % 4],
                if i % 7 == 0 {
                    vec![Finding::new(FindingKind::AuthRejected, "refused")]
                } else {
                    vec![]
                },
            );
            v.recent.truncate(STRIP_LEN);
            v
        })
        .collect();
    let started = std::time::Instant::now();
    let page = index(Language::En, &stores, &PageQuery::default());
    let took = started.elapsed();
    assert_eq!(page.matches("<tr id=\"store-").count(), 1000);
    assert!(page.len() < 6 * 1024 * 1024, "{} bytes", page.len());
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

#[test]
fn an_amazon_store_shows_when_to_re_authorise_and_whether_that_is_inferred() {
    let store = view("amazon-us", "Amazon US", Marketplace::Amazon, vec![]);
    let render = |inferred: bool| {
        let facts = Facts {
            authorized_at: Some(now() - chrono::Duration::days(355)),
            authorized_inferred: inferred,
            ..Facts::default()
        };
        render_store(&Detail {
            ctx: ctx(Language::En),
            store: &store,
            facts: Some(&facts),
            incidents: &[],
            history: &[],
            mail: &[],
            lang_param: None,
            history_ok: true,
        })
    };
    let page = render(true);
    assert!(page.contains("<dt>Re-authorise the app by</dt>"), "{page}");
    assert!(page.contains("in 10 days"), "{page}");
    assert!(page.contains("at the latest"), "{page}");
    assert!(!render(false).contains("at the latest"));
    // Marketplaces without a yearly re-authorisation show no such row.
    let ozon = view("ozon-a", "Ozon", Marketplace::Ozon, vec![]);
    let facts = Facts {
        authorized_at: Some(now()),
        ..Facts::default()
    };
    let page = render_store(&Detail {
        ctx: ctx(Language::En),
        store: &ozon,
        facts: Some(&facts),
        incidents: &[],
        history: &[],
        mail: &[],
        lang_param: None,
        history_ok: true,
    });
    assert!(!page.contains("Re-authorise"));
}

#[test]
fn one_store_is_counted_in_the_singular() {
    let one: Vec<StoreView> = sample().into_iter().filter(|s| s.enabled).take(1).collect();
    let page = index(Language::En, &one, &PageQuery::default());
    assert!(page.contains("<b>1</b> store:"), "{page}");
    assert!(!page.contains("<b>1</b> stores:"));
    let page = index(Language::ZhCn, &one, &PageQuery::default());
    assert!(page.contains("共 <b>1</b> 家店铺："));
}
