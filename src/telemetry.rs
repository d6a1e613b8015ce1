//! The figures keygate reports through the [`metrics`] facade: install any
//! recorder (e.g. `metrics-exporter-prometheus`, which `keygate serve`
//! uses for `GET /metrics`) **before** building a [`Keygate`], and every
//! figure below reaches it (the figures of background work and key
//! management — usage flushes, credit blocks, the change feed, writes — go
//! to the global recorder).
//! Without a recorder they cost a few instructions each and go nowhere.
//!
//! | name | kind | labels | what it counts |
//! |------|------|--------|----------------|
//! | `keygate_requests_total` | counter | `outcome`: `ok` or the refusal's code (`missing_token`, `invalid_request`, `invalid_token`, `ip_not_allowed`, `insufficient_scope`, `rate_limited`, `credits_exhausted`, `unavailable`) | credential checks, by answer |
//! | `keygate_cache_lookups_total` | counter | `result`: `hit`, `miss` | lookups of a presented key in the verifier's cache |
//! | `keygate_store_operation_seconds` | histogram | `operation`: `get`, `record_usage`, `reserve_credits`, `release_credits` (the verifier's), `insert`, `replace`, `rotate`, `delete`, `adjust_credits` (key management's) | how long keygate waited for its store |
//! | `keygate_store_errors_total` | counter | `operation` (as above) | store operations that failed |
//! | `keygate_invalidations_total` | counter | `kind`: `key` (one key changed), `resync` (the whole cache dropped) | changes heard from the store's change feed |
//! | `keygate_change_feed_connected` | gauge | — | 1 while the store's change feed (PostgreSQL `LISTEN`, SQLite polling) is heard, 0 while it is not |
//! | `keygate_limiter_decisions_total` | counter | `decision`: `admitted`, `refused`, `unreachable_admitted`, `unreachable_refused` | rate-limit checks of counted requests |
//! | `keygate_credit_blocks_total` | counter | `event`: `reserved`, `refused`, `released` | credit blocks taken from and returned to the store |
//!
//! No label ever holds a key id, an owner, a token or any secret: every
//! label value is one of the fixed words above, so the number of series
//! is fixed too.
//!
//! # Example
//!
//! ```
//! use keygate::{Keygate, MemoryStore, Pepper};
//! use metrics_util::debugging::DebuggingRecorder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! // Installed for this thread here; a server installs one globally.
//! let keygate = metrics::with_local_recorder(&recorder, || {
//!     Keygate::builder(MemoryStore::new())
//!         .pepper(Pepper::insecure_fixed_for_tests())
//!         .build()
//! })?;
//! let refused = keygate.verify("kg_live_not-a-token").await;
//! assert!(refused.is_err());
//! let counted = snapshotter
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .filter(|(key, ..)| key.key().name() == "keygate_requests_total")
//!     .count();
//! assert!(counted > 0, "one series per outcome, registered when built");
//! # Ok(())
//! # }
//! ```
//!
//! [`Keygate`]: crate::Keygate

use std::time::Instant;

use metrics::{Counter, Histogram};

/// `keygate_requests_total`.
pub(crate) const REQUESTS: &str = "keygate_requests_total";
/// `keygate_cache_lookups_total`.
pub(crate) const CACHE_LOOKUPS: &str = "keygate_cache_lookups_total";
/// `keygate_store_operation_seconds`.
pub(crate) const STORE_SECONDS: &str = "keygate_store_operation_seconds";
/// `keygate_store_errors_total`.
pub(crate) const STORE_ERRORS: &str = "keygate_store_errors_total";
/// `keygate_invalidations_total`.
pub(crate) const INVALIDATIONS: &str = "keygate_invalidations_total";
/// `keygate_change_feed_connected`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const FEED_CONNECTED: &str = "keygate_change_feed_connected";
/// `keygate_limiter_decisions_total`.
pub(crate) const LIMITER_DECISIONS: &str = "keygate_limiter_decisions_total";
/// `keygate_credit_blocks_total`.
pub(crate) const CREDIT_BLOCKS: &str = "keygate_credit_blocks_total";

/// Every answer to a credential check, in [`Telemetry::outcomes`] order.
const OUTCOMES: [&str; 9] = [
    "ok",
    "missing_token",
    "invalid_request",
    "invalid_token",
    "ip_not_allowed",
    "insufficient_scope",
    "rate_limited",
    "credits_exhausted",
    "unavailable",
];

/// A store operation the verifier times.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StoreOp {
    Get,
    RecordUsage,
    ReserveCredits,
    ReleaseCredits,
    Insert,
    Replace,
    Rotate,
    Delete,
    AdjustCredits,
}

impl StoreOp {
    const ALL: [StoreOp; 9] = [
        StoreOp::Get,
        StoreOp::RecordUsage,
        StoreOp::ReserveCredits,
        StoreOp::ReleaseCredits,
        StoreOp::Insert,
        StoreOp::Replace,
        StoreOp::Rotate,
        StoreOp::Delete,
        StoreOp::AdjustCredits,
    ];

    fn label(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::RecordUsage => "record_usage",
            StoreOp::ReserveCredits => "reserve_credits",
            StoreOp::ReleaseCredits => "release_credits",
            StoreOp::Insert => "insert",
            StoreOp::Replace => "replace",
            StoreOp::Rotate => "rotate",
            StoreOp::Delete => "delete",
            StoreOp::AdjustCredits => "adjust_credits",
        }
    }
}

/// A rate-limit decision.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LimitDecision {
    Admitted,
    Refused,
    UnreachableAdmitted,
    UnreachableRefused,
}

/// A credit block event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BlockEvent {
    Reserved,
    Refused,
    Released,
}

/// A change heard from the store's feed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Invalidation {
    Key,
    Resync,
}

/// The handles of every figure, registered once with the recorder
/// installed when the verifier is built: counting is then an atomic add
/// (or nothing, without a recorder), never a lookup by name.
pub(crate) struct Telemetry {
    outcomes: [Counter; OUTCOMES.len()],
    cache_hit: Counter,
    cache_miss: Counter,
    store_seconds: [Histogram; StoreOp::ALL.len()],
    store_errors: [Counter; StoreOp::ALL.len()],
    invalidations: [Counter; 2],
    limiter: [Counter; 4],
}

impl Telemetry {
    /// Registers every series with the current recorder.
    pub(crate) fn register() -> Telemetry {
        Telemetry {
            outcomes: OUTCOMES.map(|outcome| metrics::counter!(REQUESTS, "outcome" => outcome)),
            cache_hit: metrics::counter!(CACHE_LOOKUPS, "result" => "hit"),
            cache_miss: metrics::counter!(CACHE_LOOKUPS, "result" => "miss"),
            store_seconds: StoreOp::ALL
                .map(|op| metrics::histogram!(STORE_SECONDS, "operation" => op.label())),
            store_errors: StoreOp::ALL
                .map(|op| metrics::counter!(STORE_ERRORS, "operation" => op.label())),
            invalidations: ["key", "resync"]
                .map(|kind| metrics::counter!(INVALIDATIONS, "kind" => kind)),
            limiter: [
                "admitted",
                "refused",
                "unreachable_admitted",
                "unreachable_refused",
            ]
            .map(|decision| metrics::counter!(LIMITER_DECISIONS, "decision" => decision)),
        }
    }

    /// Counts one credential check answered `code` (`None`: admitted).
    /// An unknown code (none exists) is not counted.
    pub(crate) fn outcome(&self, code: Option<&str>) {
        let index = match code {
            None => Some(0),
            Some(code) => OUTCOMES.iter().position(|&known| known == code),
        };
        if let Some(counter) = index.and_then(|i| self.outcomes.get(i)) {
            counter.increment(1);
        }
    }

    /// Counts one cache lookup.
    pub(crate) fn cache_lookup(&self, hit: bool) {
        match hit {
            true => self.cache_hit.increment(1),
            false => self.cache_miss.increment(1),
        }
    }

    /// Records how long a store operation started at `started` took, and
    /// whether it failed.
    pub(crate) fn store_op(&self, op: StoreOp, started: Instant, failed: bool) {
        // The handles are registered for every operation; the background
        // ones use `store_op` below.
        let index = op as usize;
        self.store_seconds[index].record(started.elapsed().as_secs_f64());
        if failed {
            self.store_errors[index].increment(1);
        }
    }

    /// Counts a change heard from the store's feed.
    pub(crate) fn invalidation(&self, kind: Invalidation) {
        self.invalidations[kind as usize].increment(1);
    }

    /// Counts a rate-limit decision.
    pub(crate) fn limit_decision(&self, decision: LimitDecision) {
        self.limiter[decision as usize].increment(1);
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

/// Records a store operation of a background task (usage flushes, credit
/// blocks): rare enough to be looked up by name, in the global recorder.
pub(crate) fn store_op(op: StoreOp, started: Instant, failed: bool) {
    metrics::histogram!(STORE_SECONDS, "operation" => op.label())
        .record(started.elapsed().as_secs_f64());
    if failed {
        metrics::counter!(STORE_ERRORS, "operation" => op.label()).increment(1);
    }
}

/// Counts a credit block event (once per block, not per request), in the
/// global recorder.
pub(crate) fn block(event: BlockEvent) {
    let event = match event {
        BlockEvent::Reserved => "reserved",
        BlockEvent::Refused => "refused",
        BlockEvent::Released => "released",
    };
    metrics::counter!(CREDIT_BLOCKS, "event" => event).increment(1);
}

/// Sets `keygate_change_feed_connected` (for the stores' feeds, which run
/// apart from any verifier).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn feed_connected(connected: bool) {
    metrics::gauge!(FEED_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::{OUTCOMES, Telemetry};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn every_outcome_is_its_own_series_and_no_label_is_free_text() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let telemetry = Telemetry::register();
            telemetry.outcome(None);
            telemetry.outcome(Some("rate_limited"));
            telemetry.outcome(Some("rate_limited"));
            telemetry.outcome(Some("no such code"));
            telemetry.cache_lookup(true);
        });
        let snapshot = snapshotter.snapshot().into_hashmap();
        let count = |outcome: &str| {
            snapshot
                .iter()
                .find(|(key, _)| {
                    key.key().name() == super::REQUESTS
                        && key.key().labels().any(|l| l.value() == outcome)
                })
                .map(|(_, (_, _, value))| value)
        };
        assert_eq!(count("ok"), Some(&DebugValue::Counter(1)));
        assert_eq!(count("rate_limited"), Some(&DebugValue::Counter(2)));
        assert_eq!(count("unavailable"), Some(&DebugValue::Counter(0)));
        assert_eq!(count("no such code"), None);
        for key in snapshot.keys() {
            for label in key.key().labels() {
                assert!(
                    label
                        .value()
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "a fixed word, not data: {label:?}"
                );
            }
        }
        assert_eq!(
            snapshot
                .keys()
                .filter(|k| k.key().name() == super::REQUESTS)
                .count(),
            OUTCOMES.len()
        );
    }
}
