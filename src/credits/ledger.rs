//! The bookkeeping every store keeps beside a key's [`Credits`], and the
//! arithmetic of reserving, returning, adjusting and refilling, written
//! once for every backend: a store loads a [`Ledger`], applies one of
//! these methods inside its transaction (or lock) and writes it back.

use time::OffsetDateTime;

use super::{CreditChange, Credits, MAX_CREDITS};

/// A key's credits as a store holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ledger {
    /// The balance and refill; `None`: unlimited.
    pub(crate) credits: Option<Credits>,
    /// The refill boundary last applied (or, for a balance never refilled
    /// yet, the one before it was set): a refill is due once a later
    /// boundary has passed. `None` without a refill.
    pub(crate) refilled_at: Option<OffsetDateTime>,
    /// Bumped by every refill, set and replacement.
    pub(crate) generation: u64,
}

/// Why [`Ledger::adjust`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdjustError {
    /// `Add` to a key without credits.
    Unlimited,
    /// The balance would exceed [`MAX_CREDITS`].
    TooMany,
}

impl Ledger {
    /// The ledger of credits set at `now`: generation 0, the refill
    /// schedule starting from the current period.
    pub(crate) fn new(credits: Option<Credits>, now: OffsetDateTime) -> Ledger {
        Ledger {
            credits,
            refilled_at: schedule_start(credits, now),
            generation: 0,
        }
    }

    /// Applies a refill due at `now`: sets the balance to the refill's
    /// amount when a boundary passed since the last one applied, and
    /// starts a new generation. Returns whether it did.
    pub(crate) fn refill(&mut self, now: OffsetDateTime) -> bool {
        let Some(credits) = self.credits else {
            return false;
        };
        let Some(refill) = credits.refill() else {
            return false;
        };
        let boundary = refill.every().latest_boundary_at_or_before(now);
        match self.refilled_at {
            Some(at) if boundary <= at => false,
            None => {
                self.refilled_at = Some(boundary);
                false
            }
            Some(_) => {
                self.credits = Some(credits.with_remaining(refill.amount()));
                self.refilled_at = Some(boundary);
                self.generation = self.generation.wrapping_add(1);
                true
            }
        }
    }

    /// The credits as they stand at `now`, a due refill applied (without
    /// writing it).
    pub(crate) fn view(&self, now: OffsetDateTime) -> Option<Credits> {
        let mut copy = *self;
        copy.refill(now);
        copy.credits
    }

    /// When the next refill is due after `now`, if the key has one.
    pub(crate) fn next_refill(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.credits?.refill()?.every().next_boundary_after(now)
    }

    /// Applies a due refill, then takes `need` to `want` credits (as many
    /// as are left) when at least `need` are left, else nothing. Returns
    /// what was granted; `None` for a key without credits.
    pub(crate) fn reserve(&mut self, need: u64, want: u64, now: OffsetDateTime) -> Option<u64> {
        self.refill(now);
        let credits = self.credits?;
        let left = credits.remaining();
        if left < need {
            return Some(0);
        }
        let granted = want.max(need).min(left);
        self.credits = Some(credits.with_remaining(left - granted));
        Some(granted)
    }

    /// Returns `amount` unused credits of a reservation made in
    /// `generation`: added back only when no refill, set or replacement
    /// happened since (else dropped). Returns whether they were added.
    pub(crate) fn release(&mut self, amount: u64, generation: u64, now: OffsetDateTime) -> bool {
        self.refill(now);
        let Some(credits) = self.credits else {
            return false;
        };
        if generation != self.generation {
            return false;
        }
        let back = credits.remaining().saturating_add(amount);
        self.credits = Some(credits.with_remaining(back));
        true
    }

    /// Applies `change` at `now` (after a due refill).
    pub(crate) fn adjust(
        &mut self,
        change: CreditChange,
        now: OffsetDateTime,
    ) -> Result<(), AdjustError> {
        self.refill(now);
        match change {
            CreditChange::Add(n) => {
                let credits = self.credits.ok_or(AdjustError::Unlimited)?;
                let sum = credits
                    .remaining()
                    .checked_add(n)
                    .filter(|sum| *sum <= MAX_CREDITS)
                    .ok_or(AdjustError::TooMany)?;
                self.credits = Some(credits.with_remaining(sum));
            }
            CreditChange::Set(n) => {
                if n > MAX_CREDITS {
                    return Err(AdjustError::TooMany);
                }
                let credits = match self.credits {
                    Some(credits) => credits.with_remaining(n),
                    None => Credits::new(n).map_err(|_| AdjustError::TooMany)?,
                };
                self.credits = Some(credits);
                self.refilled_at = self.refilled_at.or(schedule_start(self.credits, now));
                self.generation = self.generation.wrapping_add(1);
            }
            CreditChange::Replace(credits) => {
                self.credits = credits;
                self.refilled_at = schedule_start(credits, now);
                self.generation = self.generation.wrapping_add(1);
            }
        }
        Ok(())
    }

    /// Rotation: the balance (a due refill applied), refill and generation
    /// move to the successor, returned; this key keeps a balance of 0
    /// without a refill (it draws from its successor from now on), or
    /// stays unlimited.
    pub(crate) fn hand_over(&mut self, now: OffsetDateTime) -> Ledger {
        self.refill(now);
        let moved = *self;
        self.credits = self
            .credits
            .map(|_| Credits::new(0).unwrap_or_else(|_| unreachable!()));
        self.refilled_at = None;
        moved
    }
}

/// The boundary a fresh refill schedule counts from: the current period's.
fn schedule_start(credits: Option<Credits>, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let refill = credits?.refill()?;
    Some(refill.every().latest_boundary_at_or_before(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credits::{Refill, RefillEvery};
    use time::macros::datetime;

    fn monthly(remaining: u64) -> Option<Credits> {
        Some(
            Credits::new(remaining)
                .unwrap()
                .with_refill(Refill::new(50, RefillEvery::Month).unwrap()),
        )
    }

    fn remaining(ledger: &Ledger) -> u64 {
        ledger.credits.unwrap().remaining()
    }

    #[test]
    fn reserve_grants_up_to_want_once_need_is_covered() {
        let now = datetime!(2026-12-03 12:00 UTC);
        let mut ledger = Ledger::new(Some(Credits::new(7).unwrap()), now);
        assert_eq!(ledger.reserve(1, 3, now), Some(3));
        assert_eq!(ledger.reserve(2, 10, now), Some(4));
        assert_eq!(remaining(&ledger), 0);
        assert_eq!(ledger.reserve(1, 1, now), Some(0));
        assert_eq!(ledger.reserve(0, 5, now), Some(0));
        let mut unlimited = Ledger::new(None, now);
        assert_eq!(unlimited.reserve(1, 1, now), None);
    }

    #[test]
    fn a_refill_sets_the_balance_at_the_boundary_and_starts_a_generation() {
        let now = datetime!(2026-12-31 23:59:59 UTC);
        let mut ledger = Ledger::new(monthly(10), now);
        assert_eq!(ledger.reserve(1, 10, now), Some(10));
        assert_eq!(ledger.reserve(1, 1, now), Some(0));
        assert_eq!(
            ledger.next_refill(now),
            Some(datetime!(2027-01-01 0:00 UTC))
        );
        let later = datetime!(2027-01-01 0:00 UTC);
        assert_eq!(ledger.view(later).unwrap().remaining(), 50);
        assert_eq!(remaining(&ledger), 0, "a view writes nothing");
        assert_eq!(ledger.reserve(1, 5, later), Some(5));
        assert_eq!(remaining(&ledger), 45);
        assert_eq!(ledger.generation, 1);
        // Two months later: one refill, not two; the balance is set, not added.
        let much_later = datetime!(2027-03-15 0:00 UTC);
        assert!(ledger.refill(much_later));
        assert!(!ledger.refill(much_later));
        assert_eq!(remaining(&ledger), 50);
        assert_eq!(ledger.generation, 2);
    }

    #[test]
    fn stale_releases_are_dropped() {
        let now = datetime!(2026-12-03 12:00 UTC);
        let mut ledger = Ledger::new(monthly(10), now);
        ledger.reserve(1, 4, now);
        assert!(ledger.release(3, 0, now));
        assert_eq!(remaining(&ledger), 9);
        ledger.adjust(CreditChange::Set(2), now).unwrap();
        assert!(!ledger.release(1, 0, now), "set started a new generation");
        assert_eq!(remaining(&ledger), 2);
        ledger.reserve(1, 2, now);
        let next_month = datetime!(2027-01-02 0:00 UTC);
        assert!(!ledger.release(2, 1, next_month), "refilled meanwhile");
        assert_eq!(remaining(&ledger), 50);
    }

    #[test]
    fn adjust_adds_sets_and_replaces() {
        let now = datetime!(2026-12-03 12:00 UTC);
        let mut ledger = Ledger::new(None, now);
        assert_eq!(
            ledger.adjust(CreditChange::Add(1), now),
            Err(AdjustError::Unlimited)
        );
        ledger.adjust(CreditChange::Set(5), now).unwrap();
        assert_eq!(ledger.credits, Some(Credits::new(5).unwrap()));
        ledger
            .adjust(CreditChange::Add(MAX_CREDITS - 5), now)
            .unwrap();
        assert_eq!(
            ledger.adjust(CreditChange::Add(1), now),
            Err(AdjustError::TooMany)
        );
        assert_eq!(
            ledger.adjust(CreditChange::Set(MAX_CREDITS + 1), now),
            Err(AdjustError::TooMany)
        );
        let generation = ledger.generation;
        ledger
            .adjust(CreditChange::Replace(monthly(3)), now)
            .unwrap();
        assert_eq!(ledger.generation, generation + 1);
        assert_eq!(ledger.refilled_at, Some(datetime!(2026-12-01 0:00 UTC)));
        ledger.adjust(CreditChange::Replace(None), now).unwrap();
        assert_eq!(ledger.credits, None);
        assert_eq!(ledger.refilled_at, None);
    }

    #[test]
    fn hand_over_moves_the_balance_and_leaves_zero() {
        let now = datetime!(2026-12-03 12:00 UTC);
        let mut old = Ledger::new(monthly(10), now);
        old.reserve(1, 3, now);
        let new = old.hand_over(now);
        assert_eq!(new.credits, monthly(7));
        assert_eq!(new.generation, old.generation);
        assert_eq!(old.credits, Some(Credits::new(0).unwrap()));
        assert_eq!(
            old.view(datetime!(2027-06-01 0:00 UTC))
                .unwrap()
                .remaining(),
            0
        );
        let mut unlimited = Ledger::new(None, now);
        assert_eq!(unlimited.hand_over(now).credits, None);
        assert_eq!(unlimited.credits, None);
    }
}
