//! [`CreditLedger`]: the credits this process reserved from the store, and
//! spends from memory.
//!
//! The store is the authority ([`CreditStore`]): a process takes a
//! **block** of a key's credits with one conditional update and serves
//! requests from it without touching the store again. What a process holds
//! is always already subtracted from the store's balance, so the sum of
//! what every process admits never exceeds what was granted. A graceful
//! stop returns the unused credits ([`CreditLedger::release_all`]); a
//! crash forfeits them — at most one block per key and process.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::credits::Reservation;
use crate::store::{CreditStore, StoreError};
use crate::telemetry::{self, BlockEvent, StoreOp};
use crate::token::KeyId;

/// The most credits one reservation takes beyond what the request needs:
/// what a crash may forfeit, per key and process.
pub(crate) const MAX_BLOCK: u64 = 100;

/// The share of the balance left in the store that one reservation takes
/// at most (1/16): a small balance is reserved one request at a time, so
/// that no process strands credits another one could use.
const BLOCK_SHARE: u64 = 16;

/// How long a balance the store found short is believed short without
/// asking again: requests of an exhausted key cost the store at most one
/// reservation per second and process (credits added meanwhile are seen
/// within that second).
const EXHAUSTED_FOR: time::Duration = time::Duration::SECOND;

/// How many reservations one request makes at most while concurrent
/// requests keep spending what it reserved.
const MAX_ATTEMPTS: usize = 16;

/// Credits of one key held by this process.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Unspent credits, already subtracted from the store's balance.
    available: u64,
    /// The balance's generation they were granted in.
    generation: u64,
    /// The store's balance after the last reservation (to size the next).
    store_remaining: u64,
    /// When the store refills the balance: the block is worthless then.
    next_refill: Option<OffsetDateTime>,
    /// When the store last refused a reservation for lack of credits.
    exhausted_at: Option<OffsetDateTime>,
}

/// Credits taken for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// The key has no credits.
    Unlimited,
    /// `cost` credits were taken, of `generation`; `remaining` is what
    /// this process knows is left (the store's balance and its block).
    Counted { generation: u64, remaining: u64 },
}

/// Why credits could not be taken.
#[derive(Debug)]
pub(crate) enum NotTaken {
    /// The balance is short of the cost: `credits_exhausted`, with the
    /// seconds until the next refill.
    Exhausted { retry_after_secs: Option<u64> },
    /// The store failed or keeps no credits: `unavailable`.
    Unavailable(StoreError),
}

/// How many locks serialize reservations (a key's reservations always
/// take the same one).
const RESERVATION_LOCKS: usize = 64;

/// The blocks of every key this process spends credits of.
#[derive(Debug)]
pub(crate) struct CreditLedger {
    blocks: Mutex<HashMap<KeyId, Block>>,
    /// One reservation of a key at a time in this process, so that its
    /// block is one reservation (concurrent requests that find it short
    /// wait for it instead of reserving blocks of their own).
    reserving: Box<[tokio::sync::Mutex<()>]>,
}

impl Default for CreditLedger {
    fn default() -> CreditLedger {
        CreditLedger {
            blocks: Mutex::default(),
            reserving: (0..RESERVATION_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }
}

impl CreditLedger {
    /// Takes `cost` credits of key `id` from this process's block, at
    /// `now`; `None` when the block is missing, stale or short (then
    /// [`take`](CreditLedger::take) reserves).
    pub(crate) fn take_local(&self, id: KeyId, cost: u64, now: OffsetDateTime) -> Option<Taken> {
        let mut blocks = self.lock();
        let block = blocks.get_mut(&id)?;
        if block.next_refill.is_some_and(|at| now >= at) || block.available < cost {
            return None;
        }
        block.available -= cost;
        Some(Taken::Counted {
            generation: block.generation,
            remaining: block.store_remaining.saturating_add(block.available),
        })
    }

    /// Takes `cost` credits of key `id`: from the block, or after reserving
    /// a new one from `store`.
    pub(crate) async fn take(
        &self,
        store: Option<&dyn CreditStore>,
        id: KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> Result<Taken, NotTaken> {
        if let Some(answer) = self.answer_here(id, cost, now) {
            return answer;
        }
        let Some(store) = store else {
            return Err(NotTaken::Unavailable(StoreError::Backend(
                "the key has credits but the store keeps none".into(),
            )));
        };
        let _one_at_a_time = self.reserving[reservation_lock(id)].lock().await;
        // A reservation made while this one waited may have settled it.
        if let Some(answer) = self.answer_here(id, cost, now) {
            return answer;
        }
        // Requests already holding their credits spend nothing more; a
        // reservation short of the cost (the block was spent meanwhile by
        // requests served from it) tries again with what is missing, a
        // bounded number of times.
        for _ in 0..MAX_ATTEMPTS {
            // What the block still holds counts towards the cost, unless
            // it belongs to a period the store has refilled since.
            let (held, hint) = {
                let blocks = self.lock();
                match blocks.get(&id) {
                    Some(b) if b.next_refill.is_none_or(|at| now < at) => {
                        (b.available, Some(b.store_remaining))
                    }
                    _ => (0, None),
                }
            };
            let need = cost - held.min(cost);
            let want = block_size(need, hint);
            let started = Instant::now();
            let reserved = store.reserve(&id, need, want, now).await;
            telemetry::store_op(StoreOp::ReserveCredits, started, reserved.is_err());
            let grant = match reserved {
                Ok(Reservation::Counted(grant)) => grant,
                Ok(_) => return Ok(Taken::Unlimited),
                Err(error) => return Err(NotTaken::Unavailable(error)),
            };
            telemetry::block(match grant.is_refused(need) {
                true => BlockEvent::Refused,
                false => BlockEvent::Reserved,
            });
            let mut blocks = self.lock();
            let block = blocks.entry(id).or_insert(Block {
                available: 0,
                generation: grant.generation,
                store_remaining: grant.remaining,
                next_refill: grant.next_refill,
                exhausted_at: None,
            });
            if block.generation != grant.generation || block.next_refill.is_some_and(|at| now >= at)
            {
                // A refill or a set since: what was held is forfeit.
                block.available = 0;
            }
            block.generation = grant.generation;
            block.store_remaining = grant.remaining;
            block.next_refill = grant.next_refill;
            block.available = block.available.saturating_add(grant.granted);
            if block.available >= cost {
                block.available -= cost;
                return Ok(Taken::Counted {
                    generation: block.generation,
                    remaining: block.store_remaining.saturating_add(block.available),
                });
            }
            if grant.is_refused(need) {
                block.exhausted_at = Some(now);
                return Err(NotTaken::Exhausted {
                    retry_after_secs: grant.next_refill.map(|at| secs_until(now, at)),
                });
            }
        }
        Err(NotTaken::Unavailable(StoreError::Backend(
            "credits kept being spent while this request reserved them".into(),
        )))
    }

    /// What this process can answer without the store: credits from its
    /// block, or a balance it knows is short.
    fn answer_here(
        &self,
        id: KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> Option<Result<Taken, NotTaken>> {
        if let Some(taken) = self.take_local(id, cost, now) {
            return Some(Ok(taken));
        }
        let retry_after_secs = self.known_exhausted(id, cost, now)?;
        Some(Err(NotTaken::Exhausted { retry_after_secs }))
    }

    /// `Some(retry after)` when the store refused a reservation for key
    /// `id` less than [`EXHAUSTED_FOR`] ago and what it had left then, with
    /// this process's block, cannot pay `cost`: refused without asking the
    /// store again.
    fn known_exhausted(&self, id: KeyId, cost: u64, now: OffsetDateTime) -> Option<Option<u64>> {
        let blocks = self.lock();
        let block = blocks.get(&id)?;
        let refused_at = block.exhausted_at?;
        let refilled = block.next_refill.is_some_and(|at| now >= at);
        // What the store had left when it refused, and what is held here.
        let known = block.available.saturating_add(block.store_remaining);
        if refilled || now >= refused_at + EXHAUSTED_FOR || known >= cost {
            return None;
        }
        Some(block.next_refill.map(|at| secs_until(now, at)))
    }

    /// Gives back `cost` credits a request took but did not use (a rate
    /// limit refused it), to this process's block; dropped when the block
    /// has moved on to another generation meanwhile.
    pub(crate) fn refund(&self, id: KeyId, taken: Taken, cost: u64) {
        let Taken::Counted { generation, .. } = taken else {
            return;
        };
        if let Some(block) = self.lock().get_mut(&id)
            && block.generation == generation
        {
            block.available = block.available.saturating_add(cost);
        }
    }

    /// Returns every unused credit to `store` (a graceful stop): how many
    /// were returned. Credits of a generation the store has since left
    /// behind (a refill, a set) are dropped by the store.
    pub(crate) async fn release_all(&self, store: &dyn CreditStore, now: OffsetDateTime) -> u64 {
        let blocks: Vec<(KeyId, Block)> = self.lock().drain().collect();
        let mut returned = 0;
        for (id, block) in blocks {
            if block.available == 0 || block.next_refill.is_some_and(|at| now >= at) {
                continue;
            }
            let started = Instant::now();
            let released = store
                .release(&id, block.available, block.generation, now)
                .await;
            telemetry::store_op(StoreOp::ReleaseCredits, started, released.is_err());
            match released {
                Ok(true) => {
                    telemetry::block(BlockEvent::Released);
                    returned += block.available;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(error = %error.with_causes(), key = %id, credits = block.available,
                        "unused credits could not be returned");
                }
            }
        }
        returned
    }

    /// Credits held in blocks.
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.lock().values().map(|b| b.available).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, Block>> {
        // Every write leaves the map consistent: a panic elsewhere cannot
        // leave half a block.
        self.blocks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reservation lock of key `id`.
fn reservation_lock(id: KeyId) -> usize {
    let hash = id.as_str().bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    hash % RESERVATION_LOCKS
}

/// How many credits to reserve for a request needing `need`: at least
/// `need`, plus up to a sixteenth of what the store had left last time
/// (nothing extra the first time), at most [`MAX_BLOCK`] beyond.
fn block_size(need: u64, store_remaining: Option<u64>) -> u64 {
    let extra = store_remaining.map_or(0, |left| (left / BLOCK_SHARE).min(MAX_BLOCK));
    need.saturating_add(extra)
}

/// Whole seconds from `now` until `at`, rounded up, at least 1.
fn secs_until(now: OffsetDateTime, at: OffsetDateTime) -> u64 {
    let wait = at - now;
    let whole = Duration::try_from(wait).unwrap_or_default();
    let secs = whole.as_secs() + u64::from(whole.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credits::Credits;
    use crate::{KeyStore, Keygate, MemoryStore, NewKey, Pepper};

    async fn key_with(credits: u64) -> (Keygate, KeyId) {
        let keygate = Keygate::builder(MemoryStore::new())
            .pepper(Pepper::insecure_fixed_for_tests())
            .build()
            .unwrap();
        let created = keygate
            .keys()
            .create(NewKey::new("alice", "paid").credits(Credits::new(credits).unwrap()))
            .await
            .unwrap();
        (keygate, created.key.id)
    }

    async fn store_remaining(keygate: &Keygate, id: KeyId) -> u64 {
        let stored = keygate.store().get(&id).await.unwrap().unwrap();
        stored.key.credits.unwrap().remaining()
    }

    #[test]
    fn blocks_grow_with_the_balance_and_never_past_the_maximum() {
        assert_eq!(block_size(1, None), 1, "nothing extra the first time");
        assert_eq!(block_size(1, Some(7)), 1, "a small balance, one at a time");
        assert_eq!(block_size(3, Some(160)), 13);
        assert_eq!(block_size(1, Some(1_000_000)), 1 + MAX_BLOCK);
        assert_eq!(block_size(u64::MAX, Some(u64::MAX)), u64::MAX);
    }

    #[tokio::test]
    async fn credits_are_spent_from_the_block_and_the_rest_returned_on_release() {
        let (keygate, id) = key_with(10_000).await;
        let store = keygate.store().credits();
        let ledger = CreditLedger::default();
        let now = OffsetDateTime::now_utc();
        // The first reservation takes just the cost; the next a block.
        assert!(matches!(
            ledger.take(store, id, 1, now).await,
            Ok(Taken::Counted {
                remaining: 9_999,
                ..
            })
        ));
        assert_eq!(ledger.take_local(id, 1, now), None, "no block yet");
        let taken = ledger.take(store, id, 1, now).await.unwrap();
        assert!(
            matches!(
                taken,
                Taken::Counted {
                    remaining: 9_998,
                    ..
                }
            ),
            "{taken:?}"
        );
        assert_eq!(ledger.held(), MAX_BLOCK);
        assert_eq!(store_remaining(&keygate, id).await, 9_998 - MAX_BLOCK);
        for _ in 0..10 {
            assert!(ledger.take_local(id, 1, now).is_some());
        }
        ledger.refund(id, taken, 1);
        assert_eq!(ledger.held(), MAX_BLOCK - 10 + 1);
        let returned = ledger.release_all(store.unwrap(), now).await;
        assert_eq!(returned, MAX_BLOCK - 9);
        // 2 + 10 − 1 spent.
        assert_eq!(store_remaining(&keygate, id).await, 10_000 - 11);
        assert_eq!(ledger.held(), 0);
    }

    #[tokio::test]
    async fn a_short_balance_is_exhausted_without_taking_anything() {
        let (keygate, id) = key_with(3).await;
        let store = keygate.store().credits();
        let ledger = CreditLedger::default();
        let now = OffsetDateTime::now_utc();
        assert!(ledger.take(store, id, 2, now).await.is_ok());
        let refused = ledger.take(store, id, 2, now).await.unwrap_err();
        assert!(
            matches!(
                refused,
                NotTaken::Exhausted {
                    retry_after_secs: None
                }
            ),
            "{refused:?}"
        );
        assert!(ledger.take(store, id, 1, now).await.is_ok(), "the last one");
        assert!(ledger.take(store, id, 1, now).await.is_err());
        assert_eq!(store_remaining(&keygate, id).await, 0);
    }

    #[tokio::test]
    async fn an_exhausted_balance_is_believed_for_a_second_then_asked_again() {
        use crate::credits::CreditChange;
        let (keygate, id) = key_with(1).await;
        let store = keygate.store().credits();
        let ledger = CreditLedger::default();
        let now = OffsetDateTime::now_utc();
        assert!(ledger.take(store, id, 1, now).await.is_ok());
        assert!(ledger.take(store, id, 1, now).await.is_err());
        // Credits are added, but within the second nobody asks the store.
        store
            .unwrap()
            .adjust(&id, CreditChange::Add(5), now)
            .await
            .unwrap();
        let soon = now + time::Duration::milliseconds(900);
        assert!(
            ledger.take(None, id, 1, soon).await.is_err(),
            "no store call"
        );
        let later = now + time::Duration::SECOND;
        assert!(
            ledger.take(store, id, 1, later).await.is_ok(),
            "asked again"
        );
        assert_eq!(store_remaining(&keygate, id).await, 4);
    }

    #[tokio::test]
    async fn without_a_credit_store_keys_with_credits_fail_closed() {
        let ledger = CreditLedger::default();
        let id = KeyId::parse("AAAAAAAAAAAAAAAA").unwrap();
        let refused = ledger
            .take(None, id, 1, OffsetDateTime::now_utc())
            .await
            .unwrap_err();
        assert!(matches!(refused, NotTaken::Unavailable(_)), "{refused:?}");
    }

    #[test]
    fn the_wait_for_a_refill_is_rounded_up_and_at_least_a_second() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(secs_until(now, now), 1);
        assert_eq!(
            secs_until(now, now + time::Duration::milliseconds(1_500)),
            2
        );
        assert_eq!(secs_until(now, now + time::Duration::hours(1)), 3_600);
    }
}
