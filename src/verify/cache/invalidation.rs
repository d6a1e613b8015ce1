//! The invalidation marks: the latest invalidation epoch of every key id,
//! in a fixed table that errs only towards distrust.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::token::KeyId;

/// Slots of [`Invalidations`] (a power of two): 32 KiB per cache.
const INVALIDATION_SLOTS: usize = 4096;

/// The latest invalidation epoch of every key id, kept in a fixed table
/// that may only err towards distrust: each slot holds the latest epoch of
/// every id that falls in it, so an id is never reported older than it is,
/// at worst newer (an entry of another key in its slot is then read from
/// the store once more). Nothing is ever forgotten, whatever the number of
/// invalidations; a lookup is a hash and one atomic load.
pub(super) struct Invalidations {
    slots: Box<[AtomicU64]>,
}

impl Invalidations {
    pub(super) fn new() -> Invalidations {
        Invalidations {
            slots: (0..INVALIDATION_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The slot of `id`. Ids are random; an id chosen to collide only
    /// costs extra reads, never trust.
    fn slot(&self, id: &KeyId) -> &AtomicU64 {
        let mut word = [0u8; 8];
        for (i, b) in id.as_bytes().iter().enumerate() {
            word[i % 8] ^= b;
        }
        let mixed = u64::from_le_bytes(word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.slots[(mixed >> (64 - INVALIDATION_SLOTS.trailing_zeros())) as usize]
    }

    /// Notes that `id` was invalidated at `epoch`.
    pub(super) fn mark(&self, id: &KeyId, epoch: u64) {
        self.slot(id).fetch_max(epoch, Ordering::AcqRel);
    }

    /// Whether `id` may have been invalidated after `epoch`.
    pub(super) fn since(&self, id: &KeyId, epoch: u64) -> bool {
        self.slot(id).load(Ordering::Acquire) > epoch
    }
}
