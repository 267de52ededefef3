//! Per-channel rate limits, at the services' published limits.
//!
//! A robot that goes over its limit gets throttled (DingTalk for ten minutes), exactly when an
//! outage of many stores makes alerts pile up. So a channel asks its [`Limiter`] before each
//! send; when a window is full the send does not happen and the delivery worker is told how
//! long to wait (`Delivery::Retry(Some(wait))`). Windows slide (at most N sends within any W),
//! which is how the services count, unlike a token bucket that allows a burst on top of the
//! rate. Time is the injected `now`, so tests need no clock.

use crate::model::ChannelKind;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::time::Duration;

/// At most `max` sends within any `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub max: usize,
    pub window: Duration,
}

/// The limits storeguard keeps per channel: its kind's spec (`ChannelKind::spec().limits`),
/// and for a Telegram group chat the group limit on top. Per-minute windows are a little longer
/// than a minute so that network jitter cannot make the service count 21 in its minute.
pub fn limits(kind: ChannelKind, telegram_group: bool) -> Vec<Window> {
    let table = if kind == ChannelKind::Telegram && telegram_group {
        crate::model::TELEGRAM_GROUP_LIMITS
    } else {
        kind.spec().limits
    };
    table
        .iter()
        .map(|&(max, secs)| Window {
            max: max as usize,
            window: Duration::from_secs(secs),
        })
        .collect()
}

/// Send history of one channel.
#[derive(Debug, Default)]
pub struct Limiter {
    windows: Vec<Window>,
    sent: VecDeque<DateTime<Utc>>,
    /// The service itself said "too fast": hold everything until then.
    blocked_until: Option<DateTime<Utc>>,
}

impl Limiter {
    pub fn new(windows: Vec<Window>) -> Self {
        Limiter {
            windows,
            sent: VecDeque::new(),
            blocked_until: None,
        }
    }

    /// Records a send at `now` if every window has room; otherwise says how long to wait.
    pub fn try_acquire(&mut self, now: DateTime<Utc>) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        if let Some(until) = self.blocked_until {
            if until > now {
                wait = to_std(until - now);
            } else {
                self.blocked_until = None;
            }
        }
        let longest = self.windows.iter().map(|w| w.window).max();
        if let Some(longest) = longest {
            let horizon = now - chrono::TimeDelta::from_std(longest).unwrap_or_default();
            while self.sent.front().is_some_and(|t| *t <= horizon) {
                self.sent.pop_front();
            }
        }
        for win in &self.windows {
            let span = chrono::TimeDelta::from_std(win.window).unwrap_or_default();
            let start = now - span;
            // Sends inside (now - window, now]; a clock that stepped back counts them all.
            let inside: Vec<&DateTime<Utc>> = self.sent.iter().filter(|t| **t > start).collect();
            if inside.len() >= win.max {
                // The window frees up when the oldest send that keeps it full leaves it.
                let oldest = inside[inside.len() - win.max];
                let free_at = *oldest + span;
                let w = if free_at > now {
                    to_std(free_at - now)
                } else {
                    Duration::from_millis(1)
                };
                wait = wait.max(w);
            }
        }
        if wait > Duration::ZERO {
            // Whole milliseconds, at least one, so a caller never spins on a zero wait.
            return Err(wait.max(Duration::from_millis(1)));
        }
        if !self.windows.is_empty() {
            self.sent.push_back(now);
        }
        Ok(())
    }

    /// The service answered "rate limited": send nothing more until `now + wait`.
    pub fn block(&mut self, now: DateTime<Utc>, wait: Duration) {
        let until = now + chrono::TimeDelta::from_std(wait).unwrap_or_default();
        if self.blocked_until.is_none_or(|u| u < until) {
            self.blocked_until = Some(until);
        }
    }
}

fn to_std(d: chrono::TimeDelta) -> Duration {
    d.to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn at(ms: i64) -> DateTime<Utc> {
        t0() + chrono::TimeDelta::milliseconds(ms)
    }

    #[test]
    fn dingtalk_allows_twenty_in_any_minute() {
        let mut l = Limiter::new(limits(ChannelKind::Dingtalk, false));
        for i in 0..20 {
            assert!(l.try_acquire(at(i * 100)).is_ok(), "send {i}");
        }
        // The 21st, two seconds in, waits until the first send leaves the 62 s window.
        let wait = l.try_acquire(at(2_000)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        assert!(l.try_acquire(at(61_999)).is_err());
        assert!(l.try_acquire(at(62_000)).is_ok());
        // ... and then it is full again.
        assert!(l.try_acquire(at(62_050)).is_err());
    }

    #[test]
    fn feishu_has_two_windows() {
        let mut l = Limiter::new(limits(ChannelKind::Feishu, false));
        for i in 0..5 {
            assert!(l.try_acquire(at(i)).is_ok());
        }
        assert_eq!(
            l.try_acquire(at(10)).unwrap_err(),
            Duration::from_millis(990)
        );
        // 100 over 20 seconds is fine for the per-second window but fills the minute one.
        let mut l = Limiter::new(limits(ChannelKind::Feishu, false));
        for i in 0..100 {
            assert!(l.try_acquire(at(i * 200)).is_ok(), "send {i}");
        }
        let wait = l.try_acquire(at(20_000)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(42));
    }

    #[test]
    fn service_throttle_blocks_everything() {
        let mut l = Limiter::new(limits(ChannelKind::Wecom, false));
        assert!(l.try_acquire(at(0)).is_ok());
        l.block(at(0), Duration::from_secs(60));
        assert_eq!(
            l.try_acquire(at(30_000)).unwrap_err(),
            Duration::from_secs(30)
        );
        assert!(l.try_acquire(at(60_000)).is_ok());
    }

    #[test]
    fn log_is_unlimited_and_clock_steps_are_safe() {
        let mut l = Limiter::new(limits(ChannelKind::Log, false));
        for _ in 0..1000 {
            assert!(l.try_acquire(at(0)).is_ok());
        }
        let mut l = Limiter::new(limits(ChannelKind::Telegram, true));
        assert!(l.try_acquire(at(5_000)).is_ok());
        // The clock stepped back: the earlier send still counts, nothing panics.
        assert!(l.try_acquire(at(1_000)).is_err());
    }
}
