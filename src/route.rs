//! Which channels an alert event goes to.
//!
//! A store's own `channels` list, else `[defaults] channels` (resolved when the config is
//! validated), filtered by each channel's `min_severity`.

use crate::alert::AlertEvent;
use crate::config::Config;

/// Channel names for `event`, in config order.
pub fn channels_for(config: &Config, event: &AlertEvent) -> Vec<String> {
    let candidates: &[String] = match config.store(&event.store_id) {
        Some(store) => &store.channels,
        None => &config.defaults.channels,
    };
    candidates
        .iter()
        .filter(|name| {
            config
                .channel(name)
                .is_some_and(|c| event.severity >= c.min_severity)
        })
        .cloned()
        .collect()
}
