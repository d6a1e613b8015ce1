//! The validation cache: moka, bounded, with per-entry expiry and
//! invalidation by key id that no in-flight load can undo.
//!
//! Entries are keyed by key id (the built-in store validator) or by the
//! token's MAC (custom validators, which see opaque tokens). A positive
//! entry lives at most the positive TTL and never past the key's
//! `expires_at`; a negative entry (unknown id) lives the negative TTL, in a
//! separate, smaller cache, so that a flood of forged well-formed tokens
//! (the checksum is public) cannot evict valid keys.
//! Concurrent misses for one entry share one load.
//!
//! The caches are moka's synchronous ones: a hit needs no future, so the
//! middleware answers cached keys inside `Service::call` and only a miss
//! pays for an asynchronous load (coalesced here, by key, rather than with
//! moka's `try_get_with`, which would block a thread in the sync cache).
//!
//! Invalidation must win against a load that started before it: such a load
//! may have read the old record and insert it after the invalidation. Every
//! entry therefore records the invalidation epoch at which its load began,
//! and a hit is discarded when its key id was invalidated at a later epoch.
//! Those epochs are kept per id in a fixed table that can only err towards
//! distrust (ids sharing a slot share the latest epoch), never forgetting
//! one: custom-validator entries, found by digest, rely on it alone. Such a
//! stale load is not cached and never replaces, nor removes, an entry from
//! a load that began later; and a re-inserted entry gets its own deadline.
//!
//! A wholesale clear (a lost PostgreSQL listener) makes every older entry a
//! miss that is reloaded through the same shared loads, and served as it was
//! only while the store cannot answer.
//!
//! In front of moka, each thread keeps a tiny memo of the valid entries it
//! served repeatedly ([`front`]): a repeated key is found there without touching
//! moka's shared structures, and every invalidation or clear makes all of
//! those memos stale at once.
//!
//! The files, one concern each: `key_cache` (the [`KeyCache`]: lookups,
//! loads, invalidations, clears), `entry` (what it holds: the [`CacheKey`],
//! the [`Record`], the [`Entry`] and its expiry), `flight` (the shared
//! loads), `invalidation` (the marks that invalidations leave), `front`
//! (the per-thread memos) and `config` ([`CacheConfig`]).

mod config;
mod entry;
mod flight;
mod front;
mod invalidation;
mod key_cache;
#[cfg(test)]
mod test_support;

pub(crate) use config::CacheConfig;
pub(crate) use entry::{CacheKey, Entry, Record};
pub(crate) use flight::LoadError;
pub(crate) use key_cache::KeyCache;
