//! Usage tracking: `last_used_at` / `last_used_ip`, written in the
//! background.
//!
//! The request path only notes the use in a map (one entry per key, the
//! latest use wins). A background task writes the map to the store once per
//! flush interval, so each key costs at most one store write per interval,
//! and no request ever waits on the store for it.
//! [`Keygate::flush_usage`](crate::Keygate::flush_usage) writes what is
//! pending, for graceful shutdown.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use time::OffsetDateTime;

use crate::store::{KeyStore, Usage};
use crate::token::KeyId;

/// Pending uses and the task that flushes them.
pub(crate) struct UsageRecorder {
    pending: Mutex<HashMap<KeyId, Usage>>,
    store: Arc<dyn KeyStore>,
    interval: Duration,
    started: AtomicBool,
    /// Serializes flushes so a shutdown flush cannot overtake a periodic one.
    flushing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageRecorder")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl UsageRecorder {
    pub(crate) fn new(store: Arc<dyn KeyStore>, interval: Duration) -> Arc<UsageRecorder> {
        Arc::new(UsageRecorder {
            pending: Mutex::new(HashMap::new()),
            store,
            interval,
            started: AtomicBool::new(false),
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, Usage>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a use. Never touches the store.
    pub(crate) fn record(self: &Arc<Self>, id: KeyId, ip: Option<IpAddr>) {
        let usage = Usage {
            id,
            at: OffsetDateTime::now_utc(),
            ip,
        };
        self.lock().insert(id, usage);
        if !self.started.load(Ordering::Relaxed) {
            self.start();
        }
    }

    /// Starts the flushing task on the current tokio runtime, once.
    fn start(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<UsageRecorder> = Arc::downgrade(self);
        let interval = self.interval;
        handle.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(recorder) = weak.upgrade() else {
                    break;
                };
                recorder.flush().await;
            }
        });
    }

    /// Writes every pending use in one batch. On failure the uses go back
    /// into the map (unless newer ones arrived) for the next flush.
    pub(crate) async fn flush(&self) -> usize {
        let _one_at_a_time = self.flushing.lock().await;
        let batch: Vec<Usage> = {
            let mut pending = self.lock();
            if pending.is_empty() {
                return 0;
            }
            std::mem::take(&mut *pending).into_values().collect()
        };
        match self.store.record_usage(&batch).await {
            Ok(()) => batch.len(),
            Err(error) => {
                tracing::warn!(%error, keys = batch.len(), "cannot record key usage; will retry");
                let mut pending = self.lock();
                for usage in batch {
                    pending.entry(usage.id).or_insert(usage);
                }
                0
            }
        }
    }
}
