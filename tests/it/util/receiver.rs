//! A real HTTP receiver for webhook alerts: records every request, and can be switched to
//! answer 503 (down) or to hold each answer (slow) while a test kills the sender.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Received {
    pub idempotency_key: String,
    pub body: serde_json::Value,
    /// Whether the receiver answered 2xx.
    pub accepted: bool,
}

impl Received {
    pub fn field(&self, name: &str) -> String {
        self.body[name].as_str().unwrap_or_default().to_string()
    }
}

pub const UP: u8 = 0;
pub const DOWN: u8 = 1;
pub const SLOW: u8 = 2;

#[derive(Default)]
struct Inner {
    got: Mutex<Vec<Received>>,
    mode: AtomicU8,
    slow_ms: AtomicU64,
}

pub struct Receiver {
    inner: Arc<Inner>,
    pub url: String,
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mode = inner.mode.load(Ordering::SeqCst);
    let accepted = mode != DOWN;
    // Recorded on arrival: a sender killed while the answer is held still counts as one copy.
    inner.got.lock().unwrap().push(Received {
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        accepted,
    });
    if mode == SLOW {
        let hold = inner.slow_ms.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(hold)).await;
    }
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Inner::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { inner, url }
    }

    pub fn set_mode(&self, mode: u8, slow_ms: u64) {
        self.inner.slow_ms.store(slow_ms, Ordering::SeqCst);
        self.inner.mode.store(mode, Ordering::SeqCst);
    }

    /// Every request, accepted or not.
    pub fn all(&self) -> Vec<Received> {
        self.inner.got.lock().unwrap().clone()
    }

    /// Accepted deliveries only.
    pub fn delivered(&self) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.accepted).collect()
    }

    /// How many different events (by `event_id`) of `event` for `store` were accepted: a
    /// retried delivery of one event counts once.
    pub fn distinct(&self, store: &str, event: &str) -> usize {
        let ids: std::collections::HashSet<String> = self
            .events(store, event)
            .into_iter()
            .map(|r| r.idempotency_key)
            .collect();
        ids.len()
    }

    /// Accepted deliveries of `event` (opened/reminder/resolved) for `store`.
    pub fn events(&self, store: &str, event: &str) -> Vec<Received> {
        self.delivered()
            .into_iter()
            .filter(|r| r.field("store_id") == store && r.field("event") == event)
            .collect()
    }
}
