//! The mailbox watcher against a real Dovecot, with DKIM keys served by a loopback DNS server:
//! security mail becomes one alert per mail (never repeated across restarts), forgeries become
//! `phishing_suspected`, sign-ins outside login hours `suspicious_login`, history is recorded
//! without alerting, nothing in the mailbox is changed, and no code, link or password leaks.

use crate::util::mailsrv::{DkimKey, Dns, Dovecot, USER, mail};
use crate::util::proc::{Daemon, eventually, world};
use crate::util::receiver::Receiver;
use std::time::Duration;
use storeguard::demo::{StoreSpec, World, canary};
use storeguard::model::Marketplace;
use storeguard::vault::{Document, EntryId, Schema, Vault};

const CODE: &str = "482913";
const LINK_TOKEN: &str = "ZkLinkTokenQ7";

/// Adds the mailbox (and the store's login hours) to a world's config and vault.
fn add_mailbox(w: &World, dovecot: &Dovecot, dns: &Dns, password: &str) {
    add_mailbox_at(w, dovecot.port, dns, password)
}

fn add_mailbox_at(w: &World, port: u16, dns: &Dns, password: &str) {
    let cfg = std::fs::read_to_string(&w.config_path).unwrap();
    let cfg = cfg.replacen(
        "id = \"amazon-us\"\n",
        "id = \"amazon-us\"\nlogin_hours = \"08:00-22:00 Asia/Shanghai\"\n",
        1,
    );
    let cfg = format!(
        "{cfg}\n[mail]\nresolver = \"{}\"\nbackfill = \"7d\"\npoll = \"1s\"\n\n\
         [[mailbox]]\nname = \"us-mail\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         username = \"{USER}\"\nstores = [\"amazon-us\"]\n",
        dns.addr, port
    );
    std::fs::write(&w.config_path, cfg).unwrap();
    let identity = w.identity().unwrap();
    let vault = Vault::open(&w.path().join("vault")).unwrap();
    let mut doc = Document::parse(
        &format!("password = \"{password}\"\n"),
        Schema::Mailbox { xoauth2: false },
    )
    .unwrap();
    vault
        .write(
            &EntryId::mailbox("us-mail"),
            &mut doc,
            None,
            Some(&identity),
        )
        .unwrap();
}

/// A scripted IMAP server with the test account, DNS with amazon.com's DKIM key, a webhook
/// receiver and a world with one Amazon store whose mailbox is that server.
struct Scripted {
    server: storeguard::fake::imap::ImapFake,
    amazon: DkimKey,
    receiver: Receiver,
    w: World,
    _dns: Dns,
}

async fn scripted(password: &str, idle: bool, require_id: bool) -> Scripted {
    use storeguard::fake::imap::{ImapFake, ImapOptions};
    let server = ImapFake::start(ImapOptions {
        user: USER.into(),
        password: password.into(),
        idle,
        require_id,
    })
    .await
    .unwrap();
    let dns = Dns::start().await.unwrap();
    let amazon = DkimKey::new("amazon.com", "sg1", Some(&dns));
    let receiver = Receiver::start().await;
    let w = world(
        vec![StoreSpec::new("amazon-us", "US store", Marketplace::Amazon)],
        &receiver,
        "1h",
    )
    .await;
    add_mailbox_at(&w, server.addr.port(), &dns, password);
    Scripted {
        server,
        amazon,
        receiver,
        w,
        _dns: dns,
    }
}

fn findings(r: &Receiver) -> Vec<(String, String)> {
    r.all()
        .iter()
        .filter(|m| m.field("store_id") == "amazon-us")
        .map(|m| (m.field("finding"), m.idempotency_key.clone()))
        .collect()
}

fn count(r: &Receiver, finding: &str) -> usize {
    let mut keys: Vec<String> = findings(r)
        .into_iter()
        .filter(|(f, _)| f == finding)
        .map(|(_, k)| k)
        .collect();
    keys.sort();
    keys.dedup();
    keys.len()
}

fn sign_in(id: &str) -> String {
    mail(
        "Amazon <account-update@amazon.com>",
        "Amazon Sign-in attempt",
        id,
        &format!(
            "Someone who knows your password is attempting to sign-in to your account.\n\
             When: December 2, 2026 03:12 CST\nDevice: Chrome on Windows\nNear: Shenzhen, China\n\n\
             Your code is {CODE}. If this was not you, visit https://www.amazon.com/a/c/r?k={LINK_TOKEN}\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_mail_alerts_once_per_mail_through_a_real_dovecot() {
    let password = canary("us-mail", "password");
    let dovecot = Dovecot::start(&password);
    let dns = Dns::start().await.unwrap();
    let amazon = DkimKey::new("amazon.com", "sg1", Some(&dns));
    // A key nobody published: its signatures cannot verify.
    let forger = DkimKey::new("amazon.com", "forged", None);
    let receiver = Receiver::start().await;
    let w = world(
        vec![StoreSpec::new("amazon-us", "US store", Marketplace::Amazon)],
        &receiver,
        "1h",
    )
    .await;
    add_mailbox(&w, &dovecot, &dns, &password);

    // Yesterday's mail is history: recorded on the first read, never alerted.
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%d-%b-%Y %H:%M:%S +0000")
        .to_string();
    let old = mail(
        "Amazon <account-update@amazon.com>",
        "Revision to Your Amazon.com Account",
        "old-1@amazon.com",
        "You successfully changed your password.",
    );
    dovecot
        .append(&password, "INBOX", Some(&yesterday), &amazon.sign(&old))
        .await;

    let d = Daemon::start(&w);
    d.wait_log("mailbox watcher caught up").await;

    // 03:12 in Shanghai, outside 08:00-22:00: someone else signing in.
    let night = "01-Dec-2026 19:12:00 +0000";
    dovecot
        .append(
            &password,
            "INBOX",
            Some(night),
            &amazon.sign(&sign_in("a1@amazon.com")),
        )
        .await;
    let lookalike = mail(
        "Amazon Security <security@amaz0n-verify.com>",
        "Your Amazon account is locked",
        "p1@amaz0n-verify.com",
        &format!("Unlock it now: https://amaz0n-verify.com/u?t={LINK_TOKEN}"),
    );
    dovecot
        .append(&password, "Junk", None, lookalike.as_bytes())
        .await;
    let spoofed = mail(
        "Amazon <account-update@amazon.com>",
        "Revision to Your Amazon.com Account",
        "s1@amazon.com",
        "You successfully changed your password.",
    );
    dovecot
        .append(&password, "INBOX", None, &forger.sign(&spoofed))
        .await;
    let two_sv_off = mail(
        "Amazon <account-update@amazon.com>",
        "Revision to Your Amazon.com Account",
        "t1@amazon.com",
        "You disabled Two-Step Verification on your account.",
    );
    dovecot
        .append(&password, "INBOX", None, &amazon.sign(&two_sv_off))
        .await;
    // The same mail again (a copy): still one alert.
    dovecot
        .append(
            &password,
            "Junk",
            Some(night),
            &amazon.sign(&sign_in("a1@amazon.com")),
        )
        .await;

    eventually(Duration::from_secs(30), "four mail alerts", || async {
        count(&receiver, "suspicious_login") == 1
            && count(&receiver, "phishing_suspected") == 2
            && count(&receiver, "two_factor_changed") == 1
    })
    .await;
    let by_finding = |f: &str| {
        receiver
            .all()
            .into_iter()
            .find(|m| m.field("finding") == f)
            .unwrap()
    };
    assert_eq!(by_finding("suspicious_login").field("severity"), "critical");
    assert_eq!(
        by_finding("two_factor_changed").field("severity"),
        "critical"
    );
    assert_eq!(
        count(&receiver, "password_changed"),
        0,
        "{:?}",
        findings(&receiver)
    );

    // Read-only: not one flag set on anything. `\Recent` is still there: only a SELECT
    // would have taken it, and the watcher only EXAMINEs.
    for folder in ["INBOX", "Junk"] {
        let flags = dovecot.flags(&password, folder).await;
        assert!(!flags.is_empty());
        assert!(flags.iter().all(|f| f == "Recent"), "{folder}: {flags:?}");
    }

    // The status page shows the login records from mail.
    let (code, page) = d.get("/stores/amazon-us").await.unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<h2>Security mail</h2>"), "{page}");
    assert!(page.contains("amaz0n-verify.com (look-alike)"), "{page}");
    assert!(page.contains("amazon.com (spoofed)"), "{page}");

    // A restart reads on from where it was: nothing is alerted twice, new mail still is.
    assert!(d.stop().success());
    let before = receiver.all().len();
    let d = Daemon::start(&w);
    d.wait_log("mailbox watcher caught up").await;
    let day = "02-Dec-2026 02:00:00 +0000"; // 10:00 in Shanghai
    dovecot
        .append(
            &password,
            "INBOX",
            Some(day),
            &amazon.sign(&sign_in("a2@amazon.com")),
        )
        .await;
    eventually(Duration::from_secs(30), "the daytime sign-in", || async {
        count(&receiver, "otp_requested") == 1
    })
    .await;
    let added: Vec<String> = receiver.all()[before..]
        .iter()
        .map(|m| m.field("finding"))
        .collect();
    assert_eq!(added, ["otp_requested"], "only the new mail alerts");
    assert_eq!(by_finding("otp_requested").field("severity"), "warning");

    // The login records: the history mail is recorded and was not alerted.
    let log = d.log();
    assert!(d.stop().success());
    let state = storeguard::state::State::open_read_only(&w.path().join("state")).unwrap();
    let records = state.mail_records(Some("amazon-us"), 50).unwrap();
    let old = records
        .iter()
        .find(|r| r.event == "password_changed" && r.verdict == "authenticated")
        .expect("the history mail is a login record");
    assert!(!old.alerted);
    assert!(records.iter().any(|r| r.verdict == "spoofed"));
    let incidents = state.incidents("amazon-us", 50).unwrap();
    let night_sign_in = incidents
        .iter()
        .find(|i| i.finding == "suspicious_login")
        .unwrap();
    let detail = &night_sign_in.detail;
    assert!(detail.contains("amazon.com (authenticated)"), "{detail}");
    assert!(detail.contains("Near: Shenzhen, China"), "{detail}");
    assert!(
        incidents.iter().all(|i| i.resolved_at.is_some()),
        "a mail is a notice: no incident stays open"
    );
    assert!(records.iter().any(|r| r.verdict == "look-alike"));

    // `storeguard history` lists them after the checks.
    let history = std::process::Command::new(crate::util::BIN)
        .arg("--config")
        .arg(&w.config_path)
        .args(["history", "amazon-us", "--since", "7d"])
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout).to_string();
    assert!(history.contains("SECURITY MAIL"), "{history}");
    assert!(
        history.contains("sign-in code requested → sign-in outside login hours"),
        "{history}"
    );
    assert!(history.contains("amazon.com (authenticated)"), "{history}");
    assert!(
        history.contains("recorded"),
        "the back-filled mail: {history}"
    );

    // Nothing secret anywhere: not the code, not the link, not the mailbox password.
    let everything = format!(
        "{log}\n{page}\n{history}\n{}\n{:?}",
        receiver
            .all()
            .iter()
            .map(|m| m.body.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        records
    );
    for secret in [CODE, LINK_TOKEN, password.as_str()] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }

    // The provider resets the app password: the store is told its mail is no longer read.
    dovecot
        .reset_password(&password, "a-new-password-set-elsewhere")
        .await;
    let d = Daemon::start(&w);
    eventually(Duration::from_secs(30), "mailbox_rejected", || async {
        count(&receiver, "mailbox_rejected") == 1
    })
    .await;
    assert!(!d.log().contains(&password));
    assert!(d.stop().success());
    drop(dovecot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_test_lists_folders_and_verdicts_and_changes_nothing() {
    let password = canary("us-mail", "password");
    let dovecot = Dovecot::start(&password);
    let dns = Dns::start().await.unwrap();
    let amazon = DkimKey::new("amazon.com", "sg1", Some(&dns));
    let receiver = Receiver::start().await;
    let w = world(
        vec![StoreSpec::new("amazon-us", "US store", Marketplace::Amazon)],
        &receiver,
        "1h",
    )
    .await;
    add_mailbox(&w, &dovecot, &dns, &password);
    dovecot
        .append(
            &password,
            "INBOX",
            None,
            &amazon.sign(&sign_in("m1@amazon.com")),
        )
        .await;
    let lookalike = mail(
        "Amazon Security <security@amaz0n-verify.com>",
        "Your Amazon account is locked",
        "p2@amaz0n-verify.com",
        &format!("Unlock it now: https://amaz0n-verify.com/u?t={LINK_TOKEN}"),
    );
    dovecot
        .append(&password, "Junk", None, lookalike.as_bytes())
        .await;
    let run = |args: &'static [&'static str]| {
        let config = w.config_path.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(crate::util::BIN)
                .arg("--config")
                .arg(config)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(&["mailbox", "test", "us-mail"]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("INBOX (inbox)"), "{text}");
    assert!(text.contains("Junk (spam)"), "{text}");
    assert!(text.contains("authenticated  otp_requested"), "{text}");
    assert!(text.contains("look-alike     phishing_suspected"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    for secret in [CODE, LINK_TOKEN, password.as_str()] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    for folder in ["INBOX", "Junk"] {
        let flags = dovecot.flags(&password, folder).await;
        assert!(flags.iter().all(|f| f == "Recent"), "{folder}: {flags:?}");
    }
    assert!(
        !w.path().join("state").exists(),
        "mailbox test writes no state"
    );
    // A refused login says what to check, and exits 1.
    dovecot.reset_password(&password, "changed-elsewhere").await;
    let out = run(&["mailbox", "test", "us-mail"]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("refused the login"), "{text}");
    assert!(text.contains("授权码"), "{text}");
    assert!(!text.contains(&password));
    let out = run(&["mailbox", "test", "nope"]).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("mailbox `nope` is not in"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_163_like_server_gets_id_first_is_polled_on_one_connection_and_never_written() {
    use storeguard::fake::imap::ImapFake;
    let password = canary("cn-mail", "password");
    let Scripted {
        server,
        amazon,
        receiver,
        w,
        ..
    } = scripted(&password, false, true).await;
    let d = Daemon::start(&w);
    d.wait_log("mailbox watcher caught up").await;
    // Into the spam folder, known only by its name (垃圾邮件, no \Junk attribute).
    server.deliver(
        "spam",
        &amazon.sign(&sign_in("cn1@amazon.com")),
        chrono::Utc::now(),
    );
    eventually(
        Duration::from_secs(20),
        "the alert from the spam folder",
        || async { count(&receiver, "suspicious_login") + count(&receiver, "otp_requested") == 1 },
    )
    .await;
    // A few more polls on the same connection.
    let polls = |s: &ImapFake| s.commands().iter().filter(|c| *c == "EXAMINE").count();
    let before = polls(&server);
    eventually(Duration::from_secs(20), "more polls", || async {
        polls(&server) >= before + 4
    })
    .await;
    assert!(d.stop().success());
    let commands = server.commands();
    assert_eq!(server.refused_without_id(), 0, "{commands:?}");
    let id = commands.iter().position(|c| c == "ID").expect("ID sent");
    let examine = commands.iter().position(|c| c == "EXAMINE").unwrap();
    assert!(id < examine, "{commands:?}");
    assert_eq!(
        server.logins(),
        1,
        "one persistent connection: {commands:?}"
    );
    assert_eq!(server.writes(), 0, "{commands:?}");
    assert!(
        !commands.iter().any(|c| c == "SELECT" || c == "IDLE"),
        "{commands:?}"
    );
}

/// SIGKILLs the daemon at seeded random points while it reads, judges, records and delivers
/// 120 security mails: every mail is alerted, and alerted once (a redelivery carries the same
/// event id). Kills that fell between a fetch and its commit are counted (4 of 110 on a quiet
/// machine, 1 on a busy one): the storm must hit that window at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_fetch_and_commit_every_mail_is_alerted_exactly_once() {
    use storeguard::fake::imap::ImapFake;
    const MAILS: usize = 120;
    const KILLS: usize = 110;
    let password = canary("kill-mail", "password");
    let Scripted {
        server,
        amazon,
        receiver,
        w,
        ..
    } = scripted(&password, true, false).await;
    // The first run only sets the cursors (an empty mailbox has no history to back-fill).
    let d = Daemon::start(&w);
    d.wait_log("mailbox watcher caught up").await;
    assert!(d.stop().success());
    let subjects = [
        "Amazon Sign-in attempt",
        "Revision to Your Amazon.com Account",
    ];
    for i in 0..MAILS {
        let body = if i % 2 == 0 {
            "Someone who knows your password is attempting to sign-in.".to_string()
        } else {
            "You successfully changed your password.".to_string()
        };
        let m = mail(
            "Amazon <account-update@amazon.com>",
            subjects[i % 2],
            &format!("storm-{i}@amazon.com"),
            &body,
        );
        server.deliver(
            if i % 3 == 0 { "spam" } else { "INBOX" },
            &amazon.sign(&m),
            chrono::Utc::now(),
        );
    }
    let state_dir = w.path().join("state");
    let cursor = || {
        let s = storeguard::state::State::open_read_only(&state_dir).unwrap();
        let a = s
            .mail_cursor("us-mail", "INBOX")
            .unwrap()
            .map_or(0, |c| c.last_uid);
        let b = s
            .mail_cursor("us-mail", "&V4NXPpCuTvY-")
            .unwrap()
            .map_or(0, |c| c.last_uid);
        a + b
    };
    let fetches = |s: &ImapFake| s.commands().iter().filter(|c| *c == "UID FETCH").count();
    let mut rng = crate::util::Rng::new(0x6d61_696c_0001);
    let mut mid_batch = 0;
    for _ in 0..KILLS {
        let (read_before, fetched_before) = (cursor(), fetches(&server));
        let logins = server.logins();
        let d = Daemon::start(&w);
        // Aim at the read, however long the start took: from the watcher's login on.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while server.logins() == logins {
            assert!(
                std::time::Instant::now() < deadline,
                "the watcher never logged in"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        d.kill9();
        if fetches(&server) > fetched_before && cursor() == read_before {
            mid_batch += 1;
        }
    }
    let d = Daemon::start(&w);
    // A sign-in outside the store's login hours (by the wall clock) is `suspicious_login`.
    eventually(Duration::from_secs(60), "every mail alerted", || async {
        count(&receiver, "password_changed")
            + count(&receiver, "otp_requested")
            + count(&receiver, "suspicious_login")
            == MAILS
    })
    .await;
    assert!(d.stop().success());
    let all = findings(&receiver);
    let mut keys: Vec<&String> = all.iter().map(|(_, k)| k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), MAILS, "one event id per mail");
    let records = storeguard::state::State::open_read_only(&state_dir)
        .unwrap()
        .mail_records(Some("amazon-us"), 1000)
        .unwrap();
    assert_eq!(records.len(), MAILS);
    assert!(records.iter().all(|r| r.alerted));
    eprintln!(
        "mail kill storm: {KILLS} SIGKILLs, {mid_batch} between a fetch and its commit; \
         {} deliveries for {MAILS} mails",
        all.len()
    );
    assert!(
        mid_batch >= 1,
        "the storm must hit the fetch-to-commit window: {mid_batch}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_added_by_a_reload_is_watched() {
    use storeguard::fake::imap::{ImapFake, ImapOptions};
    let password = canary("reload-mail", "password");
    let server = ImapFake::start(ImapOptions {
        user: USER.into(),
        password: password.clone(),
        idle: true,
        require_id: false,
    })
    .await
    .unwrap();
    let dns = Dns::start().await.unwrap();
    let amazon = DkimKey::new("amazon.com", "sg1", Some(&dns));
    let receiver = Receiver::start().await;
    let w = world(
        vec![StoreSpec::new("amazon-us", "US store", Marketplace::Amazon)],
        &receiver,
        "1h",
    )
    .await;
    let d = Daemon::start(&w);
    add_mailbox_at(&w, server.addr.port(), &dns, &password);
    d.reload();
    d.wait_log("mailbox watcher caught up").await;
    assert_eq!(server.logins(), 1);
    server.deliver(
        "INBOX",
        &amazon.sign(&sign_in("r1@amazon.com")),
        chrono::Utc::now(),
    );
    eventually(Duration::from_secs(20), "the alert", || async {
        count(&receiver, "suspicious_login") + count(&receiver, "otp_requested") == 1
    })
    .await;
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xoauth2_mailbox_writes_the_rotated_refresh_token_back_before_using_it() {
    use secrecy::ExposeSecret;
    use storeguard::fake::imap::{ImapFake, ImapOptions};
    let server = ImapFake::start(ImapOptions {
        user: USER.into(),
        password: "no-password-login-here".into(),
        idle: true,
        require_id: false,
    })
    .await
    .unwrap();
    let first_refresh = canary("gmail", "refresh-token");
    let client_secret = canary("gmail", "client-secret");
    let endpoint = server
        .start_token_endpoint("client-1", &client_secret, &first_refresh, true)
        .await
        .unwrap();
    let dns = Dns::start().await.unwrap();
    let amazon = DkimKey::new("amazon.com", "sg1", Some(&dns));
    let receiver = Receiver::start().await;
    let w = world(
        vec![StoreSpec::new("amazon-us", "US store", Marketplace::Amazon)],
        &receiver,
        "1h",
    )
    .await;
    add_mailbox_at(&w, server.addr.port(), &dns, "unused");
    let cfg = std::fs::read_to_string(&w.config_path).unwrap();
    std::fs::write(
        &w.config_path,
        cfg.replace(
            "username = \"seller@example.test\"\n",
            "username = \"seller@example.test\"\nauth = \"xoauth2\"\n",
        ),
    )
    .unwrap();
    let identity = w.identity().unwrap();
    let vault = Vault::open(&w.path().join("vault")).unwrap();
    let schema = Schema::Mailbox { xoauth2: true };
    let mut doc = Document::parse(
        &format!(
            "client_id = \"client-1\"\nclient_secret = \"{client_secret}\"\nrefresh_token = \"{first_refresh}\"\ntoken_endpoint = \"{endpoint}\"\n"
        ),
        schema,
    )
    .unwrap();
    let id = EntryId::mailbox("us-mail");
    vault.write(&id, &mut doc, None, Some(&identity)).unwrap();

    let d = Daemon::start(&w);
    d.wait_log("mailbox watcher caught up").await;
    let stored = || {
        vault
            .load(&id, schema, &identity)
            .unwrap()
            .get("refresh_token")
            .unwrap()
            .expose_secret()
            .to_string()
    };
    assert_ne!(
        server.refresh_token(),
        first_refresh,
        "the provider rotated it"
    );
    assert_eq!(
        stored(),
        server.refresh_token(),
        "and the vault has the new one"
    );
    server.deliver(
        "INBOX",
        &amazon.sign(&sign_in("x1@amazon.com")),
        chrono::Utc::now(),
    );
    eventually(Duration::from_secs(20), "the alert", || async {
        count(&receiver, "suspicious_login") + count(&receiver, "otp_requested") == 1
    })
    .await;
    let log = d.log();
    assert!(d.stop().success());
    // A restart logs in with the rotated token (the first one is dead by now).
    let d = Daemon::start(&w);
    d.wait_log("mailbox watcher caught up").await;
    assert_eq!(server.logins(), 2);
    assert_eq!(stored(), server.refresh_token());
    assert_eq!(count(&receiver, "mailbox_rejected"), 0);
    let log = format!("{log}{}", d.log());
    assert!(d.stop().success());
    assert!(!log.contains("CANARY") && !log.contains("ya29."), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_folder_is_read_again_without_repeating_and_unknown_mail_is_only_recorded() {
    let password = canary("rebuilt-mail", "password");
    let Scripted {
        server,
        amazon,
        receiver,
        w,
        ..
    } = scripted(&password, true, false).await;
    let d = Daemon::start(&w);
    d.wait_log("mailbox watcher caught up").await;
    server.deliver(
        "INBOX",
        &amazon.sign(&sign_in("u1@amazon.com")),
        chrono::Utc::now(),
    );
    let shipped = mail(
        "Amazon <shipment-tracking@amazon.com>",
        "Your Amazon.com order has shipped",
        "ship-1@amazon.com",
        "Your package is on its way.",
    );
    server.deliver("INBOX", &amazon.sign(&shipped), chrono::Utc::now());
    eventually(Duration::from_secs(20), "the first alert", || async {
        findings(&receiver).len() == 1
    })
    .await;
    assert!(d.stop().success());
    // Restored from a backup while storeguard was down: new UIDVALIDITY, one new mail.
    server.rebuild();
    let changed = mail(
        "Amazon <account-update@amazon.com>",
        "Revision to Your Amazon.com Account",
        "u2@amazon.com",
        "You successfully changed your password.",
    );
    server.deliver("INBOX", &amazon.sign(&changed), chrono::Utc::now());
    let d = Daemon::start(&w);
    eventually(Duration::from_secs(20), "the new mail's alert", || async {
        count(&receiver, "password_changed") == 1
    })
    .await;
    d.wait_log("mailbox watcher caught up").await;
    assert!(d.log().contains("new UIDVALIDITY"));
    assert!(d.stop().success());
    let all = findings(&receiver);
    assert_eq!(all.len(), 2, "the first mail is not alerted again: {all:?}");
    let records = storeguard::state::State::open_read_only(&w.path().join("state"))
        .unwrap()
        .mail_records(Some("amazon-us"), 10)
        .unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    let unknown = records.iter().find(|r| r.event == "unclassified").unwrap();
    assert!(!unknown.alerted && unknown.finding.is_none());
    assert_eq!(unknown.verdict, "authenticated");
}
