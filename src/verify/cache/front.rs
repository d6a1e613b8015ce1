//! A per-thread memo in front of moka.
//!
//! Every thread that authenticates keeps the last few valid entries it was
//! served, one per slot (picked by the entry's key). A repeated key is then
//! answered from the thread's own memory: no hashing into moka's shared
//! table, no entry in its read log, no reference count bumped on its
//! internal nodes — the costs that grow when several worker threads serve
//! the same hot key.
//!
//! A key becomes a memo the second time in a row its slot sees it found in
//! moka: a hot key gets one at once, while keys that come round rarely —
//! many keys taking turns — only leave their id in the slot, without
//! touching any record (with 100 000 keys, dropping the previous memo's
//! record reference costs a cache miss).
//!
//! A memo is only a faster way to reach an answer moka just gave:
//! - it is made only from a fresh, valid entry found in moka;
//! - it carries the cache's *generation*, read before that moka lookup, and
//!   every invalidation and clear bumps the generation once its effects are
//!   complete, so a memo made before an invalidation returned is never used
//!   after it (whatever thread made it);
//! - it carries the entry's deadline (its TTL, capped by the key's
//!   expiry), so it never outlives what moka would have served;
//! - it belongs to one cache instance (a number never reused), so two
//!   `Keygate`s on one thread never see each other's entries.
//!
//! Moka stays the cache of record: capacity, eviction and TTLs are its own.
//! A key moka evicts may still be served from a memo until its deadline; a
//! dropped cache's last few records stay in a thread's slots until they are
//! overwritten or the thread ends (records hold no secret: the stored MAC
//! at most, never a token).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::entry::{CacheKey, Entry};

/// Slots per thread (a power of two).
const SLOTS: usize = 16;

/// One memo.
struct Memo {
    /// The cache instance it belongs to.
    cache: u64,
    key: CacheKey,
    /// The cache's generation before the lookup that found `entry`.
    generation: u64,
    entry: Entry,
}

/// A slot: its memo, and the last key found in moka for it that is not
/// (yet) a memo.
struct Slot {
    memo: Option<Memo>,
    seen: Option<(u64, CacheKey)>,
}

impl Slot {
    const EMPTY: Slot = Slot {
        memo: None,
        seen: None,
    };
}

thread_local! {
    static MEMOS: RefCell<[Slot; SLOTS]> = const { RefCell::new([Slot::EMPTY; SLOTS]) };
}

/// Numbers cache instances; never reused within a process.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// One cache's view of the per-thread memos.
#[derive(Debug)]
pub(super) struct Front {
    instance: u64,
    generation: AtomicU64,
}

impl Front {
    pub(super) fn new() -> Front {
        Front {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
        }
    }

    /// The current generation: read it before looking up an entry that may
    /// become a memo.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes every memo of this cache stale, on every thread. Call it after
    /// an invalidation or clear has taken full effect in the cache itself.
    pub(super) fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// This thread's memo of `key`, if it is still current at `now`.
    pub(super) fn get(&self, key: &CacheKey, now: Instant) -> Option<Entry> {
        let generation = self.generation.load(Ordering::Acquire);
        MEMOS
            .try_with(|memos| {
                let memos = memos.try_borrow().ok()?;
                let memo = memos[index(key)].memo.as_ref()?;
                let current = memo.cache == self.instance
                    && memo.generation == generation
                    && memo.key == *key
                    && now < memo.entry.deadline;
                current.then(|| memo.entry.clone())
            })
            .ok()
            .flatten()
    }

    /// Notes that a fresh, valid `entry` was found for `key` in moka by
    /// this thread, with `generation` read before the lookup: it becomes
    /// the slot's memo if the slot saw the same key last time, or already
    /// holds a (stale) memo of it.
    pub(super) fn put(&self, key: CacheKey, generation: u64, entry: &Entry, now: Instant) {
        if entry.record.is_none() || now >= entry.deadline {
            return;
        }
        // Nothing when the thread is being torn down or (cannot happen: no
        // callback runs under the borrow) the slots are in use.
        let _ = MEMOS.try_with(|memos| {
            let Ok(mut memos) = memos.try_borrow_mut() else {
                return;
            };
            let slot = &mut memos[index(&key)];
            let ours = (self.instance, key);
            let again = slot.seen == Some(ours)
                || slot
                    .memo
                    .as_ref()
                    .is_some_and(|memo| (memo.cache, memo.key) == ours);
            if again {
                slot.seen = None;
                slot.memo = Some(Memo {
                    cache: self.instance,
                    key,
                    generation,
                    entry: entry.clone(),
                });
            } else {
                slot.seen = Some(ours);
            }
        });
    }
}

/// The slot of `key`. Key ids are random and MACs uniform, so a few of
/// their bytes, mixed, spread keys evenly; only valid entries ever become
/// memos, so forged ids cannot push anyone's key out.
fn index(key: &CacheKey) -> usize {
    let bytes: &[u8] = match key {
        CacheKey::Id(id) => id.as_bytes(),
        CacheKey::Digest(mac) => mac,
    };
    // Eight bytes at a time (ids are 16 bytes, MACs 32: no remainder).
    let word = bytes.chunks_exact(8).fold(0u64, |word, chunk| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        word ^ u64::from_le_bytes(eight)
    });
    let mixed = word.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // The top bits of the product are the best mixed.
    (mixed >> (64 - SLOTS.trailing_zeros())) as usize
}
