//! The lease policy, pure: which shard a store is in, how many shards each live replica should
//! hold, what one replica takes and gives back on a tick, and how long it may trust a lease it
//! renewed. The database half (`db`) carries the plan out.

use std::time::{Duration, Instant};

/// Shards when `[replicas] shards` is absent.
pub const DEFAULT_SHARDS: u32 = 64;
/// Most shards a fleet may be cut into (each is one lease row, renewed every tick).
pub const MAX_SHARDS: u32 = 4096;
/// `[replicas] lease_ttl` when absent: a dead replica's stores are checked again within
/// `ttl + ttl / 3` (20 s), well inside a minute.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Shortest lease: a database round trip must fit many times into `ttl / 2`.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);
/// Longest lease: beyond this a dead replica's stores go unchecked for too long.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(600);

/// The shard of a store: FNV-1a (64 bit) of its id, modulo `shards`. Stable across builds,
/// machines and versions, since every replica must agree on it.
pub fn shard_of(store_id: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in store_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(shards.max(1))) as u32
}

/// How often a replica renews its leases and looks at the fleet: a third of the lease.
pub fn tick(ttl: Duration) -> Duration {
    ttl / 3
}

/// How long after the renewal *started* a replica may still act on a lease: half the lease.
/// The database set the lease's end to its own `now() + ttl`, which is later than the moment
/// the request left this process, so this leaves at least `ttl / 2` for clock-rate
/// differences and a stalled process (SIGSTOP, a long GC-free pause, a swapped-out page).
pub fn trust_for(ttl: Duration) -> Duration {
    ttl / 2
}

/// A lease as the plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    pub shard: u32,
    /// The holder, when the lease has not expired by database time.
    pub holder: Option<String>,
}

/// The shards each live replica should hold: `shards / n`, and one more for the first
/// `shards % n` names in sorted order. `live` must be sorted and contain no duplicates.
pub fn fair_share(shards: u32, live: &[String], me: &str) -> u32 {
    let n = live.len().max(1) as u32;
    let index = live.iter().position(|r| r == me).unwrap_or(live.len()) as u32;
    shards / n + u32::from(index < shards % n)
}

/// What one replica does on a tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free (or expired) shards to try to take, in this order.
    pub acquire: Vec<u32>,
    /// Held shards to give back: this replica holds more than its share while another live
    /// replica holds less than its own.
    pub release: Vec<u32>,
}

/// The tick's plan for `me`. `live` holds the replicas whose heartbeat is recent (sorted;
/// `me` is added when missing). A free shard is taken when this replica is below its share,
/// or when nobody below their share could take it (an orphan: its holder died and the
/// others are full), so a dead replica's stores are never left unchecked. Shards are given
/// back only while someone else is below their share, so the fleet settles and stays put.
pub fn plan(shards: u32, me: &str, live: &[String], leases: &[LeaseView]) -> Plan {
    let mut live: Vec<String> = live.to_vec();
    if !live.iter().any(|r| r == me) {
        live.push(me.to_string());
        live.sort();
    }
    let held_by = |r: &str| {
        leases
            .iter()
            .filter(|l| l.holder.as_deref() == Some(r))
            .count() as u32
    };
    let mine: Vec<u32> = leases
        .iter()
        .filter(|l| l.holder.as_deref() == Some(me))
        .map(|l| l.shard)
        .collect();
    let want = fair_share(shards, &live, me);
    let others_starving = live
        .iter()
        .filter(|r| r.as_str() != me)
        .any(|r| held_by(r) < fair_share(shards, &live, r));

    let mut out = Plan::default();
    let held = mine.len() as u32;
    if held > want && others_starving {
        let mut give: Vec<u32> = mine.clone();
        give.sort_unstable();
        out.release = give.split_off(want as usize);
    }
    let mut free: Vec<u32> = leases
        .iter()
        .filter(|l| l.holder.is_none())
        .map(|l| l.shard)
        .collect();
    // Each replica starts its search at its own offset, so replicas joining together reach
    // for different shards first instead of all racing for shard 0.
    let index = live.iter().position(|r| r == me).unwrap_or(0) as u32;
    let offset = index * shards / live.len().max(1) as u32;
    free.sort_unstable_by_key(|s| (s + shards - offset % shards.max(1)) % shards.max(1));
    if held < want {
        free.truncate((want - held) as usize);
        out.acquire = free;
    } else if !others_starving {
        out.acquire = free;
    }
    out
}

/// A lease this replica holds: its fencing term and until when the replica trusts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub term: i64,
    /// The end of trust, on this process's monotonic clock ([`trust_for`] after the start
    /// of the last successful renewal).
    pub trusted_until: Instant,
}

impl Held {
    pub fn trusted_at(&self, now: Instant) -> bool {
        now < self.trusted_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn leases(holders: &[Option<&str>]) -> Vec<LeaseView> {
        holders
            .iter()
            .enumerate()
            .map(|(i, h)| LeaseView {
                shard: i as u32,
                holder: h.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn shards_are_stable_and_spread() {
        // Fixed values: a change here would move every store of a running fleet.
        assert_eq!(shard_of("ozon-main", 64), shard_of("ozon-main", 64));
        assert_eq!(shard_of("", 64), (0xcbf2_9ce4_8422_2325u64 % 64) as u32);
        let mut counts = [0u32; 64];
        for i in 0..64_000 {
            counts[shard_of(&format!("store-{i}"), 64) as usize] += 1;
        }
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*lo > 850 && *hi < 1150, "{lo}..{hi}");
        assert_eq!(shard_of("x", 0), 0);
    }

    #[test]
    fn shares_add_up_to_every_shard() {
        for n in 1..10 {
            let live: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
            let total: u32 = live.iter().map(|r| fair_share(64, &live, r)).sum();
            assert_eq!(total, 64, "{n} replicas");
        }
        assert_eq!(fair_share(64, &names(&["a", "b", "c"]), "a"), 22);
        assert_eq!(fair_share(64, &names(&["a", "b", "c"]), "c"), 21);
    }

    #[test]
    fn a_lone_replica_takes_everything() {
        let p = plan(4, "a", &names(&["a"]), &leases(&[None, None, None, None]));
        assert_eq!(p.acquire.len(), 4);
        assert!(p.release.is_empty());
    }

    #[test]
    fn a_newcomer_is_given_half() {
        let all_a = leases(&[Some("a"); 4]);
        let live = names(&["a", "b"]);
        let pa = plan(4, "a", &live, &all_a);
        assert_eq!(pa.release, vec![2, 3]);
        let pb = plan(4, "b", &live, &all_a);
        assert!(pb.acquire.is_empty() && pb.release.is_empty());
        // Once released, b takes them and a does not reach for them again.
        let after = leases(&[Some("a"), Some("a"), None, None]);
        assert_eq!(plan(4, "b", &live, &after).acquire.len(), 2);
        assert!(plan(4, "a", &live, &after).acquire.is_empty());
        // Settled: nobody moves.
        let settled = leases(&[Some("a"), Some("a"), Some("b"), Some("b")]);
        assert_eq!(plan(4, "a", &live, &settled), Plan::default());
        assert_eq!(plan(4, "b", &live, &settled), Plan::default());
    }

    #[test]
    fn orphans_of_a_dead_replica_are_taken_even_above_share() {
        // c died: its heartbeat is gone and its leases expired; a and b are at their share.
        let live = names(&["a", "b"]);
        let ls = leases(&[Some("a"), Some("a"), Some("b"), Some("b"), None, None]);
        let pa = plan(6, "a", &live, &ls);
        assert_eq!(pa.acquire.len(), 1, "a is below its share of 3");
        // While c still looks alive (heartbeat not yet expired), a full a takes orphans too.
        let live3 = names(&["a", "b", "c"]);
        let ls = leases(&[Some("a"), Some("a"), Some("b"), Some("b"), None, None]);
        let pa = plan(6, "a", &live3, &ls);
        assert!(
            pa.acquire.is_empty(),
            "c is below its share and may take them"
        );
        let ls = leases(&[Some("a"), Some("a"), Some("b"), Some("b"), Some("c"), None]);
        // c holds one, below its share of 2: the free one is c's to take.
        assert!(plan(6, "a", &live3, &ls).acquire.is_empty());
        assert_eq!(plan(6, "c", &live3, &ls).acquire, vec![5]);
    }

    #[test]
    fn replicas_joining_together_reach_for_different_shards() {
        let live = names(&["a", "b"]);
        let free = leases(&[None; 8]);
        let pa = plan(8, "a", &live, &free);
        let pb = plan(8, "b", &live, &free);
        assert_eq!(pa.acquire.len(), 4);
        assert_eq!(pb.acquire.len(), 4);
        assert!(pa.acquire.iter().all(|s| !pb.acquire.contains(s)));
    }

    #[test]
    fn trust_ends_before_the_lease_can_expire_for_others() {
        let ttl = DEFAULT_LEASE_TTL;
        assert!(tick(ttl) < trust_for(ttl));
        assert!(trust_for(ttl) < ttl);
        let start = Instant::now();
        let h = Held {
            term: 1,
            trusted_until: start + trust_for(ttl),
        };
        assert!(h.trusted_at(start));
        assert!(!h.trusted_at(start + trust_for(ttl)));
    }
}
