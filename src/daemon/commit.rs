//! Group commit of finished checks: one SQLite transaction for every check that finished while
//! the previous transaction was being written, instead of one per check.
//!
//! A check advances memory as soon as `health::step` has decided (under the store-map lock, so
//! the next check sees it), queues its rows, and waits for the commit. The first check of a
//! batch holds it open for [`WINDOW`] (or until [`MAX_BATCH`] are queued), then writes every
//! queued check in one transaction, unless another check is writing: that one takes them. When a commit
//! fails (a full disk), memory goes back to where it was before every check of that batch and
//! of the queue behind it (those were decided on top of it), newest first: the next checks
//! derive the lost events again, so none is lost.

use super::*;
use crate::state::CheckWrite;

/// How long the first check of a batch waits for others to join it.
pub(super) const WINDOW: Duration = Duration::from_millis(5);
/// A batch this long is written at once.
pub(super) const MAX_BATCH: usize = 512;

/// Memory a check changed, as it was before: restored when its write fails.
#[derive(Default)]
pub(super) struct Before {
    /// The checked store: health and backoff (its latest outcome stays: status shows it).
    pub store: (String, StoreHealth, Backoff),
    /// Other entries whose health changed with it (covered stores, the grouped incident).
    pub others: Vec<(String, StoreHealth)>,
}

/// A finished check waiting for its transaction.
pub(super) struct Pending {
    pub write: CheckWrite,
    pub before: Before,
    pub done: tokio::sync::oneshot::Sender<Result<(), Failed>>,
}

/// Why a batch was not recorded.
#[derive(Clone, Debug)]
pub(super) struct Failed {
    pub message: String,
    pub disk_full: bool,
}

/// The queue and the writer's role.
#[derive(Default)]
pub(super) struct Commits {
    queue: Mutex<Vec<Pending>>,
    writer: Mutex<()>,
}

impl Commits {
    /// Queues a check (call with the store map locked, so queue order is decision order):
    /// the queue's length with it.
    pub fn push(&self, p: Pending) -> usize {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.push(p);
        q.len()
    }

    fn take(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn is_empty(&self) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// Waits for a queued check's commit; `queued` is the queue's length [`Commits::push`] gave.
pub(super) async fn wait(
    shared: &Shared,
    queued: usize,
    done: tokio::sync::oneshot::Receiver<Result<(), Failed>>,
) -> Result<(), Failed> {
    if queued >= MAX_BATCH {
        flush(shared);
    } else if queued == 1 {
        // The batch's first check writes it, also when its task is cancelled meanwhile.
        let _writes = FlushOnDrop(shared);
        tokio::time::sleep(WINDOW).await;
    }
    done.await.unwrap_or_else(|_| {
        Err(Failed {
            message: "the write was dropped".into(),
            disk_full: false,
        })
    })
}

struct FlushOnDrop<'a>(&'a Shared);

impl Drop for FlushOnDrop<'_> {
    fn drop(&mut self) {
        flush(self.0);
    }
}

/// Writes the queue unless another check is already doing it (that one picks up what is
/// queued now before it lets go). Call without the store map locked.
pub(super) fn flush(shared: &Shared) {
    loop {
        let Ok(role) = shared.commits.writer.try_lock() else {
            return;
        };
        loop {
            let batch = shared.commits.take();
            if batch.is_empty() {
                break;
            }
            write_batch(shared, batch);
        }
        drop(role);
        // A check may have queued after the last take and before the role was let go.
        if shared.commits.is_empty() {
            return;
        }
    }
}

fn write_batch(shared: &Shared, batch: Vec<Pending>) {
    let writes: Vec<&CheckWrite> = batch.iter().map(|p| &p.write).collect();
    match shared.state.record_checks(&writes) {
        Ok(refused) => {
            // Checks of shards taken over meanwhile (replica mode): the new holder's are
            // the ones that count; these leave nothing behind.
            if !refused.is_empty() {
                tracing::warn!(
                    checks = refused.len(),
                    "refused by the fleet database: this replica no longer holds their shards"
                );
            }
            shared.metrics.state_commits.fetch_add(1, Ordering::Relaxed);
            if batch
                .iter()
                .any(|p| p.write.routed().iter().any(|r| !r.channels.is_empty()))
            {
                shared.outbox_kick.notify_one();
            }
            for p in batch {
                let _ = p.done.send(Ok(()));
            }
        }
        Err(e) => {
            let failed = Failed {
                message: e.to_string(),
                disk_full: e.is_disk_full(),
            };
            let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
            // Checks queued meanwhile were decided on top of this batch: they fail with it.
            let mut all = batch;
            all.extend(shared.commits.take());
            for p in all.iter().rev() {
                let (id, health, backoff) = &p.before.store;
                let m = mem.entry(id.clone()).or_default();
                m.health = health.clone();
                m.backoff = *backoff;
                for (id, h) in &p.before.others {
                    mem.entry(id.clone()).or_default().health = h.clone();
                }
            }
            drop(mem);
            for p in all {
                let _ = p.done.send(Err(failed.clone()));
            }
        }
    }
}
