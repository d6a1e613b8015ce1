//! The generic cell rate algorithm, exact, in integer time units (the
//! local limiter counts nanoseconds, the Redis one microseconds).
//!
//! A limit of `limit` per `period` has emission interval `T = period /
//! limit` and burst tolerance `period`. A bucket is its theoretical arrival
//! time (TAT); a request of cost `n` at `now` passes when
//! `max(TAT, now) + n·T <= now + period`, and then moves the TAT there. A
//! fresh bucket (TAT <= now) admits exactly `limit` at once, then `limit`
//! per `period`. `T` is rarely a whole number of units, so a TAT is kept as
//! `whole + frac / limit` units: every sum is exact, no float anywhere.

use std::num::NonZeroU64;

use super::outcome::{LimitOutcome, LimitState, LimitStates};
use super::policy::{MAX_RATE_LIMITS, RateLimit};

/// A theoretical arrival time, `whole + frac / limit` units (`frac < limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tat {
    pub(crate) whole: u64,
    pub(crate) frac: u64,
}

impl Tat {
    /// A whole instant.
    pub(crate) fn at(whole: u64) -> Tat {
        Tat { whole, frac: 0 }
    }

    /// The TAT as it reads under a limit of `new` after being kept under a
    /// limit of `old` (the key's limit was changed): rounded up to a whole
    /// unit, at most one unit stricter. The Redis script does the same.
    pub(crate) fn rescaled(self, old: u64, new: u64) -> Tat {
        match (old == new, self.frac) {
            (true, _) | (false, 0) => self,
            (false, _) => Tat::at(self.whole.saturating_add(1)),
        }
    }

    /// This instant, or `now` if it is earlier: a bucket whose TAT has
    /// passed is a fresh one.
    pub(crate) fn or_now(self, now: u64) -> Tat {
        self.max(Tat::at(now))
    }
}

/// One limit in a unit of time: the arithmetic of its bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) limit: u64,
    /// The period in units.
    pub(crate) period: u64,
    units_per_sec: u64,
}

impl Spec {
    pub(crate) fn new(limit: &RateLimit, units_per_sec: u64) -> Spec {
        Spec {
            limit: limit.limit(),
            period: limit.period().as_secs().saturating_mul(units_per_sec),
            units_per_sec,
        }
    }

    /// `cost · T` as a TAT offset; `cost <= limit`, so at most `period`.
    pub(crate) fn increment(&self, cost: u64) -> Tat {
        let cost = cost.min(self.limit);
        // Most limits fit in 64 bits; a 128-bit division costs a call.
        if let (Some(total), Some(limit)) =
            (cost.checked_mul(self.period), NonZeroU64::new(self.limit))
        {
            return Tat {
                whole: total / limit,
                frac: total % limit,
            };
        }
        let total = u128::from(cost) * u128::from(self.period);
        let limit = u128::from(self.limit);
        // Both fit: the quotient is at most `period`, the remainder below `limit`.
        Tat {
            whole: u64::try_from(total / limit).unwrap_or(u64::MAX),
            frac: u64::try_from(total % limit).unwrap_or(0),
        }
    }

    /// `a + b`, carrying the fraction.
    fn add(&self, a: Tat, b: Tat) -> Tat {
        let frac = a.frac + b.frac;
        let carry = u64::from(frac >= self.limit);
        Tat {
            whole: a.whole.saturating_add(b.whole).saturating_add(carry),
            frac: frac - carry * self.limit,
        }
    }

    /// `a - b` in units, rounded up, 0 when `a <= b`.
    fn ceil_units_between(&self, a: Tat, b: Tat) -> u64 {
        if a <= b {
            return 0;
        }
        let borrow = u64::from(a.frac < b.frac);
        let frac = a.frac + borrow * self.limit - b.frac;
        (a.whole - b.whole - borrow) + u64::from(frac > 0)
    }

    fn ceil_secs(&self, units: u64) -> u64 {
        units.div_ceil(self.units_per_sec)
    }

    /// The state of a bucket at `tat` (already at least `now`).
    fn state(&self, limit: &RateLimit, tat: Tat, now: u64) -> LimitState {
        // In units of 1/limit: debt = tat - now, capacity = period.
        // remaining = floor((period - debt) / T), T = period / limit; 0 if
        // a clock went backwards and the debt is above the capacity.
        let ahead = tat.whole.saturating_sub(now);
        let period = NonZeroU64::new(self.period).unwrap_or(NonZeroU64::MIN);
        let narrow = ahead
            .checked_mul(self.limit)
            .and_then(|debt| debt.checked_add(tat.frac))
            .zip(self.period.checked_mul(self.limit));
        let remaining = match narrow {
            // Most limits fit in 64 bits; a 128-bit division costs a call.
            Some((debt, capacity)) => capacity.saturating_sub(debt) / period,
            None => {
                let scale = u128::from(self.limit);
                let debt = u128::from(ahead) * scale + u128::from(tat.frac);
                let capacity = u128::from(self.period) * scale;
                let remaining = capacity.saturating_sub(debt) / u128::from(period.get());
                u64::try_from(remaining).unwrap_or(u64::MAX)
            }
        };
        LimitState {
            name: limit.name(),
            limit: limit.limit(),
            remaining,
            reset_secs: self.ceil_secs(self.ceil_units_between(tat, Tat::at(now))),
            period: limit.period(),
        }
    }
}

/// Decides a request of `cost` (at least 1) at `now` against `limits`
/// whose buckets stand at `tats` (each already [`Tat::or_now`]): admitted
/// only if every bucket has budget, all or nothing. When admitted, `tats`
/// holds the TATs to store; when refused, it is unchanged.
pub(crate) fn evaluate(
    limits: &[RateLimit],
    tats: &mut [Tat],
    now: u64,
    cost: u64,
    units_per_sec: u64,
) -> LimitOutcome {
    let count = limits.len().min(tats.len()).min(MAX_RATE_LIMITS);
    let (limits, tats) = (&limits[..count], &mut tats[..count]);
    // Each bucket's TAT should the request pass.
    let mut candidates = [Tat::at(0); MAX_RATE_LIMITS];
    // The refusal with the longest wait: (index, wait in units, cost too large).
    let mut refusal: Option<(usize, u64, bool)> = None;
    for (index, (limit, &tat)) in limits.iter().zip(tats.iter()).enumerate() {
        let spec = Spec::new(limit, units_per_sec);
        let (wait, too_costly) = if cost > spec.limit {
            (spec.period, true)
        } else {
            let candidate = spec.add(tat, spec.increment(cost));
            candidates[index] = candidate;
            let deadline = Tat::at(now.saturating_add(spec.period));
            // Passes from the instant `candidate - period`.
            (spec.ceil_units_between(candidate, deadline), false)
        };
        let refuses = too_costly || wait > 0;
        if refuses && refusal.is_none_or(|(_, longest, _)| wait > longest) {
            refusal = Some((index, wait, too_costly));
        }
    }
    let state_of =
        |(limit, tat): (&RateLimit, &Tat)| Spec::new(limit, units_per_sec).state(limit, *tat, now);

    match refusal {
        Some((index, wait, cost_exceeds_limit)) => LimitOutcome::Refused {
            limit: limits[index].name(),
            retry_after_secs: Spec::new(&limits[index], units_per_sec)
                .ceil_secs(wait)
                .max(1),
            cost_exceeds_limit,
            refusing: index,
            states: LimitStates::collect(limits.iter().zip(tats.iter()).map(state_of)),
        },
        None => {
            tats.copy_from_slice(&candidates[..count]);
            let states = LimitStates::collect(limits.iter().zip(tats.iter()).map(state_of));
            // Fewest remaining, then the shorter period, then the earlier.
            let tightest = states
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| (s.remaining, s.period))
                .map_or(0, |(index, _)| index);
            LimitOutcome::Admitted { tightest, states }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Spec, Tat, evaluate};
    use crate::limit::outcome::LimitOutcome;
    use crate::limit::period::Period;
    use crate::limit::policy::RateLimit;

    const NS: u64 = 1_000_000_000;

    fn limit(name: &str, n: u64, period: &str) -> RateLimit {
        RateLimit::new(name.parse().unwrap(), n, Period::parse(period).unwrap()).unwrap()
    }

    /// Runs one request against a single stored TAT and stores the result.
    fn hit(limit: &RateLimit, tat: &mut Tat, now: u64, cost: u64) -> LimitOutcome {
        let mut tats = [tat.or_now(now)];
        let outcome = evaluate(std::slice::from_ref(limit), &mut tats, now, cost, NS);
        if outcome.is_allowed() {
            *tat = tats[0];
        }
        outcome
    }

    #[test]
    fn thirds_of_a_second_add_up_exactly() {
        // T = 1s / 3 is not a whole number of nanoseconds.
        let spec = Spec::new(&limit("a", 3, "1s"), NS);
        let third = spec.increment(1);
        assert_eq!(
            third,
            Tat {
                whole: 333_333_333,
                frac: 1
            }
        );
        let whole = spec.add(spec.add(third, third), third);
        assert_eq!(whole, Tat::at(NS));
    }

    #[test]
    fn a_limit_of_three_per_second_admits_three_then_one_per_third() {
        let three = limit("a", 3, "1s");
        let mut tat = Tat::at(0);
        let now = 10 * NS;
        for _ in 0..3 {
            assert!(hit(&three, &mut tat, now, 1).is_allowed());
        }
        assert!(!hit(&three, &mut tat, now, 1).is_allowed());
        // One emission interval later is 333_333_333.33 ns: not yet at ..333, yes at ..334.
        assert!(!hit(&three, &mut tat, now + 333_333_333, 1).is_allowed());
        assert!(hit(&three, &mut tat, now + 333_333_334, 1).is_allowed());
    }

    #[test]
    fn remaining_and_reset_follow_the_bucket() {
        let burst = limit("burst", 20, "1s");
        let mut tat = Tat::at(0);
        let now = 5 * NS;
        let admitted = hit(&burst, &mut tat, now, 13);
        let tightest = admitted.header_state().expect("admitted");
        assert_eq!((tightest.remaining, tightest.reset_secs), (7, 1));
    }

    proptest::proptest! {
        /// The 64-bit shortcuts compute what 128-bit arithmetic does.
        #[test]
        fn narrow_and_wide_arithmetic_agree(
            n in 1u64..=1_000_000_000,
            secs in 1u64..=86_400,
            cost in 1u64..=1_000_000_000,
            ahead_fraction in 0u64..=1_000,
            frac_seed in proptest::prelude::any::<u64>(),
            micros in proptest::prelude::any::<bool>(),
        ) {
            let units = if micros { 1_000_000 } else { NS };
            let rate = limit("p", n, &format!("{secs}s"));
            let spec = Spec::new(&rate, units);
            let cost = cost.min(n);
            let wide = u128::from(cost) * u128::from(spec.period);
            let increment = spec.increment(cost);
            proptest::prop_assert_eq!(u128::from(increment.whole), wide / u128::from(n));
            proptest::prop_assert_eq!(u128::from(increment.frac), wide % u128::from(n));

            let now = 7 * units;
            let tat = Tat {
                whole: now + spec.period / 1_000 * ahead_fraction,
                frac: frac_seed % n,
            };
            let debt = u128::from(tat.whole - now) * u128::from(n) + u128::from(tat.frac);
            let capacity = u128::from(spec.period) * u128::from(n);
            let expected = capacity.saturating_sub(debt) / u128::from(spec.period);
            proptest::prop_assert_eq!(u128::from(spec.state(&rate, tat, now).remaining), expected);
        }
    }

    #[test]
    fn retry_after_is_rounded_up_whole_seconds() {
        let slow = limit("slow", 2, "10s"); // one per 5 s
        let mut tat = Tat::at(0);
        let now = 100 * NS;
        assert!(hit(&slow, &mut tat, now, 2).is_allowed());
        let LimitOutcome::Refused {
            retry_after_secs, ..
        } = hit(&slow, &mut tat, now + NS / 2, 1)
        else {
            panic!("admitted")
        };
        // Passes 5 s after `now`, i.e. 4.5 s from the refused request.
        assert_eq!(retry_after_secs, 5);
        let LimitOutcome::Refused {
            retry_after_secs, ..
        } = hit(&slow, &mut tat, now + 4 * NS + 999_999_999, 1)
        else {
            panic!("admitted")
        };
        assert_eq!(
            retry_after_secs, 1,
            "at least 1 even for a nanosecond's wait"
        );
    }
}
