//! `storeguard alert test CHANNEL`: the real binary against a loopback fake DingTalk robot.
//! Exit status 0 only when delivered; 75 when the service asked to retry; 1 when refused.

use storeguard::alert::fake::{Canned, FakeKind, FakeService, Sandbox};
use storeguard::model::ChannelKind;

const TOKEN: &str = "CANARY-cli-token-5521";
const SECRET: &str = "SECcanary-cli-sign-8812";

async fn setup(language: &str) -> (FakeService, Sandbox) {
    let f = FakeService::start(FakeKind::DingTalk {
        access_token: TOKEN.into(),
        sign_secret: Some(SECRET.into()),
    })
    .await
    .unwrap();
    let sb = Sandbox::new().unwrap();
    sb.put_channel(
        "ops-dingtalk",
        ChannelKind::Dingtalk,
        &format!("access_token = \"{TOKEN}\"\nsign_secret = \"{SECRET}\"\n"),
    )
    .unwrap();
    sb.config(
        &format!("language = \"{language}\"\ntimezone = \"Asia/Shanghai\""),
        &format!(
            "[[store]]\nid = \"ozon-main\"\nmarketplace = \"ozon\"\naccount = \"1\"\n\n\
             [[channel]]\nname = \"ops-dingtalk\"\nkind = \"dingtalk\"\nendpoint = \"{}\"\n",
            f.url()
        ),
    )
    .unwrap();
    (f, sb)
}

async fn run(sb: &Sandbox, channel: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_storeguard"))
        .arg("--config")
        .arg(sb.config_path())
        .args(["alert", "test", channel])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stdout.contains("CANARY") && !stderr.contains("CANARY"));
    println!(
        "$ storeguard alert test {channel}\n{stdout}{stderr}(exit {:?})",
        out.status.code()
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_test_delivered_refused_retry() {
    let (f, sb) = setup("en").await;

    let (code, out, err) = run(&sb, "ops-dingtalk").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ops-dingtalk: delivered"), "{out}");
    assert!(f.violations().is_empty(), "{:?}", f.violations());
    let j = f.last().unwrap().json();
    let title = j["markdown"]["title"].as_str().unwrap();
    assert!(
        title.starts_with("[TEST] [CRITICAL] Example store (test)"),
        "{title}"
    );
    let text = j["markdown"]["text"].as_str().unwrap();
    assert!(
        text.contains("This is a test message from `storeguard alert test`"),
        "{text}"
    );

    f.script([Canned::dingtalk_refused()]);
    let (code, out, _) = run(&sb, "ops-dingtalk").await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ops-dingtalk: refused: DingTalk refused the message (errcode 310000"),
        "{out}"
    );

    f.script([Canned::dingtalk_rate_limited()]);
    let (code, out, _) = run(&sb, "ops-dingtalk").await;
    assert_eq!(code, 75, "{out}");
    assert!(
        out.contains("will retry: the service asked to try again in 600 s"),
        "{out}"
    );

    let (code, _, err) = run(&sb, "nope").await;
    assert_eq!(code, 1);
    assert!(err.contains("no channel named `nope`"), "{err}");
    assert!(err.contains("configured channels: ops-dingtalk"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_test_in_chinese() {
    let (f, sb) = setup("zh-CN").await;
    let (code, out, err) = run(&sb, "ops-dingtalk").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ops-dingtalk: 已送达"), "{out}");
    let j = f.last().unwrap().json();
    let title = j["markdown"]["title"].as_str().unwrap();
    assert!(
        title.starts_with("【测试】【严重】示例店铺（测试）"),
        "{title}"
    );
}
