//! The e-mail channel against a real SMTP server: Python's `aiosmtpd`, started by the test as a
//! child process on 127.0.0.1 with a port it picks itself (it prints the port once bound, so
//! nothing waits or sleeps), requiring AUTH, and writing each received message as JSON.
//!
//! Needs `python3` with `aiosmtpd` (`pip install aiosmtpd`); without it the tests fail and say
//! so, they do not pass silently.

use chrono::{DateTime, TimeZone, Utc};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use storeguard::alert::fake::Sandbox;
use storeguard::alert::{AlertEvent, ChannelSet, Delivery, EventKind, render};
use storeguard::model::{ChannelKind, Language, Marketplace, Severity};
use storeguard::outcome::FindingKind;

const USER: &str = "alerts";
const PASSWORD: &str = "CANARY-smtp-pass-4471";

/// The server: AUTH required (PLAIN/LOGIN, allowed without TLS on loopback), a recipient
/// `busy@…` answered 451 and `nobody@…` 550, every message appended to OUT as one JSON line.
const SERVER_PY: &str = r#"
import asyncio, json, os, sys, threading
import email, email.utils
from email import policy
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

out_path, user, password = sys.argv[1], sys.argv[2], sys.argv[3]

def watch_stdin():
    # Exit when the test goes away (its end of our stdin closes).
    sys.stdin.read()
    os._exit(0)

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("busy@"):
            return "451 4.3.0 mailbox busy, try again later"
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content
        msg = email.message_from_bytes(raw, policy=policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            parts.append({"content_type": part.get_content_type(),
                          "charset": part.get_content_charset(),
                          "content": part.get_content()})
        date = msg["Date"]
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth_login": getattr(session, "sg_login", None),
            "headers": {k: str(v) for k, v in msg.items()},
            "content_type": msg.get_content_type(),
            "date_iso": email.utils.parsedate_to_datetime(str(date)).isoformat() if date else None,
            "parts": parts,
            "raw": raw.decode("utf-8", "replace"),
        }
        with open(out_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return "250 2.0.0 Message accepted"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == user
          and auth_data.password.decode() == password)
    if ok:
        session.sg_login = auth_data.login.decode()
    return AuthResult(success=ok, handled=False)

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), hostname="smtp.test", authenticator=authenticator,
                     auth_required=True, auth_require_tls=False),
        "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

threading.Thread(target=watch_stdin, daemon=True).start()
asyncio.run(main())
"#;

struct SmtpServer {
    child: Child,
    port: u16,
    out: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const INSTALL_HINT: &str = "the e-mail tests need Python 3 with aiosmtpd: install it with \
     `python3 -m pip install aiosmtpd` (or on Debian `apt-get install -y python3-aiosmtpd`); \
     set STOREGUARD_PYTHON to pick the interpreter";

/// The first interpreter that has aiosmtpd: $STOREGUARD_PYTHON, `python3` on PATH, Debian's.
fn python() -> String {
    let mut tried = Vec::new();
    let candidates = std::env::var("STOREGUARD_PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()]);
    for py in candidates {
        match Command::new(&py).args(["-c", "import aiosmtpd"]).output() {
            Ok(o) if o.status.success() => return py,
            Ok(o) => tried.push(format!(
                "{py}: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => tried.push(format!("{py}: {e}")),
        }
    }
    panic!("{INSTALL_HINT}\n(tried {})", tried.join("; "));
}

fn start_smtp() -> SmtpServer {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("smtp_server.py");
    std::fs::write(&script, SERVER_PY).unwrap();
    let out = dir.path().join("received.jsonl");
    let log = dir.path().join("server.log");
    let mut child = Command::new(&py)
        .arg(&script)
        .arg(&out)
        .arg(USER)
        .arg(PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{INSTALL_HINT}\n(cannot start python3: {e})"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| {
        let _ = child.kill();
        panic!(
            "the SMTP server did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    SmtpServer {
        child,
        port,
        out,
        log,
        _dir: dir,
    }
}

impl SmtpServer {
    fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 4, 50, 0).unwrap()
}

fn event() -> AlertEvent {
    AlertEvent {
        event_id: "01JDXK6V8Q-ozon-main-auth".into(),
        event: EventKind::Opened,
        incident_id: "inc-42".into(),
        subject: storeguard::event::Subject::store(
            "ozon-main",
            "Ozon 主店 (Moscow)",
            Marketplace::Ozon,
        ),
        severity: Severity::Critical,
        finding: FindingKind::AuthRejected,
        detail: "Api-key is deactivated <b>&</b>".into(),
        opened_at: Utc.with_ymd_and_hms(2026, 11, 26, 1, 30, 0).unwrap(),
        created_at: now(),
        affected: vec![],
        test: false,
    }
}

fn mail_set(sb: &Sandbox, port: u16, password: &str, to: &str) -> ChannelSet {
    sb.put_channel(
        "mail",
        ChannelKind::Email,
        &format!("smtp_username = \"{USER}\"\nsmtp_password = \"{password}\"\n"),
    )
    .unwrap();
    let config = sb
        .config(
            "timezone = \"Asia/Shanghai\"",
            &format!(
                "[[channel]]\nname = \"mail\"\nkind = \"email\"\nlanguage = \"zh-CN\"\n\
                 from = \"storeguard <alerts@example.com>\"\nto = [{to}]\n\
                 smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_tls = \"none\"\n"
            ),
        )
        .unwrap();
    ChannelSet::new(&config, &sb.vault, &sb.identity).unwrap()
}

#[tokio::test]
async fn email_is_delivered_with_headers_and_both_parts() {
    let smtp = start_smtp();
    let sb = Sandbox::new().unwrap();
    let set = mail_set(
        &sb,
        smtp.port,
        PASSWORD,
        "\"值班 <ops@example.com>\", \"boss@example.com\"",
    );
    let ev = event();
    let got = set.send("mail", &ev, now()).await;
    assert_eq!(got, Delivery::Delivered, "server log:\n{}", smtp.log());

    let rec = smtp.received();
    assert_eq!(rec.len(), 1);
    let m = &rec[0];
    println!(
        "{}\n---- decoded parts:\n{}",
        m["raw"].as_str().unwrap(),
        serde_json::to_string_pretty(&m["parts"]).unwrap()
    );
    assert_eq!(m["auth_login"], USER);
    assert_eq!(m["mail_from"], "alerts@example.com");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ops@example.com", "boss@example.com"])
    );
    let h = &m["headers"];
    let want = render(
        &ev,
        Language::ZhCn,
        storeguard::zone::Zone::named("Asia/Shanghai").unwrap(),
    );
    assert_eq!(h["From"], "storeguard <alerts@example.com>");
    assert_eq!(h["To"], "值班 <ops@example.com>, boss@example.com");
    assert_eq!(h["Subject"], want.title.as_str());
    assert_eq!(m["date_iso"], "2026-11-26T04:50:00+00:00");
    assert_eq!(
        h["Message-ID"],
        "<storeguard.01JDXK6V8Q-ozon-main-auth@example.com>"
    );
    assert_eq!(m["content_type"], "multipart/alternative");

    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(parts[0]["charset"], "utf-8");
    let plain = parts[0]["content"].as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(plain.trim_end(), want.text);
    assert!(
        plain.contains("处理方法：API 密钥已被停用或删除"),
        "{plain}"
    );
    assert_eq!(parts[1]["content_type"], "text/html");
    let html = parts[1]["content"].as_str().unwrap();
    assert!(
        html.contains("<h2 style=\"color: #c62828\">【严重】Ozon 主店 (Moscow)"),
        "{html}"
    );
    assert!(
        html.contains("<b>处理方法：</b> API 密钥已被停用或删除"),
        "{html}"
    );
    assert!(
        html.contains("<code>storeguard vault edit store/ozon-main</code>"),
        "{html}"
    );
    // The marketplace's text is escaped, not markup.
    assert!(
        html.contains("Api-key is deactivated &lt;b&gt;&amp;&lt;/b&gt;"),
        "{html}"
    );

    let raw = m["raw"].as_str().unwrap();
    assert!(!raw.contains(PASSWORD) && !raw.contains("CANARY"));
}

#[tokio::test]
async fn smtp_replies_map_to_verdicts() {
    let smtp = start_smtp();

    // 535 authentication failed: permanent, and the password is nowhere in the reason.
    let sb = Sandbox::new().unwrap();
    let set = mail_set(&sb, smtp.port, "CANARY-wrong-pass-9", "\"ops@example.com\"");
    match set.attempt("mail", &event(), now()).await.delivery {
        Delivery::Permanent(r) => {
            assert!(r.contains("535"), "{r}");
            assert!(!r.contains("CANARY"), "{r}");
        }
        other => panic!("{other:?}\n{}", smtp.log()),
    }

    // 451 for a recipient: retry.
    let sb = Sandbox::new().unwrap();
    let set = mail_set(&sb, smtp.port, PASSWORD, "\"busy@example.com\"");
    let a = set.attempt("mail", &event(), now()).await;
    assert_eq!(a.delivery, Delivery::Retry(None), "{a:?}");
    assert!(a.reason.unwrap().contains("451"));

    // 550 for a recipient: permanent.
    let sb = Sandbox::new().unwrap();
    let set = mail_set(&sb, smtp.port, PASSWORD, "\"nobody@example.com\"");
    match set.send("mail", &event(), now()).await {
        Delivery::Permanent(r) => assert!(r.contains("550"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(smtp.received().is_empty());

    // No server at all: retry.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sb = Sandbox::new().unwrap();
    let set = mail_set(&sb, dead, PASSWORD, "\"ops@example.com\"");
    assert_eq!(
        set.send("mail", &event(), now()).await,
        Delivery::Retry(None)
    );
}
