//! Loopback fakes of every alert service, for tests (feature `testkit`: not in the shipped
//! binary, whose demo needs only the marketplace fakes).
//!
//! Each fake binds `127.0.0.1:0` before it is used (no sleeps, no port races), records every
//! request, and checks it the way the real service does — path, query, JSON shape, DingTalk
//! and Feishu signatures and their one-hour timestamp window, the Telegram bot path and HTML
//! markup, the webhook's `Idempotency-Key` and signature, the Alertmanager bearer token. A
//! request the real service would refuse gets that service's own refusal and is noted in
//! [`FakeService::violations`]. Tests can queue canned replies ([`Canned`]) to play rate
//! limits and refusals, including the "HTTP 200 with an error body" ones.

use super::{dingtalk, feishu, webhook};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use url::Url;

/// Which service a fake plays, with the credentials it accepts.
#[derive(Clone)]
pub enum FakeKind {
    DingTalk {
        access_token: String,
        sign_secret: Option<String>,
    },
    WeCom {
        key: String,
    },
    Feishu {
        hook_token: String,
        sign_secret: Option<String>,
    },
    Telegram {
        bot_token: String,
    },
    /// An incoming webhook at `path` (e.g. `/services/T000/B000/XXXX`).
    Slack {
        path: String,
    },
    /// storeguard's own webhook receiver at `path`.
    Webhook {
        path: String,
        signing_secret: Option<String>,
    },
    Alertmanager {
        bearer_token: Option<String>,
    },
}

/// One request as received (holds the credentials it carried: no `Debug`).
#[derive(Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A reply to play instead of the fake's own.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    pub fn json(status: u16, body: Value) -> Self {
        Canned {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Canned {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    // The services' own rate-limit and refusal replies (CHANNELS.md).

    pub fn dingtalk_rate_limited() -> Self {
        Self::json(
            200,
            json!({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
        )
    }
    pub fn dingtalk_refused() -> Self {
        Self::json(
            200,
            json!({"errcode": 310000, "errmsg": "keywords not in content"}),
        )
    }
    pub fn wecom_rate_limited() -> Self {
        Self::json(
            200,
            json!({"errcode": 45009, "errmsg": "api freq out of limit"}),
        )
    }
    pub fn wecom_bad_key() -> Self {
        Self::json(
            200,
            json!({"errcode": 93000, "errmsg": "invalid webhook url"}),
        )
    }
    pub fn feishu(code: i64, msg: &str) -> Self {
        Self::json(200, json!({"code": code, "msg": msg, "data": {}}))
    }
    pub fn telegram_rate_limited(retry_after: u64) -> Self {
        Self::json(
            429,
            json!({"ok": false, "error_code": 429,
                   "description": format!("Too Many Requests: retry after {retry_after}"),
                   "parameters": {"retry_after": retry_after}}),
        )
    }
}

struct State {
    kind: FakeKind,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    script: VecDeque<Canned>,
    now: Option<DateTime<Utc>>,
}

/// A running fake; stops when dropped.
pub struct FakeService {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeService {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(kind: FakeKind) -> std::io::Result<FakeService> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            kind,
            requests: Vec::new(),
            violations: Vec::new(),
            script: VecDeque::new(),
            now: None,
        }));
        let st = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                async move { handle(&st, method, uri, headers, body) }
            },
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(FakeService {
            addr,
            state,
            _stop: tx,
        })
    }

    /// `http://127.0.0.1:PORT` — the `endpoint` to configure (or the base of a vault URL).
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("loopback URL")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The last request received.
    pub fn last(&self) -> Option<Recorded> {
        self.lock().requests.last().cloned()
    }

    /// What the real service would have refused, one line each.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Plays `replies` in order for the next valid requests, then answers normally again.
    pub fn script(&self, replies: impl IntoIterator<Item = Canned>) {
        self.lock().script.extend(replies);
    }

    /// The service's clock for signature timestamp windows (default: the real clock).
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.lock().now = Some(now);
    }
}

fn handle(
    st: &Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let mut st = st.lock().unwrap_or_else(|p| p.into_inner());
    st.requests.push(rec.clone());
    let now = st.now.unwrap_or_else(Utc::now);
    let refusal = check(&st.kind, &rec, now);
    if let Some((violation, reply)) = refusal {
        st.violations.push(violation);
        return respond(reply);
    }
    let reply = st.script.pop_front().unwrap_or_else(|| success(&st.kind));
    respond(reply)
}

fn respond(c: Canned) -> Response {
    let mut resp = (
        StatusCode::from_u16(c.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        c.body,
    )
        .into_response();
    for (k, v) in c.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

fn success(kind: &FakeKind) -> Canned {
    match kind {
        FakeKind::DingTalk { .. } | FakeKind::WeCom { .. } => {
            Canned::json(200, json!({"errcode": 0, "errmsg": "ok"}))
        }
        FakeKind::Feishu { .. } => Canned::feishu(0, "success"),
        FakeKind::Telegram { .. } => Canned::json(
            200,
            json!({"ok": true, "result": {"message_id": 1, "date": 0, "chat": {"id": 1}}}),
        ),
        FakeKind::Slack { .. } => Canned::text(200, "ok"),
        FakeKind::Webhook { .. } => Canned::text(202, ""),
        FakeKind::Alertmanager { .. } => Canned::text(200, ""),
    }
}

type Refusal = Option<(String, Canned)>;

/// Checks a request as the real service would; `Some` is the violation and the refusal.
fn check(kind: &FakeKind, r: &Recorded, now: DateTime<Utc>) -> Refusal {
    if r.method != "POST" {
        return Some((
            format!("method {} instead of POST", r.method),
            Canned::text(405, "method not allowed"),
        ));
    }
    let json_ct = r
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"));
    match kind {
        FakeKind::DingTalk {
            access_token,
            sign_secret,
        } => check_dingtalk(r, access_token, sign_secret.as_deref(), now, json_ct),
        FakeKind::WeCom { key } => check_wecom(r, key, json_ct),
        FakeKind::Feishu {
            hook_token,
            sign_secret,
        } => check_feishu(r, hook_token, sign_secret.as_deref(), now),
        FakeKind::Telegram { bot_token } => check_telegram(r, bot_token),
        FakeKind::Slack { path } => {
            if r.path != *path {
                return Some((format!("path {}", r.path), Canned::text(404, "no_service")));
            }
            let j = r.json();
            if !j.get("text").is_some_and(Value::is_string) {
                return Some(("no `text`".into(), Canned::text(400, "invalid_payload")));
            }
            if let Some(blocks) = j.get("blocks") {
                let ok = blocks.as_array().is_some_and(|b| {
                    b.iter().all(|x| {
                        x.get("type").is_some_and(Value::is_string)
                            && x.pointer("/text/text").is_some_and(Value::is_string)
                    })
                });
                if !ok {
                    return Some(("bad blocks".into(), Canned::text(400, "invalid_blocks")));
                }
                let header_len = j
                    .pointer("/blocks/0/text/text")
                    .and_then(Value::as_str)
                    .map_or(0, |s| s.chars().count());
                if header_len > 150 {
                    return Some((
                        "header over 150 chars".into(),
                        Canned::text(400, "invalid_blocks"),
                    ));
                }
            }
            None
        }
        FakeKind::Webhook {
            path,
            signing_secret,
        } => check_webhook(r, path, signing_secret.as_deref(), json_ct),
        FakeKind::Alertmanager { bearer_token } => check_alertmanager(r, bearer_token.as_deref()),
    }
}

fn within_hour(ts_ms: i64, now: DateTime<Utc>) -> bool {
    (now.timestamp_millis() - ts_ms).abs() <= 3_600_000
}

fn check_dingtalk(
    r: &Recorded,
    token: &str,
    secret: Option<&str>,
    now: DateTime<Utc>,
    json_ct: bool,
) -> Refusal {
    let err = |code: i64, msg: &str| Canned::json(200, json!({"errcode": code, "errmsg": msg}));
    if r.path != "/robot/send" {
        return Some((format!("path {}", r.path), Canned::text(404, "not found")));
    }
    if r.query_param("access_token").as_deref() != Some(token) {
        return Some((
            "wrong or missing access_token".into(),
            err(300001, "token is not exist"),
        ));
    }
    if let Some(secret) = secret {
        let ts = r
            .query_param("timestamp")
            .and_then(|t| t.parse::<i64>().ok());
        let Some(ts) = ts else {
            return Some((
                "signing on but no timestamp".into(),
                err(
                    310000,
                    "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
                ),
            ));
        };
        if !within_hour(ts, now) {
            return Some((
                "timestamp outside one hour".into(),
                err(310000, "invalid timestamp"),
            ));
        }
        if r.query_param("sign").as_deref() != Some(dingtalk::sign(secret, ts).as_str()) {
            return Some((
                "signature does not match".into(),
                err(310000, "sign not match"),
            ));
        }
    }
    if !json_ct {
        return Some((
            "content-type is not JSON".into(),
            err(43004, "无效的HTTP HEADER Content-Type"),
        ));
    }
    let j = r.json();
    let ok = match j.get("msgtype").and_then(Value::as_str) {
        Some("markdown") => non_empty(&j, "/markdown/title") && non_empty(&j, "/markdown/text"),
        Some("text") => non_empty(&j, "/text/content"),
        _ => false,
    };
    if !ok {
        return Some(("bad message body".into(), err(40035, "缺少参数 json")));
    }
    None
}

fn check_wecom(r: &Recorded, key: &str, json_ct: bool) -> Refusal {
    let err = |code: i64, msg: &str| Canned::json(200, json!({"errcode": code, "errmsg": msg}));
    if r.path != "/cgi-bin/webhook/send" {
        return Some((format!("path {}", r.path), Canned::text(404, "not found")));
    }
    if r.query_param("key").as_deref() != Some(key) {
        return Some((
            "wrong or missing key".into(),
            err(93000, "invalid webhook url"),
        ));
    }
    if !json_ct {
        return Some((
            "content-type is not JSON".into(),
            err(40008, "invalid message type"),
        ));
    }
    let j = r.json();
    let ok = match j.get("msgtype").and_then(Value::as_str) {
        Some("markdown") => j
            .pointer("/markdown/content")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty() && c.len() <= 4096),
        Some("text") => j
            .pointer("/text/content")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty() && c.len() <= 2048),
        _ => false,
    };
    if !ok {
        return Some((
            "bad message body".into(),
            err(40058, "markdown.content exceed max length 4096"),
        ));
    }
    None
}

fn check_feishu(r: &Recorded, token: &str, secret: Option<&str>, now: DateTime<Utc>) -> Refusal {
    let err =
        |code: i64, msg: &str| Canned::json(200, json!({"code": code, "msg": msg, "data": {}}));
    let expected = format!("/open-apis/bot/v2/hook/{token}");
    if r.path != expected {
        return Some((
            "wrong hook token in path".into(),
            err(
                19001,
                "param invalid: incoming webhook access token invalid",
            ),
        ));
    }
    if r.body.len() > 20 * 1024 {
        return Some((
            "body over 20 KB".into(),
            err(9499, "request body too large"),
        ));
    }
    let j = r.json();
    if let Some(secret) = secret {
        let ts = j
            .get("timestamp")
            .and_then(|t| {
                t.as_str()
                    .map(str::to_string)
                    .or_else(|| t.as_i64().map(|i| i.to_string()))
            })
            .and_then(|t| t.parse::<i64>().ok());
        let sign = j.get("sign").and_then(Value::as_str);
        let valid = match (ts, sign) {
            (Some(ts), Some(sign)) => {
                within_hour(ts * 1000, now) && sign == feishu::sign(secret, ts)
            }
            _ => false,
        };
        if !valid {
            return Some((
                "signature or timestamp refused".into(),
                err(
                    19021,
                    "sign match fail or timestamp is not within one hour from current time",
                ),
            ));
        }
    }
    let ok = match j.get("msg_type").and_then(Value::as_str) {
        Some("interactive") => {
            non_empty(&j, "/card/header/title/content")
                && j.pointer("/card/elements")
                    .and_then(Value::as_array)
                    .is_some_and(|e| !e.is_empty())
        }
        Some("text") => non_empty(&j, "/content/text"),
        _ => false,
    };
    if !ok {
        return Some(("bad message body".into(), err(9499, "Bad Request")));
    }
    None
}

fn check_telegram(r: &Recorded, token: &str) -> Refusal {
    let tg = |status: u16, desc: &str| {
        Canned::json(
            status,
            json!({"ok": false, "error_code": status, "description": desc}),
        )
    };
    let Some(rest) = r.path.strip_prefix("/bot") else {
        return Some((format!("path {}", r.path), tg(404, "Not Found")));
    };
    let Some((got, method)) = rest.split_once('/') else {
        return Some((format!("path {}", r.path), tg(404, "Not Found")));
    };
    if got != token {
        return Some(("wrong bot token".into(), tg(401, "Unauthorized")));
    }
    if method != "sendMessage" {
        return Some((format!("method {method}"), tg(404, "Not Found")));
    }
    let j = r.json();
    if j.get("chat_id").is_none() {
        return Some((
            "no chat_id".into(),
            tg(400, "Bad Request: chat_id is empty"),
        ));
    }
    let Some(text) = j
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return Some((
            "no text".into(),
            tg(400, "Bad Request: message text is empty"),
        ));
    };
    if j.get("parse_mode").and_then(Value::as_str) == Some("HTML")
        && let Err(e) = check_telegram_html(text)
    {
        return Some((
            format!("bad HTML: {e}"),
            tg(400, &format!("Bad Request: can't parse entities: {e}")),
        ));
    }
    None
}

/// Telegram's HTML subset: a few tags, properly nested; `&` only in the four named entities
/// or numeric references; `<` and `>` never bare.
pub fn check_telegram_html(text: &str) -> Result<(), String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "a",
        "blockquote",
        "tg-spoiler",
    ];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['<', '>', '&']) {
        let c = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        match c {
            b'>' => return Err(format!("unexpected '>' at byte {i}")),
            b'&' => {
                let end = after.find(';').ok_or("unterminated entity")?;
                let ent = &after[..end];
                let ok = matches!(ent, "lt" | "gt" | "amp" | "quot")
                    || ent.strip_prefix('#').is_some_and(|n| {
                        n.parse::<u32>().is_ok()
                            || n.strip_prefix('x')
                                .is_some_and(|h| u32::from_str_radix(h, 16).is_ok())
                    });
                if !ok {
                    return Err(format!("unsupported entity &{ent};"));
                }
                rest = &after[end + 1..];
            }
            _ => {
                let end = after.find('>').ok_or("unclosed tag")?;
                let tag = &after[..end];
                if let Some(name) = tag.strip_prefix('/') {
                    match stack.pop() {
                        Some(open) if open == name => {}
                        _ => return Err(format!("unexpected end tag </{name}>")),
                    }
                } else {
                    let name = tag.split_whitespace().next().unwrap_or("");
                    if !TAGS.contains(&name) {
                        return Err(format!("unsupported start tag \"{name}\""));
                    }
                    stack.push(name.to_string());
                }
                rest = &after[end + 1..];
            }
        }
    }
    match stack.pop() {
        None => Ok(()),
        Some(open) => Err(format!("unclosed <{open}>")),
    }
}

fn check_webhook(r: &Recorded, path: &str, secret: Option<&str>, json_ct: bool) -> Refusal {
    if r.path != path {
        return Some((format!("path {}", r.path), Canned::text(404, "not found")));
    }
    if !json_ct {
        return Some((
            "content-type is not JSON".into(),
            Canned::text(415, "unsupported media type"),
        ));
    }
    let j = r.json();
    let event_id = j.get("event_id").and_then(Value::as_str);
    if event_id.is_none() || r.header("idempotency-key") != event_id {
        return Some((
            "Idempotency-Key missing or not the event_id".into(),
            Canned::text(400, "idempotency key"),
        ));
    }
    if let Some(secret) = secret {
        let want = webhook::signature(secret, &r.body);
        if r.header("x-storeguard-signature") != Some(want.as_str()) {
            return Some((
                "signature does not match".into(),
                Canned::text(401, "bad signature"),
            ));
        }
    }
    let fields = [
        "event",
        "incident_id",
        "store_id",
        "store_name",
        "marketplace",
        "severity",
        "finding",
        "summary",
        "opened_at",
        "sent_at",
    ];
    if j.get("version").and_then(Value::as_i64) != Some(1)
        || fields
            .iter()
            .any(|f| !j.get(*f).is_some_and(Value::is_string))
    {
        return Some((
            "body misses fields".into(),
            Canned::text(422, "unprocessable"),
        ));
    }
    None
}

fn check_alertmanager(r: &Recorded, bearer: Option<&str>) -> Refusal {
    if r.path != "/api/v2/alerts" {
        return Some((
            format!("path {}", r.path),
            Canned::text(404, "404 page not found"),
        ));
    }
    if let Some(t) = bearer
        && r.header("authorization") != Some(format!("Bearer {t}").as_str())
    {
        return Some((
            "bearer token missing or wrong".into(),
            Canned::text(401, "Unauthorized"),
        ));
    }
    let j = r.json();
    let ok = j.as_array().is_some_and(|a| {
        !a.is_empty()
            && a.iter().all(|x| {
                [
                    "alertname",
                    "marketplace",
                    "store_id",
                    "finding",
                    "severity",
                ]
                .iter()
                .all(|l| {
                    x.pointer(&format!("/labels/{l}"))
                        .is_some_and(Value::is_string)
                }) && x.get("startsAt").is_some_and(Value::is_string)
                    && x.get("endsAt").is_some_and(Value::is_string)
            })
    });
    if !ok {
        return Some((
            "not an alert array".into(),
            Canned::json(400, json!({"code": 400, "message": "invalid alerts"})),
        ));
    }
    None
}

/// A throwaway storeguard home for tests and demos: an identity (0600), a vault, and a config
/// file that points at both. Removed when dropped.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub vault: crate::vault::Vault,
    pub identity: crate::vault::Identity,
}

impl Sandbox {
    pub fn new() -> std::io::Result<Sandbox> {
        let dir = tempfile::tempdir()?;
        let identity = crate::vault::Identity::generate();
        identity.write_new(&dir.path().join("identity.txt"))?;
        let vault = crate::vault::Vault::create(&dir.path().join("vault"), &identity.recipient())
            .map_err(std::io::Error::other)?;
        Ok(Sandbox {
            dir,
            vault,
            identity,
        })
    }

    /// Writes the vault entry `channel/NAME` from a TOML document.
    pub fn put_channel(
        &self,
        name: &str,
        kind: crate::model::ChannelKind,
        toml_text: &str,
    ) -> Result<(), String> {
        let schema = crate::vault::Schema::Channel(kind);
        let mut doc =
            crate::vault::Document::parse(toml_text, schema).map_err(|e| e.to_string())?;
        self.vault
            .write(
                &crate::vault::EntryId::channel(name),
                &mut doc,
                None,
                Some(&self.identity),
            )
            .map_err(|e| e.to_string())
    }

    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("storeguard.toml")
    }

    /// Writes `storeguard.toml`: a `[daemon]` table pointing at this sandbox plus `daemon_lines`,
    /// then `rest` (stores, channels), and loads it.
    pub fn config(&self, daemon_lines: &str, rest: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "[daemon]\nvault_dir = \"vault\"\nidentity = \"identity.txt\"\nstate_dir = \"state\"\n{daemon_lines}\n\n{rest}\n"
        );
        std::fs::write(self.config_path(), &text).map_err(|e| e.to_string())?;
        crate::config::Config::load(&self.config_path()).map_err(|e| e.to_string())
    }
}

fn non_empty(j: &Value, pointer: &str) -> bool {
    j.pointer(pointer)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_html_checker() {
        assert!(check_telegram_html("<b>a &amp; b</b> &lt;x&gt; <code>c</code>").is_ok());
        assert!(check_telegram_html("a < b").is_err());
        assert!(check_telegram_html("<b>x").is_err());
        assert!(check_telegram_html("<script>x</script>").is_err());
        assert!(check_telegram_html("AT&T").is_err());
        assert!(check_telegram_html("<b><i>x</b></i>").is_err());
    }
}
