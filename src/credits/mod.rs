//! Credits: a balance a key spends per request, optionally refilled on a
//! calendar schedule.
//!
//! [`Credits`] is the balance and its [`Refill`]; [`RefillEvery`] does the
//! calendar arithmetic of the refill boundaries (00:00 UTC each day, each
//! Monday, each 1st of the month). What a store does with them lives in
//! `store/` ([`CreditStore`](crate::CreditStore)); the pure bookkeeping the
//! stores share is [`ledger`].
//!
//! # Example
//!
//! ```
//! use keygate::{Credits, Refill, RefillEvery};
//!
//! let credits = Credits::new(5000)?.with_refill(Refill::new(5000, RefillEvery::Month)?);
//! let json = serde_json::to_value(&credits)?;
//! assert_eq!(
//!     json,
//!     serde_json::json!({"remaining": 5000, "refill": {"amount": 5000, "every": "month"}})
//! );
//! assert_eq!(serde_json::from_value::<Credits>(json)?, credits);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod balance;
mod every;
pub(crate) mod ledger;

pub use balance::{
    CreditChange, CreditGrant, Credits, CreditsError, MAX_CREDITS, Refill, Reservation,
};
pub use every::{InvalidRefillEvery, RefillEvery};
