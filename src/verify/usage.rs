//! Usage tracking: `last_used_at` / `last_used_ip`, written in the
//! background.
//!
//! The request path only notes the use in a map (one entry per key, the
//! latest use wins). A background task writes the map to the store once per
//! flush interval, so each key costs at most one store write per interval,
//! and no request ever waits on the store for it.
//! [`Verifier::flush_usage`](crate::Verifier::flush_usage) writes what is
//! pending, for graceful shutdown.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::store::{KeyStore, Usage};
use crate::telemetry::{self, StoreOp};
use crate::token::KeyId;

/// The second and the address of the last use noted for a cached key, so
/// that repeated uses within a second cost two atomic loads instead of a
/// lock and a map insert.
#[derive(Debug)]
pub(crate) struct UsageMark {
    second: AtomicI64,
    /// [`fingerprint`] of the address.
    ip: AtomicU64,
}

impl Default for UsageMark {
    fn default() -> Self {
        UsageMark {
            // No use noted yet: no real use is at this second.
            second: AtomicI64::new(i64::MIN),
            ip: AtomicU64::new(0),
        }
    }
}

impl UsageMark {
    /// Records a use at `second` from `ip`; whether it differs from the
    /// last one recorded (and so must be noted).
    fn renew(&self, second: i64, ip: Option<IpAddr>) -> bool {
        let ip = fingerprint(ip);
        if self.second.load(Ordering::Relaxed) == second && self.ip.load(Ordering::Relaxed) == ip {
            return false;
        }
        self.second.store(second, Ordering::Relaxed);
        self.ip.store(ip, Ordering::Relaxed);
        true
    }
}

/// An address folded into 64 bits: exact for IPv4, the halves XORed for
/// IPv6. Two IPv6 addresses folding alike within one second of each other
/// make the second use look repeated: `last_used_ip` then names the first
/// of them, which is still an address that used the key in that second.
fn fingerprint(ip: Option<IpAddr>) -> u64 {
    match ip {
        None => 0,
        Some(IpAddr::V4(v4)) => (1 << 32) | u64::from(v4.to_bits()),
        Some(IpAddr::V6(v6)) => {
            let bits = v6.to_bits();
            // Truncations on purpose: the two halves.
            #[allow(clippy::cast_possible_truncation)]
            let folded = (bits >> 64) as u64 ^ bits as u64;
            folded | (1 << 63)
        }
    }
}

/// Pending uses and the task that flushes them.
pub(crate) struct UsageRecorder {
    pending: Mutex<HashMap<KeyId, Usage>>,
    store: Arc<dyn KeyStore>,
    interval: Duration,
    started: AtomicBool,
    /// Where the monotonic seconds of [`UsageMark`]s count from.
    origin: Instant,
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
            origin: Instant::now(),
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, Usage>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a use of key `id`, whose cache record keeps `mark`. Never
    /// touches the store; a use in the same second from the same address as
    /// the last one noted on `mark` changes nothing and costs no lock.
    pub(crate) fn record(
        self: &Arc<Self>,
        id: KeyId,
        mark: &UsageMark,
        ip: Option<IpAddr>,
        now: Instant,
    ) {
        // Repeats are told by the monotonic second the caller already read;
        // the wall clock is read only for a new note.
        let second = now.saturating_duration_since(self.origin).as_secs();
        if !mark.renew(i64::try_from(second).unwrap_or(i64::MAX), ip) {
            return;
        }
        let at = crate::key::now();
        self.lock().insert(id, Usage { id, at, ip });
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
        let started = Instant::now();
        let recorded = self.store.record_usage(&batch).await;
        telemetry::store_op(StoreOp::RecordUsage, started, recorded.is_err());
        match recorded {
            Ok(()) => batch.len(),
            Err(error) => {
                tracing::warn!(error = %error.with_causes(), keys = batch.len(), "cannot record key usage; will retry");
                let mut pending = self.lock();
                for usage in batch {
                    pending.entry(usage.id).or_insert(usage);
                }
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_use_is_noted_once_per_second_and_address() {
        let mark = UsageMark::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(mark.renew(100, Some(a)), "the first use");
        assert!(!mark.renew(100, Some(a)), "the same second and address");
        assert!(mark.renew(100, Some(b)), "another address");
        assert!(mark.renew(100, None), "no address");
        assert!(!mark.renew(100, None));
        assert!(mark.renew(101, None), "the next second");
        assert!(mark.renew(0, None), "any other second, even earlier");
    }

    #[test]
    fn fingerprints_tell_families_and_addresses_apart() {
        let ips: Vec<Option<IpAddr>> = [
            None,
            Some("0.0.0.0"),
            Some("192.0.2.1"),
            Some("192.0.2.2"),
            Some("::"),
            Some("::1"),
            Some("::ffff:192.0.2.1"),
            Some("2001:db8::1"),
            Some("2001:db8::2"),
        ]
        .iter()
        .map(|ip| ip.map(|ip| ip.parse().unwrap()))
        .collect();
        let prints: std::collections::HashSet<u64> =
            ips.iter().map(|&ip| fingerprint(ip)).collect();
        assert_eq!(prints.len(), ips.len());
    }
}
