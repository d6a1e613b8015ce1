//! [`Credits`] and [`Refill`]: a key's balance and its schedule; and what
//! a store answers about them ([`Reservation`]) or is asked to do
//! ([`CreditChange`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::RefillEvery;
use crate::token::KeyId;

/// The largest balance a key may hold, and the largest refill amount:
/// 10¹² credits.
pub const MAX_CREDITS: u64 = 1_000_000_000_000;

/// A key's credits: the balance each request spends (its cost, 1 by
/// default), and optionally a [`Refill`] that sets the balance back to an
/// amount on a calendar schedule. A key without credits is unlimited.
///
/// `remaining` is 0 to [`MAX_CREDITS`]. In JSON:
/// `{"remaining": 5000, "refill": {"amount": 5000, "every": "month"}}`
/// (`"refill": null` or no `refill` at all: never refilled); unknown fields
/// are refused.
///
/// # Example
///
/// ```
/// use keygate::{Credits, MAX_CREDITS, Refill, RefillEvery};
///
/// let credits = Credits::new(100)?.with_refill(Refill::new(100, RefillEvery::Day)?);
/// assert_eq!(credits.remaining(), 100);
/// assert_eq!(credits.refill().map(|r| r.every()), Some(RefillEvery::Day));
///
/// let too_many = Credits::new(MAX_CREDITS + 1).unwrap_err();
/// assert_eq!(too_many.field(), "remaining");
/// # Ok::<(), keygate::CreditsError>(())
/// ```
///
/// ```
/// use keygate::{Credits, Refill, RefillEvery};
///
/// let credits = Credits::new(5000)?.with_refill(Refill::new(5000, RefillEvery::Month)?);
/// assert_eq!(
///     serde_json::to_value(credits).unwrap(),
///     serde_json::json!({"remaining": 5000, "refill": {"amount": 5000, "every": "month"}})
/// );
/// # Ok::<(), keygate::CreditsError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(try_from = "RawCredits")]
pub struct Credits {
    /// Credits left, 0 to 10^12.
    #[cfg_attr(
        feature = "admin",
        schema(minimum = 0, maximum = 1_000_000_000_000_u64, example = 5000)
    )]
    remaining: u64,
    /// When and to what the balance is set back; `null`: never.
    refill: Option<Refill>,
}

/// A refill: at each boundary of `every` (00:00 UTC), the balance is
/// **set** to `amount` — what was left is not carried over.
///
/// `amount` is 1 to [`MAX_CREDITS`]: a refill to 0 would be a key that can
/// never be used, which is what `remaining: 0` without a refill already
/// says.
///
/// # Example
///
/// ```
/// use keygate::{Refill, RefillEvery};
///
/// let refill = Refill::new(5000, RefillEvery::Month)?;
/// assert_eq!((refill.amount(), refill.every()), (5000, RefillEvery::Month));
/// assert_eq!(Refill::new(0, RefillEvery::Day).unwrap_err().field(), "refill.amount");
/// # Ok::<(), keygate::CreditsError>(())
/// ```
///
/// ```
/// use keygate::{Refill, RefillEvery};
///
/// let refill: Refill = serde_json::from_str(r#"{"amount": 100, "every": "week"}"#).unwrap();
/// assert_eq!((refill.amount(), refill.every()), (100, RefillEvery::Week));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(try_from = "RawRefill")]
pub struct Refill {
    /// The balance after each refill, 1 to 10^12.
    #[cfg_attr(
        feature = "admin",
        schema(minimum = 1, maximum = 1_000_000_000_000_u64, example = 5000)
    )]
    amount: u64,
    /// `day` (00:00 UTC), `week` (Monday 00:00 UTC) or `month` (the 1st,
    /// 00:00 UTC).
    every: RefillEvery,
}

/// A value out of the bounds of [`Credits`] or [`Refill`].
///
/// ```
/// use keygate::{Credits, MAX_CREDITS, Refill, RefillEvery};
///
/// assert_eq!(Credits::new(MAX_CREDITS + 1).unwrap_err().field(), "remaining");
/// assert!(Refill::new(0, RefillEvery::Day).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreditsError {
    /// `remaining` above [`MAX_CREDITS`].
    #[error("remaining is {0}, at most 1000000000000 credits are allowed")]
    RemainingTooLarge(u64),
    /// A refill `amount` of 0 or above [`MAX_CREDITS`].
    #[error("refill amount is {0}, it must be from 1 to 1000000000000")]
    AmountOutOfRange(u64),
}

impl CreditsError {
    /// The field at fault, relative to the credits object: `remaining` or
    /// `refill.amount`.
    ///
    /// ```
    /// use keygate::{Credits, MAX_CREDITS};
    ///
    /// assert_eq!(Credits::new(MAX_CREDITS + 1).unwrap_err().field(), "remaining");
    /// ```
    pub fn field(&self) -> &'static str {
        match self {
            CreditsError::RemainingTooLarge(_) => "remaining",
            CreditsError::AmountOutOfRange(_) => "refill.amount",
        }
    }
}

impl Credits {
    /// A balance of `remaining` credits, never refilled.
    ///
    /// # Errors
    ///
    /// [`CreditsError::RemainingTooLarge`] above [`MAX_CREDITS`].
    ///
    /// ```
    /// use keygate::{Credits, MAX_CREDITS};
    ///
    /// assert_eq!(Credits::new(5000)?.remaining(), 5000);
    /// assert!(Credits::new(MAX_CREDITS + 1).is_err());
    /// # Ok::<(), keygate::CreditsError>(())
    /// ```
    pub fn new(remaining: u64) -> Result<Credits, CreditsError> {
        if remaining > MAX_CREDITS {
            return Err(CreditsError::RemainingTooLarge(remaining));
        }
        Ok(Credits {
            remaining,
            refill: None,
        })
    }

    /// The same balance, refilled by `refill` (`None`: never).
    ///
    /// ```
    /// use keygate::{Credits, Refill, RefillEvery};
    ///
    /// let monthly = Credits::new(100)?.with_refill(Refill::new(100, RefillEvery::Month)?);
    /// assert_eq!(monthly.refill().map(|r| r.every()), Some(RefillEvery::Month));
    /// assert_eq!(monthly.with_refill(None).refill(), None);
    /// # Ok::<(), keygate::CreditsError>(())
    /// ```
    #[must_use]
    pub fn with_refill(self, refill: impl Into<Option<Refill>>) -> Credits {
        Credits {
            refill: refill.into(),
            ..self
        }
    }

    /// Credits left.
    ///
    /// ```
    /// use keygate::Credits;
    ///
    /// assert_eq!(Credits::new(7)?.remaining(), 7);
    /// # Ok::<(), keygate::CreditsError>(())
    /// ```
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The refill, if any.
    ///
    /// ```
    /// use keygate::{Credits, Refill, RefillEvery};
    ///
    /// assert_eq!(Credits::new(7)?.refill(), None);
    /// let daily = Credits::new(7)?.with_refill(Refill::new(50, RefillEvery::Day)?);
    /// assert_eq!(daily.refill().map(|r| r.amount()), Some(50));
    /// # Ok::<(), keygate::CreditsError>(())
    /// ```
    pub fn refill(&self) -> Option<Refill> {
        self.refill
    }

    /// The same refill, with `remaining` credits (already bounded).
    pub(crate) fn with_remaining(self, remaining: u64) -> Credits {
        Credits {
            remaining: remaining.min(MAX_CREDITS),
            ..self
        }
    }
}

impl Refill {
    /// Sets the balance to `amount` at each boundary of `every`.
    ///
    /// # Errors
    ///
    /// [`CreditsError::AmountOutOfRange`] for 0 or above [`MAX_CREDITS`].
    ///
    /// ```
    /// use keygate::{Refill, RefillEvery};
    ///
    /// let weekly = Refill::new(500, RefillEvery::Week)?;
    /// assert_eq!((weekly.amount(), weekly.every()), (500, RefillEvery::Week));
    /// assert!(Refill::new(0, RefillEvery::Week).is_err()); // at least 1
    /// # Ok::<(), keygate::CreditsError>(())
    /// ```
    pub fn new(amount: u64, every: RefillEvery) -> Result<Refill, CreditsError> {
        if amount == 0 || amount > MAX_CREDITS {
            return Err(CreditsError::AmountOutOfRange(amount));
        }
        Ok(Refill { amount, every })
    }

    /// The balance after each refill.
    ///
    /// ```
    /// use keygate::{Refill, RefillEvery};
    ///
    /// assert_eq!(Refill::new(500, RefillEvery::Day)?.amount(), 500);
    /// # Ok::<(), keygate::CreditsError>(())
    /// ```
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// How often.
    ///
    /// ```
    /// use keygate::{Refill, RefillEvery};
    ///
    /// assert_eq!(Refill::new(500, RefillEvery::Month)?.every().as_str(), "month");
    /// # Ok::<(), keygate::CreditsError>(())
    /// ```
    pub fn every(&self) -> RefillEvery {
        self.every
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredits {
    remaining: u64,
    #[serde(default)]
    refill: Option<Refill>,
}

impl TryFrom<RawCredits> for Credits {
    type Error = CreditsError;

    fn try_from(raw: RawCredits) -> Result<Credits, CreditsError> {
        Ok(Credits::new(raw.remaining)?.with_refill(raw.refill))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefill {
    amount: u64,
    every: RefillEvery,
}

impl TryFrom<RawRefill> for Refill {
    type Error = CreditsError;

    fn try_from(raw: RawRefill) -> Result<Refill, CreditsError> {
        Refill::new(raw.amount, raw.every)
    }
}

/// What [`CreditStore::reserve`](crate::CreditStore::reserve) answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reservation {
    /// The key has no credits: it is unlimited, nothing was taken.
    Unlimited,
    /// The key has credits: what was granted (possibly nothing).
    Counted(CreditGrant),
}

/// Credits taken from a key's balance by one reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditGrant {
    /// The key whose balance was charged: the one asked for, or its
    /// successor when it was rotated (a rotated key continues its
    /// predecessor's credits).
    pub key: KeyId,
    /// Credits taken: 0 when fewer than the `need` asked for were left,
    /// else from `need` up to `want`, as many as were left.
    pub granted: u64,
    /// The balance after the grant.
    pub remaining: u64,
    /// The balance's generation: bumped by every refill and every set, so
    /// that credits returned from an older generation are dropped. Pass it
    /// back to [`CreditStore::release`](crate::CreditStore::release).
    pub generation: u64,
    /// When the next refill is due, if the key has one.
    pub next_refill: Option<OffsetDateTime>,
}

impl CreditGrant {
    /// Whether the reservation was refused (nothing granted although
    /// something was needed).
    pub fn is_refused(&self, need: u64) -> bool {
        self.granted < need
    }
}

/// A change to a key's credits, for
/// [`CreditStore::adjust`](crate::CreditStore::adjust).
///
/// ```
/// # use keygate::{CreditChange, Credits, Keygate, MemoryStore, NewKey, Pepper};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let id = keygate.keys().create(NewKey::new("alice", "ci")).await?.key.id; // unlimited
/// assert!(keygate.keys().adjust_credits(&id, CreditChange::Add(5)).await.is_err()); // nothing to add to
/// let key = keygate.keys().adjust_credits(&id, CreditChange::Replace(Some(Credits::new(5)?))).await?;
/// assert_eq!(key.credits.map(|c| c.remaining()), Some(5));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreditChange {
    /// Adds to the balance (which must exist and stay at most
    /// [`MAX_CREDITS`]). Outstanding reservations stay valid.
    Add(u64),
    /// Sets the balance, keeping the refill; a key without credits gets
    /// this balance and no refill. Starts a new generation: credits
    /// returned from earlier reservations are dropped.
    Set(u64),
    /// Replaces the credits altogether (`None`: unlimited). Starts a new
    /// generation; the refill schedule starts from the current period.
    Replace(Option<Credits>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_the_documented_shape_and_bounds() {
        let credits: Credits = serde_json::from_str(
            r#"{"remaining": 5000, "refill": {"amount": 5000, "every": "month"}}"#,
        )
        .unwrap();
        assert_eq!(credits.remaining(), 5000);
        assert_eq!(
            credits.refill(),
            Some(Refill::new(5000, RefillEvery::Month).unwrap())
        );
        let plain: Credits = serde_json::from_str(r#"{"remaining": 0}"#).unwrap();
        assert_eq!(
            serde_json::to_value(plain).unwrap(),
            serde_json::json!({"remaining": 0, "refill": null})
        );
        for bad in [
            r#"{"remaining": 1000000000001}"#,
            r#"{"remaining": -1}"#,
            r#"{"remaining": 1.5}"#,
            r#"{}"#,
            r#"{"remaining": 1, "extra": true}"#,
            r#"{"remaining": 1, "refill": {"amount": 0, "every": "day"}}"#,
            r#"{"remaining": 1, "refill": {"amount": 1, "every": "hour"}}"#,
            r#"{"remaining": 1, "refill": {"amount": 1, "every": "day", "at": 0}}"#,
        ] {
            assert!(serde_json::from_str::<Credits>(bad).is_err(), "{bad}");
        }
        assert_eq!(Credits::new(MAX_CREDITS).unwrap().remaining(), MAX_CREDITS);
        assert!(Refill::new(MAX_CREDITS, RefillEvery::Week).is_ok());
        assert_eq!(
            Refill::new(MAX_CREDITS + 1, RefillEvery::Week)
                .unwrap_err()
                .field(),
            "refill.amount"
        );
    }
}
