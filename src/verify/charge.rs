//! [`Charger`]: the last step of the check chain, a request's cost taken
//! from its key's rate limits, and what happens when the limiter cannot be
//! reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::origin::Origin;
use super::rejection::Rejection;
use crate::key::ApiKey;
use crate::limit::{LimitOutcome, LimitRequest, LimitStates, Limiter};
use crate::telemetry::{LimitDecision, Telemetry};

/// The limiter, the policy when it cannot answer, and the count of the
/// times it could not.
#[derive(Debug)]
pub(crate) struct Charger {
    limiter: Limiter,
    /// Refuse (503 `unavailable`) rather than admit when the limiter
    /// cannot be reached.
    fail_closed: bool,
    /// Whether the last round trip failed (so that an outage is warned
    /// about once, and its end once).
    failing: AtomicBool,
    /// Requests the limiter could not count.
    failures: AtomicU64,
    telemetry: Arc<Telemetry>,
}

impl Charger {
    pub(crate) fn new(limiter: Limiter, fail_closed: bool, telemetry: Arc<Telemetry>) -> Charger {
        Charger {
            limiter,
            fail_closed,
            failing: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            telemetry,
        }
    }

    /// Whether a request by `key` from `origin` at `cost` is counted at all:
    /// an inspection, a cost of 0 and a key without rate limits are not.
    pub(crate) fn counts(key: &ApiKey, origin: Origin, cost: u64) -> bool {
        origin != Origin::Inspection && cost > 0 && !key.rate_limits.is_empty()
    }

    /// Whether charging `key` needs a round trip (the buckets are in Redis).
    pub(crate) fn needs_round_trip(&self, key: &ApiKey, origin: Origin, cost: u64) -> bool {
        Charger::counts(key, origin, cost) && !matches!(self.limiter, Limiter::Local(_))
    }

    /// Charges synchronously; `None` when the buckets need a round trip
    /// (see [`needs_round_trip`](Charger::needs_round_trip)).
    pub(crate) fn charge_local(
        &self,
        key: &ApiKey,
        origin: Origin,
        cost: u64,
        now: Instant,
    ) -> Option<Result<LimitOutcome, Declined>> {
        if !Charger::counts(key, origin, cost) {
            return Some(Ok(LimitOutcome::NotCounted));
        }
        let request = LimitRequest::new(key.id, &key.owner, &key.rate_limits).cost(cost);
        let outcome = self.limiter.check_local(&request, now)?;
        Some(self.judge(outcome))
    }

    /// Charges wherever the buckets are. When they cannot be reached the
    /// request is admitted uncounted (warned about, counted in
    /// [`failures`](Charger::failures)), or refused `unavailable` when
    /// failing closed.
    pub(crate) async fn charge(
        &self,
        key: &ApiKey,
        origin: Origin,
        cost: u64,
    ) -> Result<LimitOutcome, Declined> {
        if let Some(answer) = self.charge_local(key, origin, cost, Instant::now()) {
            return answer;
        }
        let request = LimitRequest::new(key.id, &key.owner, &key.rate_limits).cost(cost);
        match self.limiter.check(&request).await {
            Ok(outcome) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limiter reachable again");
                }
                self.judge(outcome)
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %error,
                        fail_closed = self.fail_closed,
                        "rate limiter unreachable: requests are {}",
                        if self.fail_closed { "refused" } else { "admitted uncounted" }
                    );
                } else {
                    tracing::debug!(%error, "rate limiter unreachable");
                }
                if self.fail_closed {
                    self.telemetry
                        .limit_decision(LimitDecision::UnreachableRefused);
                    Err(Declined::Unavailable)
                } else {
                    self.telemetry
                        .limit_decision(LimitDecision::UnreachableAdmitted);
                    Ok(LimitOutcome::NotCounted)
                }
            }
        }
    }

    /// Requests the limiter could not count (admitted uncounted, or refused
    /// when failing closed) since the start.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Why a request was not charged.
#[derive(Debug)]
pub(crate) enum Declined {
    /// A limit lacked budget: `rate_limited`, with every limit's state.
    Limited {
        rejection: Rejection,
        states: Box<LimitStates>,
    },
    /// The limiter could not be reached, failing closed.
    Unavailable,
}

/// A refusal becomes `rate_limited`; anything else goes on.
impl Charger {
    /// The limiter's answer as the check chain's, counted.
    fn judge(&self, outcome: LimitOutcome) -> Result<LimitOutcome, Declined> {
        self.telemetry.limit_decision(match outcome.is_allowed() {
            true => LimitDecision::Admitted,
            false => LimitDecision::Refused,
        });
        judge(outcome)
    }
}

fn judge(outcome: LimitOutcome) -> Result<LimitOutcome, Declined> {
    match outcome {
        LimitOutcome::Refused {
            refusing,
            retry_after_secs,
            states,
            ..
        } => match states.as_slice().get(refusing) {
            Some(&state) => Err(Declined::Limited {
                rejection: Rejection::RateLimited {
                    limit: Box::new(state),
                    retry_after_secs,
                },
                states: Box::new(states),
            }),
            // A refusal names one of its states; were it not so, still refuse.
            None => Err(Declined::Unavailable),
        },
        outcome => Ok(outcome),
    }
}
