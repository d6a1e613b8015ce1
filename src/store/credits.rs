//! [`CreditStore`]: the optional ability of a store to keep key credits
//! atomically.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{KeyStore, StoreError};
use crate::credits::{CreditChange, Reservation};
use crate::key::StoredKey;
use crate::token::KeyId;

/// How many `superseded_by` links a reservation follows from the key it
/// names to the key holding the balance. A longer chain is a
/// [`StoreError::Backend`].
pub const MAX_SUCCESSOR_HOPS: usize = 16;

/// A store that is the authority on key credits: it reserves, returns and
/// adjusts them atomically, whatever the number of processes sharing it,
/// so that credits are never overspent.
///
/// Implemented by [`MemoryStore`](crate::MemoryStore) (one lock),
/// [`SqliteStore`](crate::SqliteStore) (`BEGIN IMMEDIATE` transactions) and
/// `PostgresStore` (a row lock, `SELECT … FOR UPDATE`, in the transaction).
/// A store that implements it answers [`KeyStore::credits`] with
/// `Some(self)`, which is how code holding an `Arc<dyn KeyStore>` finds it.
///
/// Rules every implementation follows:
///
/// - **Refills are applied lazily**: every operation first applies a
///   refill that fell due at `now` (the balance is **set** to the refill's
///   amount at the first boundary after the last one applied). `now` is
///   passed in, so the clock can be controlled.
/// - **Rotation continues the credits**: [`KeyStore::rotate`] moves the
///   old key's balance (a due refill applied), refill and generation to
///   the new key inside its transaction; the old key keeps a balance of 0
///   without a refill. Reservations and releases naming a rotated key
///   follow `superseded_by` (at most [`MAX_SUCCESSOR_HOPS`] links, stopping
///   at a key whose successor was deleted) and act on the balance of the
///   key at the end, named in [`CreditGrant::key`](crate::CreditGrant::key).
///   [`adjust`](CreditStore::adjust) acts on the key named, without
///   following.
/// - **Generations**: every refill, [`CreditChange::Set`] and
///   [`CreditChange::Replace`] starts a new generation of the balance;
///   credits released with an older generation are dropped, so a release
///   never adds to a balance that was reset meanwhile.
/// - [`KeyStore::replace`] never writes credits: only these methods (and
///   insert and rotate) do, so a record read before a reservation cannot
///   undo it.
/// - [`adjust`](CreditStore::adjust) is a change of the record: it bumps
///   the revision and `updated_at` and is announced on the store's
///   [`ChangeFeed`](crate::ChangeFeed); reservations and releases that change the
///   balance are announced too, but do not bump the revision.
///
/// # Example
///
/// ```
/// use keygate::{CreditChange, Credits, KeyStore, Keygate, MemoryStore, NewKey, Pepper, Reservation};
/// use time::OffsetDateTime;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let key = keygate.keys().create(NewKey::new("alice", "ci").credits(Credits::new(5)?)).await?.key;
///
/// let store = keygate.store();
/// let credits = store.credits().expect("the memory store keeps credits");
/// let now = OffsetDateTime::now_utc();
/// let Reservation::Counted(grant) = credits.reserve(&key.id, 1, 3, now).await? else {
///     unreachable!("the key has credits")
/// };
/// assert_eq!((grant.granted, grant.remaining), (3, 2));
/// assert!(credits.release(&key.id, 2, grant.generation, now).await?, "2 unused, returned");
/// let record = credits.adjust(&key.id, CreditChange::Add(10), now).await?;
/// assert_eq!(record.key.credits.map(|c| c.remaining()), Some(14));
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait CreditStore: KeyStore {
    /// Takes credits from the balance of key `id` (or of its successor,
    /// when it was rotated), atomically: applies a refill due at `now`,
    /// then, when at least `need` credits are left, grants as many as are
    /// left up to `want` (at least `need`; a `want` below `need` counts as
    /// `need`) and subtracts them; otherwise grants 0 and takes nothing.
    ///
    /// A key without credits answers [`Reservation::Unlimited`].
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id; [`StoreError::Backend`]
    /// for a successor chain longer than [`MAX_SUCCESSOR_HOPS`];
    /// [`StoreError::Unavailable`].
    async fn reserve(
        &self,
        id: &KeyId,
        need: u64,
        want: u64,
        now: OffsetDateTime,
    ) -> Result<Reservation, StoreError>;

    /// Returns `amount` unused credits of a reservation whose grant had
    /// `generation`, to the balance of key `id` (or of its successor).
    /// They are added only while the generation is unchanged — after a
    /// refill, a set or a replacement they are dropped — so a release never
    /// leaves more than the balance would have been without the
    /// reservation, provided `amount` is at most what the reservation
    /// granted and did not use. Returns whether they were added.
    ///
    /// # Errors
    ///
    /// As [`reserve`](CreditStore::reserve).
    async fn release(
        &self,
        id: &KeyId,
        amount: u64,
        generation: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Changes the credits of key `id` itself (no successor is followed),
    /// after applying a refill due at `now`, and returns the record
    /// written (its revision bumped, `updated_at` = `now`).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; [`StoreError::NoCredits`] for
    /// [`CreditChange::Add`] on a key without credits;
    /// [`StoreError::TooManyCredits`] when the balance would exceed
    /// [`MAX_CREDITS`](crate::MAX_CREDITS); [`StoreError::Unavailable`].
    /// Nothing is written on error.
    async fn adjust(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
    ) -> Result<StoredKey, StoreError>;
}

#[async_trait]
impl<T: CreditStore + ?Sized> CreditStore for std::sync::Arc<T> {
    async fn reserve(
        &self,
        id: &KeyId,
        need: u64,
        want: u64,
        now: OffsetDateTime,
    ) -> Result<Reservation, StoreError> {
        (**self).reserve(id, need, want, now).await
    }
    async fn release(
        &self,
        id: &KeyId,
        amount: u64,
        generation: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        (**self).release(id, amount, generation, now).await
    }
    async fn adjust(
        &self,
        id: &KeyId,
        change: CreditChange,
        now: OffsetDateTime,
    ) -> Result<StoredKey, StoreError> {
        (**self).adjust(id, change, now).await
    }
}

/// The store error of a refused [`adjust`](CreditStore::adjust).
pub(crate) fn adjust_error(e: crate::credits::ledger::AdjustError) -> StoreError {
    match e {
        crate::credits::ledger::AdjustError::Unlimited => StoreError::NoCredits,
        crate::credits::ledger::AdjustError::TooMany => StoreError::TooManyCredits,
    }
}

/// The error of a successor chain longer than [`MAX_SUCCESSOR_HOPS`].
pub(crate) fn chain_too_long() -> StoreError {
    StoreError::Backend(
        format!("more than {MAX_SUCCESSOR_HOPS} rotations chained from the key").into(),
    )
}
