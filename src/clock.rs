//! The daemon's notion of time, injectable so schedules, backoff and reminders can be tested
//! without sleeping (and so a clock that jumps is a test case, not a surprise).

use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Wall-clock time plus a way to wait for it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves at `t`, or earlier (at least once a minute, or when a manual clock moves), so a
    /// clock that jumps is noticed. Callers re-check `now()` when it resolves.
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// Waits until `clock` has moved forward by `d` (a manual clock in tests, the system clock
/// otherwise). Time the clock is stepped back does not count against the wait, so a clock
/// corrected by a day does not stall the caller for a day.
pub async fn sleep_for(clock: &dyn Clock, d: Duration) {
    let mut left = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let mut last = clock.now();
    while left > chrono::Duration::zero() {
        clock.sleep_until(last + left).await;
        let now = clock.now();
        if now > last {
            left -= now - last;
        }
        last = now;
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait.min(Duration::from_secs(60))))
    }
}

/// A clock moved by hand; sleepers wake when it passes their time.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    now: Mutex<DateTime<Utc>>,
    tick: tokio::sync::watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        let (tick, _) = tokio::sync::watch::channel(start);
        ManualClock {
            inner: Arc::new(ManualInner {
                now: Mutex::new(start),
                tick,
            }),
        }
    }

    /// Moves the clock to `t` (forwards or backwards) and wakes sleepers.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.inner.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
        self.inner.tick.send_replace(t);
    }

    pub fn advance(&self, d: Duration) {
        let t = self.now() + chrono::Duration::from_std(d).unwrap_or_default();
        self.set(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.inner.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut rx = self.inner.tick.subscribe();
        Box::pin(async move {
            if *rx.borrow_and_update() >= t {
                return;
            }
            // Any move of the clock (also backwards) wakes the sleeper so the caller re-plans.
            let _ = rx.changed().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers() {
        let start = Utc::now();
        let c = ManualClock::new(start);
        let sleeper = tokio::spawn(c.sleep_until(start + chrono::Duration::seconds(10)));
        tokio::task::yield_now().await;
        c.advance(Duration::from_secs(11));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(c.now(), start + chrono::Duration::seconds(11));
    }

    #[tokio::test]
    async fn sleep_for_counts_only_forward_time() {
        let start = Utc::now();
        let c = ManualClock::new(start);
        let c2 = c.clone();
        // Lets the sleeper see each move (a single-threaded runtime runs it in these yields).
        let settle = || async {
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        };
        let sleeper = tokio::spawn(async move { sleep_for(&c2, Duration::from_secs(60)).await });
        settle().await;
        c.advance(Duration::from_secs(30));
        settle().await;
        // Stepped back a day: the 30 s left are still 30 s, not a day and 30 s.
        c.set(start - chrono::Duration::days(1));
        settle().await;
        c.advance(Duration::from_secs(20));
        settle().await;
        assert!(!sleeper.is_finished(), "10 s are still to go");
        c.advance(Duration::from_secs(11));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken after 61 s of forward time")
            .unwrap();
    }
}
