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

/// `storeguard channel add`, answered line by line from a pipe as a person would at the
/// terminal, in a fresh sandbox whose config has one store and no channel yet.
async fn channel_add(sb: &Sandbox, flags: &[&str], answers: &str) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_storeguard"))
        .arg("--config")
        .arg(sb.config_path())
        .args(["channel", "add"])
        .args(flags)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(answers.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains("CANARY") && !stderr.contains("CANARY"),
        "a secret in the output:\n{stdout}{stderr}"
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_add_takes_the_robot_url_as_copied_and_sends_a_test() {
    let f = FakeService::start(FakeKind::DingTalk {
        access_token: TOKEN.into(),
        sign_secret: Some(SECRET.into()),
    })
    .await
    .unwrap();
    let sb = Sandbox::new().unwrap();
    sb.config(
        "language = \"en\"",
        "[[store]]\nid = \"ozon-main\"\nmarketplace = \"ozon\"\naccount = \"1\"\n",
    )
    .unwrap();
    let before = std::fs::read_to_string(sb.config_path()).unwrap();

    // A URL of another host is refused before anything is written, without repeating it.
    let (code, _, err) = channel_add(
        &sb,
        &[],
        "dingtalk\nops-ding\nhttps://oapi.dingtalk.com.evil.example/robot/send?access_token=CANARY-x\n",
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not this service's robot URL"), "{err}");
    assert!(!err.contains("evil"), "{err}");
    assert_eq!(std::fs::read_to_string(sb.config_path()).unwrap(), before);

    // The URL as the robot page shows it, the sign secret, and a test through the fake.
    let answers = format!(
        "dingtalk\nops-ding\nhttps://oapi.dingtalk.com/robot/send?access_token={TOKEN}\n{SECRET}\n"
    );
    let (code, out, err) = channel_add(&sb, &["--endpoint", f.url().as_str()], &answers).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ops-ding: delivered"), "{out}{err}");
    assert!(f.violations().is_empty(), "{:?}", f.violations());
    let after = std::fs::read_to_string(sb.config_path()).unwrap();
    assert!(after.starts_with(&before), "the file's bytes are kept");
    assert!(
        after.contains("[[channel]]\nname = \"ops-ding\"\nkind = \"dingtalk\""),
        "{after}"
    );
    assert!(!after.contains("CANARY"), "no secret in the config");
    // The same name again is refused.
    let (code, _, err) = channel_add(&sb, &["--kind", "webhook", "--name", "ops-ding"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("already in"), "{err}");

    // Settings a kind needs are asked too (e-mail: from, to, SMTP host), secrets optional.
    let (code, out, err) = channel_add(
        &sb,
        &["--no-test"],
        "email\nops-mail\nstoreguard@example.com\nops@example.com, boss@example.com\nsmtp.example.com\n\n\n",
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let after = std::fs::read_to_string(sb.config_path()).unwrap();
    assert!(
        after.contains("to = [\"ops@example.com\", \"boss@example.com\"]"),
        "{after}"
    );
    // The config loads, with the new channels in it.
    let c = storeguard::config::Config::load(&sb.config_path()).unwrap();
    assert!(c.channel("ops-mail").is_some() && c.channel("ops-ding").is_some());
}

/// `config check` wants every mailbox's vault entry, and reads it with the mailbox's schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_covers_mailbox_entries() {
    let sb = Sandbox::new().unwrap();
    sb.config(
        "language = \"en\"",
        "[[store]]\nid = \"ozon-main\"\nmarketplace = \"ozon\"\naccount = \"1\"\n\n\
         [[mailbox]]\nname = \"us-mail\"\nhost = \"imap.qq.com\"\nusername = \"seller@qq.com\"\nstores = [\"ozon-main\"]\n",
    )
    .unwrap();
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_storeguard"))
            .arg("--config")
            .arg(sb.config_path())
            .args(["config", "check"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let out = check();
    assert!(
        out.contains("mailbox/us-mail: no such vault entry"),
        "{out}"
    );
    // An entry of the wrong shape for the mailbox's auth is named.
    let mut doc = storeguard::vault::Document::parse(
        "password = \"CANARY-mail-app-password\"\n",
        storeguard::vault::Schema::Mailbox { xoauth2: false },
    )
    .unwrap();
    sb.vault
        .write(
            &storeguard::vault::EntryId::mailbox("us-mail"),
            &mut doc,
            None,
            Some(&sb.identity),
        )
        .unwrap();
    let out = check();
    assert!(!out.contains("mailbox/us-mail"), "{out}");
    assert!(!out.contains("CANARY"), "{out}");
}
