//! Every HTTP alert channel against a loopback fake of its service (`storeguard::alert::fake`).
//!
//! The fakes check each request as the real service does (path, query, JSON, signatures,
//! Telegram markup, Idempotency-Key) and play the services' success, rate-limit and refusal
//! replies — including the "HTTP 200 with an error body" ones — so each test pins both the
//! exact request and the verdict mapping. Time is injected; nothing sleeps.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use std::time::Duration;
use storeguard::alert::fake::{Canned, FakeKind, FakeService, Recorded, Sandbox};
use storeguard::alert::{
    AlertEvent, ChannelSet, Delivery, Dialect, EventKind, dingtalk, feishu, render, webhook,
};
use storeguard::model::{ChannelKind, Language, Marketplace, Severity};
use storeguard::outcome::FindingKind;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 4, 50, 0).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    now() + chrono::TimeDelta::seconds(secs)
}

fn event(kind: EventKind) -> AlertEvent {
    AlertEvent {
        event_id: "01JDXK6V8Q-ozon-main-auth".into(),
        event: kind,
        incident_id: "inc-42".into(),
        subject: storeguard::event::Subject::store(
            "ozon-main",
            "Ozon 主店 (Moscow)",
            Marketplace::Ozon,
        ),
        severity: Severity::Critical,
        finding: FindingKind::AuthRejected,
        detail: "Api-key is deactivated (code 7)".into(),
        opened_at: Utc.with_ymd_and_hms(2026, 11, 26, 1, 30, 0).unwrap(),
        created_at: now(),
        affected: vec![],
        test: false,
    }
}

async fn fake(kind: FakeKind) -> FakeService {
    let f = FakeService::start(kind)
        .await
        .expect("bind a loopback port");
    f.set_now(now());
    f
}

fn channel_set(sb: &Sandbox, channels: &str) -> ChannelSet {
    let config = sb
        .config("timezone = \"Asia/Shanghai\"\nlanguage = \"en\"", channels)
        .expect("config");
    ChannelSet::new(&config, &sb.vault, &sb.identity).expect("channels build")
}

fn permanent(d: Delivery) -> String {
    match d {
        Delivery::Permanent(r) => r,
        other => panic!("expected a permanent refusal, got {other:?}"),
    }
}

fn no_violations(f: &FakeService) {
    assert!(f.violations().is_empty(), "{:?}", f.violations());
}

fn text_of(r: &Recorded, pointer: &str) -> String {
    r.json()
        .pointer(pointer)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no {pointer} in {}", r.json()))
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// DingTalk
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn robot_urls_pasted_whole_are_accepted_and_checked() {
    // The fakes check the token each service expects; the URL's own host is the real one,
    // and `endpoint` points the channel at the fake, as it does in every test here.
    let ding = fake(FakeKind::DingTalk {
        access_token: "dt-from-url".into(),
        sign_secret: None,
    })
    .await;
    let wecom = fake(FakeKind::WeCom {
        key: "wk-from-url".into(),
    })
    .await;
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "ding",
        ChannelKind::Dingtalk,
        "url = \"https://oapi.dingtalk.com/robot/send?access_token=dt-from-url\"\n",
    )
    .unwrap();
    sb.put_channel(
        "wecom",
        ChannelKind::Wecom,
        "url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wk-from-url\"\n",
    )
    .unwrap();
    let set = channel_set(
        &sb,
        &format!(
            "[[channel]]\nname = \"ding\"\nkind = \"dingtalk\"\nendpoint = \"{}\"\n\
             [[channel]]\nname = \"wecom\"\nkind = \"wecom\"\nendpoint = \"{}\"\n",
            ding.url(),
            wecom.url()
        ),
    );
    let ev = event(EventKind::Opened);
    assert_eq!(set.send("ding", &ev, now()).await, Delivery::Delivered);
    assert_eq!(set.send("wecom", &ev, now()).await, Delivery::Delivered);
    no_violations(&ding);
    no_violations(&wecom);
    // A URL of another host is refused when the channels are built, naming neither it nor
    // its token.
    let sb2 = Sandbox::new().unwrap();
    sb2.put_channel(
        "ding",
        ChannelKind::Dingtalk,
        "url = \"https://evil.example.com/robot/send?access_token=CANARY-pasted-1234\"\n",
    )
    .unwrap();
    let config = sb2
        .config(
            "timezone = \"Asia/Shanghai\"\nlanguage = \"en\"",
            "[[channel]]\nname = \"ding\"\nkind = \"dingtalk\"\n",
        )
        .expect("config");
    let e = ChannelSet::new(&config, &sb2.vault, &sb2.identity)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("not this service's robot URL"), "{e}");
    assert!(!e.contains("CANARY") && !e.contains("evil"), "{e}");
}

#[tokio::test]
async fn dingtalk_signed_delivered_throttled_refused() {
    let f = fake(FakeKind::DingTalk {
        access_token: "dt-token-1".into(),
        sign_secret: Some("SECtest0123456789".into()),
    })
    .await;
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "ding",
        ChannelKind::Dingtalk,
        "access_token = \"dt-token-1\"\nsign_secret = \"SECtest0123456789\"\n",
    )
    .unwrap();
    let set = channel_set(
        &sb,
        &format!(
            "[[channel]]\nname = \"ding\"\nkind = \"dingtalk\"\nlanguage = \"zh-CN\"\nendpoint = \"{}\"\n",
            f.url()
        ),
    );
    let ev = event(EventKind::Opened);
    assert_eq!(set.send("ding", &ev, now()).await, Delivery::Delivered);
    no_violations(&f);
    let r = f.last().unwrap();
    assert_eq!(r.path, "/robot/send");
    assert_eq!(r.query_param("access_token").as_deref(), Some("dt-token-1"));
    let ts = now().timestamp_millis();
    assert_eq!(r.query_param("timestamp"), Some(ts.to_string()));
    assert_eq!(
        r.query_param("sign"),
        Some(dingtalk::sign("SECtest0123456789", ts))
    );
    let j = r.json();
    assert_eq!(j["msgtype"], "markdown");
    assert_eq!(
        j["markdown"]["title"],
        "【严重】Ozon 主店 (Moscow) · Ozon：登录被拒绝（密钥、令牌或密码无效）"
    );
    let text = text_of(&r, "/markdown/text");
    assert!(text.starts_with("### 【严重】Ozon 主店 (Moscow)"), "{text}");
    assert!(
        text.contains("- **处理方法：** API 密钥已被停用或删除"),
        "{text}"
    );
    assert!(
        text.contains("`storeguard vault edit store/ozon-main`"),
        "{text}"
    );
    assert!(
        text.contains("- **开始时间：** 2026-11-26 09:30 CST"),
        "{text}"
    );
    assert_eq!(j["at"], json!({"atMobiles": [], "isAtAll": false}));

    // HTTP 200 + errcode 130101: throttled; DingTalk holds the robot for ten minutes ...
    f.script([Canned::dingtalk_rate_limited()]);
    assert_eq!(
        set.send("ding", &ev, at(1)).await,
        Delivery::Retry(Some(Duration::from_secs(600)))
    );
    // ... and so does storeguard, without sending.
    let sent = f.requests().len();
    assert_eq!(
        set.send("ding", &ev, at(61)).await,
        Delivery::Retry(Some(Duration::from_secs(540)))
    );
    assert_eq!(f.requests().len(), sent);

    // HTTP 200 + errcode 310000 (keyword / signature / IP): permanent.
    f.script([Canned::dingtalk_refused()]);
    let reason = permanent(set.send("ding", &ev, at(602)).await);
    assert!(reason.contains("310000"), "{reason}");
    assert!(reason.contains("keywords not in content"), "{reason}");
}

#[tokio::test]
async fn dingtalk_wrong_secret_and_unsigned() {
    let f = fake(FakeKind::DingTalk {
        access_token: "dt-token-2".into(),
        sign_secret: Some("SECright".into()),
    })
    .await;
    let plain = fake(FakeKind::DingTalk {
        access_token: "dt-token-3".into(),
        sign_secret: None,
    })
    .await;
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "ding-bad",
        ChannelKind::Dingtalk,
        "access_token = \"dt-token-2\"\nsign_secret = \"SECwrong\"\n",
    )
    .unwrap();
    sb.put_channel(
        "ding-plain",
        ChannelKind::Dingtalk,
        "access_token = \"dt-token-3\"\n",
    )
    .unwrap();
    let set = channel_set(
        &sb,
        &format!(
            "[[channel]]\nname = \"ding-bad\"\nkind = \"dingtalk\"\nendpoint = \"{}\"\n\n\
             [[channel]]\nname = \"ding-plain\"\nkind = \"dingtalk\"\nendpoint = \"{}\"\n",
            f.url(),
            plain.url()
        ),
    );
    let reason = permanent(set.send("ding-bad", &event(EventKind::Opened), now()).await);
    assert!(
        reason.contains("310000") && reason.contains("sign not match"),
        "{reason}"
    );
    assert_eq!(f.violations(), vec!["signature does not match".to_string()]);

    assert_eq!(
        set.send("ding-plain", &event(EventKind::Opened), now())
            .await,
        Delivery::Delivered
    );
    no_violations(&plain);
    let r = plain.last().unwrap();
    assert_eq!(r.query, Some("access_token=dt-token-3".into()));
}

#[tokio::test]
async fn dingtalk_rate_limit_holds_the_21st_message_without_sending() {
    let f = fake(FakeKind::DingTalk {
        access_token: "dt-token-4".into(),
        sign_secret: None,
    })
    .await;
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "ding",
        ChannelKind::Dingtalk,
        "access_token = \"dt-token-4\"\n",
    )
    .unwrap();
    let set = channel_set(
        &sb,
        &format!(
            "[[channel]]\nname = \"ding\"\nkind = \"dingtalk\"\nendpoint = \"{}\"\n",
            f.url()
        ),
    );
    // An outage of many stores: 25 events in the same couple of seconds.
    let mut held = Vec::new();
    for i in 0..25 {
        let mut ev = event(EventKind::Opened);
        ev.event_id = format!("ev-{i}");
        let t = now() + chrono::TimeDelta::milliseconds(i * 100);
        match set.send("ding", &ev, t).await {
            Delivery::Delivered => {}
            Delivery::Retry(Some(wait)) => held.push(wait),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(f.requests().len(), 20, "only 20 reached the robot");
    assert_eq!(held.len(), 5);
    // The first send leaves the window 62 s after it was made.
    assert_eq!(held[0], Duration::from_millis(62_000 - 2_000));
    no_violations(&f);
}

// ---------------------------------------------------------------------------------------------
// WeCom
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wecom_delivered_throttled_bad_key() {
    let f = fake(FakeKind::WeCom {
        key: "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa".into(),
    })
    .await;
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "wecom",
        ChannelKind::Wecom,
        "key = \"693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa\"\n",
    )
    .unwrap();
    sb.put_channel("wecom-bad", ChannelKind::Wecom, "key = \"not-the-key\"\n")
        .unwrap();
    let set = channel_set(
        &sb,
        &format!(
            "[[channel]]\nname = \"wecom\"\nkind = \"wecom\"\nlanguage = \"zh-CN\"\nendpoint = \"{0}\"\n\n\
             [[channel]]\nname = \"wecom-bad\"\nkind = \"wecom\"\nendpoint = \"{0}\"\n",
            f.url()
        ),
    );
    let ev = event(EventKind::Reminder);
    assert_eq!(set.send("wecom", &ev, now()).await, Delivery::Delivered);
    no_violations(&f);
    let r = f.last().unwrap();
    assert_eq!(r.path, "/cgi-bin/webhook/send");
    assert_eq!(
        r.query_param("key").as_deref(),
        Some("693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa")
    );
    assert_eq!(r.json()["msgtype"], "markdown");
    let content = text_of(&r, "/markdown/content");
    assert!(content.starts_with("### 【仍未解决 · 严重】"), "{content}");
    assert!(
        content.contains("问题仍未解决，已持续 3 小时 20 分钟。"),
        "{content}"
    );
    assert!(content.len() <= 4096);

    // HTTP 200 + errcode 45009: rate limited.
    f.script([Canned::wecom_rate_limited()]);
    assert_eq!(
        set.send("wecom", &ev, at(1)).await,
        Delivery::Retry(Some(Duration::from_secs(60)))
    );
    // HTTP 200 + errcode 93000: the fake's own answer to a wrong key; permanent.
    let reason = permanent(set.send("wecom-bad", &ev, now()).await);
    assert!(reason.contains("93000"), "{reason}");
    // ... and the canned one on the good channel.
    f.script([Canned::wecom_bad_key()]);
    let reason = permanent(set.send("wecom", &ev, at(62)).await);
    assert!(reason.contains("invalid webhook url"), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// Feishu / Lark
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn feishu_signed_card_and_every_error_code() {
    let f = fake(FakeKind::Feishu {
        hook_token: "2b1c3f4e-aaaa-bbbb-cccc-0123456789ab".into(),
        sign_secret: Some("demo-secret".into()),
    })
    .await;
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "lark",
        ChannelKind::Feishu,
        "hook_token = \"2b1c3f4e-aaaa-bbbb-cccc-0123456789ab\"\nsign_secret = \"demo-secret\"\n",
    )
    .unwrap();
    sb.put_channel(
        "lark-bad",
        ChannelKind::Feishu,
        "hook_token = \"2b1c3f4e-aaaa-bbbb-cccc-0123456789ab\"\nsign_secret = \"other-secret\"\n",
    )
    .unwrap();
    // The Lark host is just another endpoint; here both point at the fake.
    let set = channel_set(
        &sb,
        &format!(
            "[[channel]]\nname = \"lark\"\nkind = \"feishu\"\nendpoint = \"{0}\"\n\n\
             [[channel]]\nname = \"lark-bad\"\nkind = \"feishu\"\nendpoint = \"{0}\"\n",
            f.url()
        ),
    );
    let ev = event(EventKind::Opened);
    assert_eq!(set.send("lark", &ev, now()).await, Delivery::Delivered);
    no_violations(&f);
    let r = f.last().unwrap();
    assert_eq!(
        r.path,
        "/open-apis/bot/v2/hook/2b1c3f4e-aaaa-bbbb-cccc-0123456789ab"
    );
    let j = r.json();
    let ts = now().timestamp();
    assert_eq!(j["timestamp"], ts.to_string());
    assert_eq!(j["sign"], feishu::sign("demo-secret", ts));
    assert_eq!(j["msg_type"], "interactive");
    assert_eq!(j["card"]["header"]["template"], "red");
    assert_eq!(
        j["card"]["header"]["title"]["content"],
        "[CRITICAL] Ozon 主店 (Moscow) · Ozon: login refused (key, token or secret rejected)"
    );
    assert_eq!(j["card"]["elements"][0]["text"]["tag"], "lark_md");
    let md = text_of(&r, "/card/elements/0/text/content");
    assert!(md.contains("- **What to do:** API key deactivated"), "{md}");
    // lark_md escapes Markdown characters of text as character references.
    assert!(
        md.contains("- **Store:** Ozon 主店 (Moscow) (`ozon-main`)"),
        "{md}"
    );
    let mut hostile = event(EventKind::Opened);
    hostile.detail = "*not bold* [not](a-link) <at id=all></at>".into();
    assert_eq!(
        set.send("lark", &hostile, at(100)).await,
        Delivery::Delivered
    );
    let md = text_of(&f.last().unwrap(), "/card/elements/0/text/content");
    assert!(
        md.contains("&#42;not bold&#42; &#91;not&#93;(a-link) &#60;at id=all&#62;&#60;/at&#62;"),
        "{md}"
    );

    f.script([Canned::feishu(
        11232,
        "frequency limited psm[lark.oapi.app_platform_runtime]",
    )]);
    assert_eq!(
        set.send("lark", &ev, at(1)).await,
        Delivery::Retry(Some(Duration::from_secs(60)))
    );
    for (code, msg) in [
        (
            19021,
            "sign match fail or timestamp is not within one hour from current time",
        ),
        (19022, "Ip Not Allowed"),
        (19024, "Key Words Not Found"),
    ] {
        f.script([Canned::feishu(code, msg)]);
        let reason = permanent(set.send("lark", &ev, at(62 + code - 19000)).await);
        assert!(
            reason.contains(&code.to_string()) && reason.contains(msg),
            "{reason}"
        );
    }
    // A wrong secret gets the fake's own 19021.
    let reason = permanent(set.send("lark-bad", &ev, now()).await);
    assert!(reason.contains("19021"), "{reason}");
    assert_eq!(
        f.violations(),
        vec!["signature or timestamp refused".to_string()]
    );
}

// ---------------------------------------------------------------------------------------------
// Telegram
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn telegram_html_and_retry_after() {
    let token = "123456789:AAH-xyz_Telegram0token";
    let f = fake(FakeKind::Telegram {
        bot_token: token.into(),
    })
    .await;
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "tg",
        ChannelKind::Telegram,
        &format!("bot_token = \"{token}\"\n"),
    )
    .unwrap();
    sb.put_channel("tg-bad", ChannelKind::Telegram, "bot_token = \"1:wrong\"\n")
        .unwrap();
    let set = channel_set(
        &sb,
        &format!(
            "[[channel]]\nname = \"tg\"\nkind = \"telegram\"\nchat_id = \"-1001234567890\"\nendpoint = \"{0}\"\n\n\
             [[channel]]\nname = \"tg-bad\"\nkind = \"telegram\"\nchat_id = 42\nendpoint = \"{0}\"\n",
            f.url()
        ),
    );
    // Markup-looking text in the store name and the marketplace's detail must pass Telegram's
    // HTML parser (the fake runs the same checks).
    let mut ev = event(EventKind::Opened);
    ev.subject = storeguard::event::Subject::store(
        "ozon-main",
        "Shop <b>&</b> \"Best\" *1*",
        Marketplace::Ozon,
    );
    ev.detail = "key <script>alert(1)</script> & co".into();
    assert_eq!(set.send("tg", &ev, now()).await, Delivery::Delivered);
    no_violations(&f);
    let r = f.last().unwrap();
    assert_eq!(r.path, format!("/bot{token}/sendMessage"));
    let j = r.json();
    assert_eq!(j["chat_id"], "-1001234567890");
    assert_eq!(j["parse_mode"], "HTML");
    let text = text_of(&r, "/text");
    assert!(
        text.starts_with("<b>[CRITICAL] Shop &lt;b&gt;&amp;&lt;/b&gt;"),
        "{text}"
    );
    assert!(
        text.contains("<b>What to do:</b> API key deactivated"),
        "{text}"
    );
    assert!(
        text.contains("<code>storeguard vault edit store/ozon-main</code>"),
        "{text}"
    );
    assert!(
        text.contains("key &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"),
        "{text}"
    );

    // 429 with parameters.retry_after, as HTTP 429 and as HTTP 200.
    f.script([Canned::telegram_rate_limited(7)]);
    assert_eq!(
        set.send("tg", &event(EventKind::Opened), at(2)).await,
        Delivery::Retry(Some(Duration::from_secs(7)))
    );
    f.script([Canned::json(
        200,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 3",
               "parameters": {"retry_after": 3}}),
    )]);
    assert_eq!(
        set.send("tg", &event(EventKind::Opened), at(10)).await,
        Delivery::Retry(Some(Duration::from_secs(3)))
    );
    // A wrong token: 401 Unauthorized, permanent.
    let reason = permanent(set.send("tg-bad", &event(EventKind::Opened), now()).await);
    assert!(
        reason.contains("401") && reason.contains("Unauthorized"),
        "{reason}"
    );
    // Chat not found: 400, permanent.
    f.script([Canned::json(
        400,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}),
    )]);
    let reason = permanent(set.send("tg", &event(EventKind::Opened), at(20)).await);
    assert!(reason.contains("chat not found"), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// Slack
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn slack_ok_429_and_refusals() {
    let path = "/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX";
    let f = fake(FakeKind::Slack { path: path.into() }).await;
    let sb = Sandbox::new().unwrap();
    // The vault holds the real-looking URL; `endpoint` swaps its origin for the fake's.
    sb.put_channel(
        "slack",
        ChannelKind::Slack,
        &format!("url = \"https://hooks.slack.com{path}\"\n"),
    )
    .unwrap();
    let set = channel_set(
        &sb,
        &format!(
            "[[channel]]\nname = \"slack\"\nkind = \"slack\"\nendpoint = \"{}\"\n",
            f.url()
        ),
    );
    let ev = event(EventKind::Resolved);
    assert_eq!(set.send("slack", &ev, now()).await, Delivery::Delivered);
    no_violations(&f);
    let r = f.last().unwrap();
    assert_eq!(r.path, path);
    let j = r.json();
    assert_eq!(j["blocks"][0]["type"], "header");
    assert_eq!(j["blocks"][1]["text"]["type"], "mrkdwn");
    let title = text_of(&r, "/blocks/0/text/text");
    assert!(title.starts_with("[RESOLVED] Ozon 主店"), "{title}");
    let body = text_of(&r, "/blocks/1/text/text");
    assert!(body.starts_with("Fixed: login refused"), "{body}");
    assert!(
        body.contains("*Resolved at:* 2026-11-26 12:50 CST"),
        "{body}"
    );

    f.script([Canned::text(429, "rate_limited").header("retry-after", "3")]);
    assert_eq!(
        set.send("slack", &ev, at(2)).await,
        Delivery::Retry(Some(Duration::from_secs(3)))
    );
    for (i, (status, body)) in [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
    ]
    .into_iter()
    .enumerate()
    {
        f.script([Canned::text(status, body)]);
        let reason = permanent(set.send("slack", &ev, at(10 + 2 * i as i64)).await);
        assert!(
            reason.contains(body) && reason.contains(&status.to_string()),
            "{reason}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// storeguard's webhook
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn webhook_format_signature_and_status_codes() {
    let f = fake(FakeKind::Webhook {
        path: "/hooks/storeguard".into(),
        signing_secret: Some("whsec-0123456789".into()),
    })
    .await;
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "hook",
        ChannelKind::Webhook,
        &format!(
            "url = \"{}hooks/storeguard\"\nsigning_secret = \"whsec-0123456789\"\n",
            f.url()
        ),
    )
    .unwrap();
    let set = channel_set(&sb, "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\n");
    let ev = event(EventKind::Opened);
    assert_eq!(set.send("hook", &ev, now()).await, Delivery::Delivered);
    no_violations(&f);
    let r = f.last().unwrap();
    assert_eq!(r.header("idempotency-key"), Some(ev.event_id.as_str()));
    assert_eq!(
        r.header("x-storeguard-signature"),
        Some(webhook::signature("whsec-0123456789", &r.body).as_str())
    );
    assert_eq!(
        r.json(),
        json!({
            "version": 1,
            "event_id": "01JDXK6V8Q-ozon-main-auth",
            "event": "opened",
            "incident_id": "inc-42",
            "store_id": "ozon-main",
            "store_name": "Ozon 主店 (Moscow)",
            "marketplace": "ozon",
            "severity": "critical",
            "finding": "auth_rejected",
            "summary": "[CRITICAL] Ozon 主店 (Moscow) · Ozon: login refused (key, token or secret rejected)",
            "opened_at": "2026-11-26T01:30:00Z",
            "sent_at": "2026-11-26T04:50:00Z",
        })
    );
    // The same event on a retry carries the same key.
    assert_eq!(set.send("hook", &ev, at(1)).await, Delivery::Delivered);
    assert_eq!(
        f.last().unwrap().header("idempotency-key"),
        Some(ev.event_id.as_str())
    );

    let cases: Vec<(Canned, Delivery)> = vec![
        (Canned::text(200, "ok"), Delivery::Delivered),
        (Canned::text(204, ""), Delivery::Delivered),
        (Canned::text(408, "timeout"), Delivery::Retry(None)),
        (
            Canned::text(429, "slow down").header("retry-after", "5"),
            Delivery::Retry(Some(Duration::from_secs(5))),
        ),
        (Canned::text(500, "boom"), Delivery::Retry(None)),
        (
            Canned::text(503, "maintenance").header("retry-after", "120"),
            Delivery::Retry(Some(Duration::from_secs(120))),
        ),
    ];
    for (i, (canned, want)) in cases.into_iter().enumerate() {
        f.script([canned]);
        // Spaced out: the 429 holds the channel for its Retry-After.
        assert_eq!(
            set.send("hook", &ev, at(100 + 10 * i as i64)).await,
            want,
            "case {i}"
        );
    }
    for (i, status) in [400u16, 401, 404, 422, 301].into_iter().enumerate() {
        f.script([Canned::text(status, "no")]);
        let reason = permanent(set.send("hook", &ev, at(200 + i as i64)).await);
        assert!(reason.contains(&status.to_string()), "{reason}");
    }
}

// ---------------------------------------------------------------------------------------------
// Alertmanager (fake; the real binary is in tests/alertmanager.rs)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn alertmanager_every_peer_labels_and_verdicts() {
    let a = fake(FakeKind::Alertmanager {
        bearer_token: Some("am-bearer-0123".into()),
    })
    .await;
    let b = fake(FakeKind::Alertmanager {
        bearer_token: Some("am-bearer-0123".into()),
    })
    .await;
    // A third peer that is down (a port nobody listens on any more).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "am",
        ChannelKind::Alertmanager,
        "bearer_token = \"am-bearer-0123\"\n",
    )
    .unwrap();
    sb.put_channel(
        "am1",
        ChannelKind::Alertmanager,
        "bearer_token = \"am-bearer-0123\"\n",
    )
    .unwrap();
    let set = channel_set(
        &sb,
        &format!(
            "[[channel]]\nname = \"am\"\nkind = \"alertmanager\"\nurls = [\"{}\", \"{}\", \"http://{dead}\"]\n\n\
             [[channel]]\nname = \"am1\"\nkind = \"alertmanager\"\nurls = [\"{}\"]\n",
            a.url(),
            b.url(),
            a.url()
        ),
    );
    let ev = event(EventKind::Opened);
    assert_eq!(set.send("am", &ev, now()).await, Delivery::Delivered);
    no_violations(&a);
    no_violations(&b);
    for f in [&a, &b] {
        let r = f.last().unwrap();
        assert_eq!(r.path, "/api/v2/alerts");
        assert_eq!(r.header("authorization"), Some("Bearer am-bearer-0123"));
        let alert = &r.json()[0];
        assert_eq!(
            alert["labels"],
            json!({"alertname": "StoreLoginAbnormal", "marketplace": "ozon",
                   "store_id": "ozon-main", "finding": "auth_rejected", "severity": "critical"})
        );
        assert_eq!(alert["startsAt"], "2026-11-26T01:30:00.000Z");
        // Firing: active past the next reminder (2 × remind_every = 12 h by default).
        assert_eq!(alert["endsAt"], "2026-11-26T16:50:00.000Z");
        assert!(
            alert["annotations"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("[CRITICAL]")
        );
    }
    // Resolved: endsAt = now.
    assert_eq!(
        set.send("am", &event(EventKind::Resolved), at(5)).await,
        Delivery::Delivered
    );
    assert_eq!(
        a.last().unwrap().json()[0]["endsAt"],
        "2026-11-26T04:50:05.000Z"
    );

    a.script([Canned::text(500, "internal error")]);
    assert_eq!(set.send("am1", &ev, at(10)).await, Delivery::Retry(None));
    a.script([Canned::text(503, "unavailable")]);
    assert_eq!(set.send("am1", &ev, at(11)).await, Delivery::Retry(None));
    a.script([Canned::json(
        400,
        json!({"code": 400, "message": "bad alert"}),
    )]);
    let reason = permanent(set.send("am1", &ev, at(12)).await);
    assert!(
        reason.contains("400") && reason.contains("bad alert"),
        "{reason}"
    );
}

#[tokio::test]
async fn log_channel_needs_no_vault_entry() {
    let sb = Sandbox::new().unwrap();
    let set = channel_set(&sb, "[[channel]]\nname = \"journal\"\nkind = \"log\"\n");
    assert_eq!(set.names().collect::<Vec<_>>(), vec!["journal"]);
    assert_eq!(
        set.send("journal", &event(EventKind::Opened), now()).await,
        Delivery::Delivered
    );
    let reason = permanent(set.send("nope", &event(EventKind::Opened), now()).await);
    assert_eq!(reason, "no channel named `nope`");
}

// ---------------------------------------------------------------------------------------------
// Every channel format in both languages
// ---------------------------------------------------------------------------------------------

struct AllFakes {
    ding: FakeService,
    wecom: FakeService,
    feishu: FakeService,
    tg: FakeService,
    slack: FakeService,
    hook: FakeService,
    am: FakeService,
}

const SLACK_PATH: &str = "/services/T0001/B0001/ZZZZ";

async fn all_fakes(secret: &dyn Fn(&str) -> String) -> AllFakes {
    AllFakes {
        ding: fake(FakeKind::DingTalk {
            access_token: secret("dingtalk"),
            sign_secret: Some(secret("dingtalk-sign")),
        })
        .await,
        wecom: fake(FakeKind::WeCom {
            key: secret("wecom"),
        })
        .await,
        feishu: fake(FakeKind::Feishu {
            hook_token: secret("feishu"),
            sign_secret: Some(secret("feishu-sign")),
        })
        .await,
        tg: fake(FakeKind::Telegram {
            bot_token: secret("telegram"),
        })
        .await,
        slack: fake(FakeKind::Slack {
            path: format!("{SLACK_PATH}{}", secret("slack")),
        })
        .await,
        hook: fake(FakeKind::Webhook {
            path: format!("/hook/{}", secret("webhook")),
            signing_secret: Some(secret("webhook-sign")),
        })
        .await,
        am: fake(FakeKind::Alertmanager {
            bearer_token: Some(secret("alertmanager")),
        })
        .await,
    }
}

/// Configures every HTTP channel kind in `lang` (suffix `-en` / `-zh`), secrets from `secret`.
fn all_channels(sb: &Sandbox, f: &AllFakes, secret: &dyn Fn(&str) -> String) -> String {
    let mut cfg = String::new();
    for (suffix, lang) in [("en", "en"), ("zh", "zh-CN")] {
        let entries: [(&str, ChannelKind, String, String); 7] = [
            (
                "ding",
                ChannelKind::Dingtalk,
                format!(
                    "access_token = \"{}\"\nsign_secret = \"{}\"\n",
                    secret("dingtalk"),
                    secret("dingtalk-sign")
                ),
                format!("endpoint = \"{}\"", f.ding.url()),
            ),
            (
                "wecom",
                ChannelKind::Wecom,
                format!("key = \"{}\"\n", secret("wecom")),
                format!("endpoint = \"{}\"", f.wecom.url()),
            ),
            (
                "feishu",
                ChannelKind::Feishu,
                format!(
                    "hook_token = \"{}\"\nsign_secret = \"{}\"\n",
                    secret("feishu"),
                    secret("feishu-sign")
                ),
                format!("endpoint = \"{}\"", f.feishu.url()),
            ),
            (
                "tg",
                ChannelKind::Telegram,
                format!("bot_token = \"{}\"\n", secret("telegram")),
                format!("endpoint = \"{}\"\nchat_id = \"-100777\"", f.tg.url()),
            ),
            (
                "slack",
                ChannelKind::Slack,
                format!(
                    "url = \"https://hooks.slack.com{SLACK_PATH}{}\"\n",
                    secret("slack")
                ),
                format!("endpoint = \"{}\"", f.slack.url()),
            ),
            (
                "hook",
                ChannelKind::Webhook,
                format!(
                    "url = \"{}hook/{}\"\nsigning_secret = \"{}\"\n",
                    f.hook.url(),
                    secret("webhook"),
                    secret("webhook-sign")
                ),
                String::new(),
            ),
            (
                "am",
                ChannelKind::Alertmanager,
                format!("bearer_token = \"{}\"\n", secret("alertmanager")),
                format!("urls = [\"{}\"]", f.am.url()),
            ),
        ];
        for (name, kind, vault, settings) in entries {
            let name = format!("{name}-{suffix}");
            sb.put_channel(&name, kind, &vault).unwrap();
            cfg.push_str(&format!(
                "[[channel]]\nname = \"{name}\"\nkind = \"{kind}\"\nlanguage = \"{lang}\"\n{settings}\n\n"
            ));
        }
    }
    cfg.push_str("[[channel]]\nname = \"journal\"\nkind = \"log\"\n");
    cfg
}

fn plain_secret(what: &str) -> String {
    format!("s3cret-{what}-0123456789")
}

/// What each fake received for one event, as (channel, the message text it carries).
fn payload_text(name: &str, r: &Recorded) -> String {
    let j = r.json();
    let p = |ptr: &str| {
        j.pointer(ptr)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    match name.split('-').next().unwrap() {
        "ding" => p("/markdown/text"),
        "wecom" => p("/markdown/content"),
        "feishu" => p("/card/elements/0/text/content"),
        "tg" => p("/text"),
        "slack" => p("/blocks/1/text/text"),
        "hook" => p("/summary"),
        "am" => p("/0/annotations/description"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn every_format_in_both_languages() {
    let f = all_fakes(&plain_secret).await;
    let sb = Sandbox::new().unwrap();
    let cfg = all_channels(&sb, &f, &plain_secret);
    let set = channel_set(&sb, &cfg);
    let ev = event(EventKind::Opened);
    let fakes = |name: &str| -> &FakeService {
        match name.split('-').next().unwrap() {
            "ding" => &f.ding,
            "wecom" => &f.wecom,
            "feishu" => &f.feishu,
            "tg" => &f.tg,
            "slack" => &f.slack,
            "hook" => &f.hook,
            _ => &f.am,
        }
    };
    let names: Vec<String> = set.names().map(str::to_string).collect();
    assert_eq!(names.len(), 15);
    for name in names.iter().filter(|n| *n != "journal") {
        assert_eq!(
            set.send(name, &ev, now()).await,
            Delivery::Delivered,
            "{name}"
        );
        let fk = fakes(name);
        no_violations(fk);
        let r = fk.last().unwrap();
        let text = payload_text(name, &r);
        println!(
            "==== {name}\n{}\n",
            serde_json::to_string_pretty(&r.json()).unwrap()
        );
        let zh = name.ends_with("-zh");
        let (todo, title) = if zh {
            ("处理方法", "【严重】Ozon 主店 (Moscow) · Ozon：登录被拒绝")
        } else {
            (
                "What to do",
                "[CRITICAL] Ozon 主店 (Moscow) · Ozon: login refused",
            )
        };
        if name.starts_with("hook") {
            assert!(text.starts_with(title), "{name}: {text}");
        } else {
            assert!(text.contains(todo), "{name}: {text}");
            assert!(
                text.contains("storeguard vault edit store/ozon-main"),
                "{name}: {text}"
            );
        }
    }
    // The rendering each format got is the one `render` gives on its own.
    let m = render(
        &ev,
        Language::ZhCn,
        storeguard::zone::Zone::named("Asia/Shanghai").unwrap(),
    );
    let r = f.feishu.last().unwrap();
    assert_eq!(payload_text("feishu-zh", &r), m.body(Dialect::LarkMd));
}

// ---------------------------------------------------------------------------------------------
// Canary: no secret in any message, reason, or Debug output
// ---------------------------------------------------------------------------------------------

fn canary(what: &str) -> String {
    format!("CANARY-{what}-7Qx9Zk2")
}

#[tokio::test]
async fn canary_secrets_never_leak() {
    let f = all_fakes(&canary).await;
    let sb = Sandbox::new().unwrap();
    let cfg = all_channels(&sb, &f, &canary);
    let set = channel_set(&sb, &cfg);
    let dbg = format!("{set:?} {set:#?}");
    assert!(!dbg.contains("CANARY"), "{dbg}");

    // Hostile services echo the credentials (and URLs holding them) in their refusals.
    // Some quote only the start of one: the first 14 characters give nothing away either.
    let echo = |s: &str| {
        format!(
            "bad credential {s} (see https://example.invalid/x?access_token={s}&key={s}) {}…",
            &s[s.find("CANARY").unwrap()..][..14]
        )
    };
    f.ding.script((0..2).map(|_| {
        Canned::json(
            200,
            json!({"errcode": 300001, "errmsg": echo(&canary("dingtalk"))}),
        )
    }));
    f.wecom.script((0..2).map(|_| {
        Canned::json(
            200,
            json!({"errcode": 93000, "errmsg": echo(&canary("wecom"))}),
        )
    }));
    f.feishu
        .script((0..2).map(|_| Canned::feishu(19021, &echo(&canary("feishu-sign")))));
    f.tg.script((0..2).map(|_| {
        Canned::json(
            401,
            json!({"ok": false, "error_code": 401, "description": echo(&canary("telegram"))}),
        )
    }));
    f.slack.script((0..2).map(|_| {
        Canned::text(
            404,
            &echo(&format!(
                "https://hooks.slack.com{SLACK_PATH}{}",
                canary("slack")
            )),
        )
    }));
    f.hook.script((0..2).map(|_| {
        Canned::text(
            400,
            &format!("{} {}", echo(&canary("webhook")), canary("webhook-sign")),
        )
    }));
    f.am.script(
        (0..2).map(|_| Canned::text(400, &echo(&format!("Bearer {}", canary("alertmanager"))))),
    );
    let names: Vec<String> = set.names().map(str::to_string).collect();
    let mut reasons = Vec::new();
    for name in names.iter().filter(|n| *n != "journal") {
        let ev = event(EventKind::Opened);
        let attempt = set.attempt(name, &ev, now()).await;
        let shown = format!("{attempt:?} {}", attempt.delivery);
        assert!(!shown.contains("CANARY"), "{name}: {shown}");
        assert!(!shown.contains("://"), "{name}: {shown}");
        assert!(!shown.contains("NARY-"), "{name}: {shown}");
        match &attempt.delivery {
            Delivery::Permanent(r) => reasons.push(r.clone()),
            other => panic!("{name}: {other:?}"),
        }
        let msg = set.render_for(name, &ev).unwrap();
        let all = format!("{msg:?} {}", msg.html_document());
        assert!(!all.contains("CANARY"), "{name}");
    }
    assert_eq!(reasons.len(), 14);
    // Transport failures name no URL either (the dead peer / closed port case).
    let sb2 = Sandbox::new().unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    sb2.put_channel(
        "ding",
        ChannelKind::Dingtalk,
        &format!("access_token = \"{}\"\n", canary("dead")),
    )
    .unwrap();
    let set2 = channel_set(
        &sb2,
        &format!(
            "[[channel]]\nname = \"ding\"\nkind = \"dingtalk\"\nendpoint = \"http://{dead}\"\n"
        ),
    );
    let attempt = set2.attempt("ding", &event(EventKind::Opened), now()).await;
    assert_eq!(attempt.delivery, Delivery::Retry(None));
    let reason = attempt.reason.unwrap();
    assert!(
        !reason.contains("CANARY") && !reason.contains("://"),
        "{reason}"
    );
}

#[test]
fn vault_errors_about_channels_quote_no_secret() {
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "hook",
        ChannelKind::Webhook,
        &format!("url = \"not a url {}\"\n", canary("u")),
    )
    .unwrap();
    sb.put_channel(
        "tg",
        ChannelKind::Telegram,
        &format!(
            "bot_token = \"https://api.telegram.org/bot{}\"\n",
            canary("t")
        ),
    )
    .unwrap();
    let config = sb
        .config(
            "",
            "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\n\n\
             [[channel]]\nname = \"tg\"\nkind = \"telegram\"\nchat_id = 1\n\n\
             [[channel]]\nname = \"mail\"\nkind = \"email\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\nsmtp_host = \"127.0.0.1\"\nsmtp_tls = \"none\"\n",
        )
        .unwrap();
    let err = format!(
        "{:#}",
        ChannelSet::new(&config, &sb.vault, &sb.identity).unwrap_err()
    );
    assert!(!err.contains("CANARY"), "{err}");
    assert!(
        err.contains("channel `hook`: `url` in the vault is not a URL"),
        "{err}"
    );
    assert!(
        err.contains("channel `tg`: `bot_token` holds characters"),
        "{err}"
    );
    assert!(err.contains("channel/mail: no such vault entry"), "{err}");
}
