//! [`Verifier`]: the one check chain, from a presented credential to an
//! [`AuthenticatedKey`] or a [`Refusal`].

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::authenticated::AuthenticatedKey;
use super::authorized::Authorized;
use super::cache::{CacheConfig, Entry, KeyCache, LoadError, Record};
use super::charge::{Charger, Declined};
use super::credits::{CreditLedger, NotTaken, Taken};
use super::error::{InvalidReason, VerifyError};
use super::feed::{self, Follower};
use super::origin::Origin;
use super::presented::Presented;
use super::refusal::Refusal;
use super::rejection::Rejection;
use super::usage::UsageRecorder;
use super::validator::{KeyValidator, ValidatorFailure};
use crate::limit::Limiter;
use crate::scope::Requirement;
use crate::secret::Pepper;
use crate::store::{Change, KeyStore, StoreError};
use crate::telemetry::{Invalidation, StoreOp, Telemetry};
use crate::token::{Environment, KeyId, TokenFormat};

/// The engine: store, pepper, token format, the validation cache, the
/// optional custom validator, the accepted environments and usage
/// tracking. Every surface — the middleware, forward auth, the proxy, the
/// admin API's `/v1/verify`, `keygate verify` — authorizes through
/// [`authorize`](Verifier::authorize), and only translates its outcome.
///
/// Get it from [`Keygate::verifier`](crate::Keygate::verifier). Cheap to
/// clone (an `Arc` inside); clones share the cache.
///
/// The chain, in order: the token's offline checks (structure, prefix,
/// environment, checksum: it is parsed once); the cache, then on a miss one
/// store read by id (concurrent misses of one key share it); the MAC in
/// constant time (spent even for an unknown id); environment, revocation
/// and expiry; the key's IP lists against the [`Origin`]; usage tracking;
/// the [`Requirement`]; the key's credits and rate limits: the request's
/// cost (1 unless [`authorize_charged`](Verifier::authorize_charged) says
/// otherwise) is taken from the credits and every limit, or from none — a
/// refusal is `credits_exhausted` or `rate_limited`, 429, and takes nothing
/// from the others; an [`Origin::Inspection`] takes nothing. Credits are
/// reserved from the store in blocks and spent from memory (see
/// [`release_credits`](Verifier::release_credits)); a store error while
/// reserving is `unavailable`. The buckets are those of the builder's
/// [`limiter`](crate::KeygateBuilder::limiter) (in this process by
/// default); when it cannot be reached the request is admitted uncounted,
/// or refused `unavailable` with
/// [`limits_fail_closed`](crate::KeygateBuilder::limits_fail_closed).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper, Requirement};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let created = keygate
///     .keys()
///     .create(NewKey::new("alice", "ci").scopes(["workspaces:read"]).ip_allow(["10.0.0.0/8"]))
///     .await?;
/// let token = created.token.expose();
/// let read = Arc::new(Requirement::parse("workspaces:read")?);
///
/// let verifier = keygate.verifier();
/// let from_inside = Origin::Client("10.1.2.3".parse()?);
/// let key = verifier.authorize(token, from_inside, Some(&read)).await?;
/// assert_eq!(key.owner(), "alice");
///
/// let from_outside = Origin::Client("192.0.2.1".parse()?);
/// let refusal = verifier.authorize(token, from_outside, Some(&read)).await.unwrap_err();
/// assert_eq!(refusal.rejection().code(), "ip_not_allowed");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Verifier {
    core: Arc<Core>,
}

/// What a [`Verifier`] holds.
pub(crate) struct Core {
    pub(crate) store: Arc<dyn KeyStore>,
    pub(crate) pepper: Pepper,
    pub(crate) format: TokenFormat,
    pub(crate) cache: KeyCache,
    validator: Option<Arc<dyn KeyValidator>>,
    environments: Vec<Environment>,
    usage: Option<Arc<UsageRecorder>>,
    /// The keys' rate limits: the buckets and the policy when they cannot
    /// be reached.
    charger: Charger,
    /// The credits this process reserved and spends from memory.
    credits: CreditLedger,
    /// The wall clock credits' refills are judged by.
    clock: Clock,
    /// The figures reported through the `metrics` facade.
    pub(crate) telemetry: Arc<Telemetry>,
    /// The task applying the store's change feed to `cache`; set once,
    /// right after construction (it holds this `Core` weakly).
    follower: OnceLock<Follower>,
}

impl Core {
    /// Now, by the wall clock credits are judged by: what the store is
    /// told when it sets, moves or adjusts a balance, so that a refill's
    /// schedule starts where the verifier will look for it.
    pub(crate) fn wall_now(&self) -> time::OffsetDateTime {
        (self.clock)()
    }
}

/// Everything a [`Verifier`] is built from (checked by the builder).
pub(crate) struct Settings {
    pub(crate) store: Arc<dyn KeyStore>,
    pub(crate) pepper: Pepper,
    pub(crate) format: TokenFormat,
    pub(crate) cache: CacheConfig,
    pub(crate) validator: Option<Arc<dyn KeyValidator>>,
    pub(crate) environments: Vec<Environment>,
    pub(crate) usage_interval: Option<Duration>,
    pub(crate) changes: feed::Source,
    pub(crate) limiter: Limiter,
    pub(crate) limits_fail_closed: bool,
    pub(crate) clock: Clock,
}

/// The wall clock (UTC) of credit refills: `OffsetDateTime::now_utc`
/// unless a test gives another.
pub(crate) type Clock = Arc<dyn Fn() -> time::OffsetDateTime + Send + Sync>;

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let core = &self.core;
        f.debug_struct("Verifier")
            .field("pepper", &core.pepper)
            .field("format", &core.format)
            .field("cache", &core.cache)
            .field("custom_validator", &core.validator.is_some())
            .field("environments", &core.environments)
            .field("limiter", &core.charger)
            .field("follows_changes", &core.follower.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier, following the store's changes as `settings.changes`
    /// says.
    pub(crate) fn new(settings: Settings) -> Verifier {
        let telemetry = Arc::new(Telemetry::register());
        let usage = settings
            .usage_interval
            .map(|interval| UsageRecorder::new(settings.store.clone(), interval));
        let verifier = Verifier {
            core: Arc::new(Core {
                store: settings.store,
                pepper: settings.pepper,
                format: settings.format,
                cache: KeyCache::new(settings.cache),
                validator: settings.validator,
                environments: settings.environments,
                usage,
                charger: Charger::new(
                    settings.limiter,
                    settings.limits_fail_closed,
                    telemetry.clone(),
                ),
                credits: CreditLedger::default(),
                clock: settings.clock,
                telemetry,
                follower: OnceLock::new(),
            }),
        };
        // Weakly: the follower lives in `Core` and stops when it drops.
        let weak = Arc::downgrade(&verifier.core);
        let apply = move |change| {
            let Some(core) = weak.upgrade() else {
                return false;
            };
            match change {
                Change::Key(id) => {
                    core.telemetry.invalidation(Invalidation::Key);
                    core.cache.invalidate(id);
                }
                Change::Resync => {
                    core.telemetry.invalidation(Invalidation::Resync);
                    core.cache.clear();
                }
            }
            true
        };
        if let Some(follower) = feed::follow(settings.changes, &*verifier.core.store, apply) {
            let _ = verifier.core.follower.set(follower);
        }
        verifier
    }

    /// What the verifier holds, for key management.
    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    /// The store behind this verifier.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// keygate.verifier().store().ping().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.core.store
    }

    /// The token format (prefix) in use.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// assert_eq!(keygate.verifier().token_format().prefix(), "kg");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn token_format(&self) -> &TokenFormat {
        &self.core.format
    }

    /// Authorizes a credential presented from `origin` for `requirement`
    /// (`None`: any valid key): the whole chain described on [`Verifier`].
    ///
    /// # Errors
    ///
    /// A [`Refusal`] whose [`rejection`](Refusal::rejection) is the answer:
    /// `invalid_token` (with the precise reason for logs),
    /// `ip_not_allowed`, `insufficient_scope` (both with the key), or
    /// `unavailable` when the store fails and the key is not cached.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use keygate::{Keygate, MemoryStore, NewKey, Origin, Pepper, Requirement};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").scopes(["reports:read"]).ip_allow(["192.0.2.0/24"])).await?;
    /// let token = created.token.expose();
    /// let read = Arc::new(Requirement::parse("reports:read")?);
    /// let inside = Origin::Client("192.0.2.7".parse()?);
    /// assert_eq!(keygate.verifier().authorize(token, inside, Some(&read)).await?.owner(), "alice");
    /// let refused = keygate.verifier().authorize(token, Origin::Unknown, Some(&read)).await.unwrap_err();
    /// assert_eq!(refused.rejection().code(), "ip_not_allowed"); // no address: fails closed
    /// # Ok(())
    /// # }
    /// ```
    pub async fn authorize(
        &self,
        token: &str,
        origin: Origin,
        requirement: Option<&Arc<Requirement>>,
    ) -> Result<AuthenticatedKey, Refusal> {
        self.authorize_charged(token, origin, requirement, 1)
            .await
            .map(Authorized::into_key)
    }

    /// [`authorize`](Verifier::authorize) for a request of `cost` units (0:
    /// not counted), answering every rate limit's state as well.
    ///
    /// # Errors
    ///
    /// As [`authorize`](Verifier::authorize), plus `credits_exhausted`
    /// (429) when the key's credits are short of `cost`, `rate_limited`
    /// (429) when a limit lacks budget for it, and `unavailable` when the
    /// credits cannot be reserved (a store error) or the limiter cannot be
    /// reached and the verifier fails closed.
    ///
    /// ```
    /// use keygate::{Credits, Keygate, MemoryStore, NewKey, Origin, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").credits(Credits::new(10)?)).await?;
    /// let client = Origin::Client("192.0.2.1".parse()?);
    /// let answer = keygate.verifier().authorize_charged(created.token.expose(), client, None, 8).await?;
    /// assert_eq!(answer.credits_remaining(), Some(2));
    /// let short = keygate.verifier().authorize_charged(created.token.expose(), client, None, 8).await.unwrap_err();
    /// assert_eq!(short.rejection().code(), "credits_exhausted");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn authorize_charged(
        &self,
        token: &str,
        origin: Origin,
        requirement: Option<&Arc<Requirement>>,
        cost: u64,
    ) -> Result<Authorized, Refusal> {
        let now = Instant::now();
        let answer = async {
            let presented = self.present(token).map_err(invalid)?;
            let entry = match self.lookup(&presented, now) {
                Some(entry) => entry,
                None => self.load(token, &presented).await.map_err(refused)?,
            };
            let key = self.judge(token, &presented, entry).map_err(refused)?;
            self.admit(key, origin, requirement, cost, now).await
        }
        .await;
        self.count(&answer);
        answer
    }

    /// The cache entry of `presented`, if cached; counted as a hit or a
    /// miss.
    fn lookup(&self, presented: &Presented, now: Instant) -> Option<Entry> {
        let entry = self.core.cache.lookup(&presented.cache_key(), now);
        self.core.telemetry.cache_lookup(entry.is_some());
        entry
    }

    /// Counts a check's answer in `keygate_requests_total`.
    fn count<T>(&self, answer: &Result<T, Refusal>) {
        let code = answer.as_ref().err().map(|r| r.rejection().code());
        self.core.telemetry.outcome(code);
    }

    /// Counts a refusal a surface decided outside the authorize paths (no
    /// credential, two that disagree, a malformed path, a token the
    /// middleware's own `present` refused).
    pub(crate) fn count_refusal(&self, rejection: &Rejection) {
        self.core.telemetry.outcome(Some(rejection.code()));
    }

    /// [`authorize`](Verifier::authorize) without waiting, for a token
    /// [`present`](Verifier::present) accepted: `None` when the answer
    /// needs the store, the validator or a limiter's round trip. Whatever
    /// the cache and this process can answer is answered here, so the
    /// middleware needs no future for it.
    pub(crate) fn authorize_cached(
        &self,
        token: &str,
        presented: &Presented,
        origin: Origin,
        requirement: Option<&Arc<Requirement>>,
        cost: u64,
        now: Instant,
    ) -> Option<Result<AuthenticatedKey, Refusal>> {
        let answer = self.answer_cached(token, presented, origin, requirement, cost, now)?;
        self.count(&answer);
        Some(answer)
    }

    /// [`authorize_cached`](Verifier::authorize_cached), uncounted.
    fn answer_cached(
        &self,
        token: &str,
        presented: &Presented,
        origin: Origin,
        requirement: Option<&Arc<Requirement>>,
        cost: u64,
        now: Instant,
    ) -> Option<Result<AuthenticatedKey, Refusal>> {
        let entry = self.lookup(presented, now)?;
        let key = match self.judge(token, presented, entry) {
            Ok(key) => key,
            Err(error) => return Some(Err(refused(error))),
        };
        if self
            .core
            .charger
            .needs_round_trip(key.record(), origin, cost)
        {
            // Nothing checked or recorded yet: the future does it all.
            return None;
        }
        let key = match self.gate(key, origin, requirement, now) {
            Ok(key) => key,
            Err(refusal) => return Some(Err(refusal)),
        };
        let spends_credits = counts_credits(key.record(), origin, cost);
        if !spends_credits && !Charger::counts(key.record(), origin, cost) {
            // Nothing to charge: the common case, kept short.
            return Some(Ok(key));
        }
        let taken = if spends_credits {
            // Only what this process already holds: a reservation waits.
            let now_utc = (self.core.clock)();
            Some(
                self.core
                    .credits
                    .take_local(key.record().id, cost, now_utc)?,
            )
        } else {
            None
        };
        let charged = match self
            .core
            .charger
            .charge_local(key.record(), origin, cost, now)
        {
            Some(charged) => charged,
            None => {
                self.refund(&key, taken, cost);
                return None;
            }
        };
        // Only the tightest limit is kept (with the key): no `Authorized`.
        Some(match charged {
            Ok(outcome) => Ok(key.with_limit(outcome.header_state().copied())),
            Err(declined) => {
                self.refund(&key, taken, cost);
                Err(refusal(declined, key))
            }
        })
    }

    /// [`authorize`](Verifier::authorize) for a token that
    /// [`authorize_cached`](Verifier::authorize_cached) just could not
    /// answer: neither parsed nor looked up a second time, straight to the
    /// load (which still finds an entry another request cached meanwhile).
    pub(crate) async fn authorize_missed(
        &self,
        token: &str,
        presented: Presented,
        origin: Origin,
        requirement: Option<&Arc<Requirement>>,
        cost: u64,
    ) -> Result<AuthenticatedKey, Refusal> {
        let answer = async {
            let entry = self.load(token, &presented).await.map_err(refused)?;
            let key = self.judge(token, &presented, entry).map_err(refused)?;
            self.admit(key, origin, requirement, cost, Instant::now())
                .await
                .map(Authorized::into_key)
        }
        .await;
        self.count(&answer);
        answer
    }

    /// Verifies a token alone: the chain of [`authorize`](Verifier::authorize)
    /// up to the key's status, without IP lists, scopes or usage tracking.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Invalid`] with the precise reason, or
    /// [`VerifyError::Unavailable`] when the store fails and the key is not
    /// cached.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").ip_allow(["192.0.2.0/24"])).await?;
    /// // No IP lists, scopes or usage: the token alone.
    /// assert!(keygate.verifier().verify(created.token.expose()).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn verify(&self, token: &str) -> Result<AuthenticatedKey, VerifyError> {
        let presented = self.present(token).map_err(VerifyError::Invalid)?;
        // This thread's memo or moka, before anything that may wait.
        let entry = match self.lookup(&presented, Instant::now()) {
            Some(entry) => entry,
            None => self.load(token, &presented).await?,
        };
        self.judge(token, &presented, entry)
    }

    /// The offline checks of `token` (its one parse).
    pub(crate) fn present(&self, token: &str) -> Result<Presented, InvalidReason> {
        let core = &self.core;
        Presented::check(token, &core.format, &core.pepper, core.validator.is_some())
    }

    /// `kg_live_<id>` of a presented keygate token: safe to log.
    pub(crate) fn display_prefix(&self, presented: &Presented) -> Option<String> {
        match presented {
            Presented::Stored { id, environment } => {
                Some(self.core.format.display_prefix(*environment, *id))
            }
            Presented::Custom { .. } => None,
        }
    }

    /// The cache entry: from the cache, or after asking the store or the
    /// validator (one load shared by concurrent misses of the same entry).
    async fn load(&self, token: &str, presented: &Presented) -> Result<Entry, VerifyError> {
        let core = &self.core;
        let cache_key = presented.cache_key();
        let loaded = match (presented, &core.validator) {
            (Presented::Stored { id, .. }, _) => {
                let id = *id;
                core.cache
                    .get_or_load(cache_key, || async move {
                        let started = Instant::now();
                        let stored = core.store.get(&id).await;
                        core.telemetry
                            .store_op(StoreOp::Get, started, stored.is_err());
                        let stored = stored?;
                        Ok::<_, StoreError>(
                            stored
                                .map(|stored| Arc::new(Record::new(stored.key, Some(stored.mac)))),
                        )
                    })
                    .await
            }
            (Presented::Custom { .. }, Some(validator)) => {
                core.cache
                    .get_or_load(cache_key, || async move {
                        let key = validator.validate(token).await.map_err(ValidatorFailure)?;
                        Ok::<_, ValidatorFailure>(key.map(|key| Arc::new(Record::new(key, None))))
                    })
                    .await
            }
            (Presented::Custom { .. }, None) => {
                unreachable!("opaque tokens are presented only with a custom validator")
            }
        };
        loaded.map_err(|e| {
            VerifyError::Unavailable(StoreError::Unavailable(Box::new(SharedError(e))))
        })
    }

    /// The verdict on a presented token given its cache entry: the MAC in
    /// constant time, the environment, revocation and expiry.
    fn judge(
        &self,
        token: &str,
        presented: &Presented,
        entry: Entry,
    ) -> Result<AuthenticatedKey, VerifyError> {
        let pepper = &self.core.pepper;
        let Some(record) = entry.record else {
            if let Presented::Stored { .. } = presented {
                // Spend the same MAC as a known id would, so timing does not
                // tell unknown ids from wrong secrets.
                std::hint::black_box(pepper.verify(token, &[0u8; 32]));
            }
            return Err(VerifyError::Invalid(InvalidReason::UnknownId));
        };
        if let Presented::Stored { environment, .. } = presented {
            let mac = record.mac.unwrap_or([0u8; 32]);
            if !pepper.verify(token, &mac) {
                return Err(VerifyError::Invalid(InvalidReason::WrongSecret));
            }
            if record.key.environment != *environment {
                return Err(VerifyError::Invalid(InvalidReason::WrongEnvironment));
            }
        }
        self.check_usable(&record)?;
        Ok(AuthenticatedKey::new(record))
    }

    /// Environment, revocation and expiry, at the current instant (never
    /// trusting how long the record has been cached): what
    /// [`ApiKey::status_at`](crate::ApiKey::status_at) decides, with the
    /// expiry already converted to the system clock's type so that the
    /// check costs one read of the system clock (none for a key that never
    /// expires) and no calendar arithmetic.
    fn check_usable(&self, record: &Record) -> Result<(), VerifyError> {
        let key = &record.key;
        if !self.core.environments.contains(&key.environment) {
            return Err(VerifyError::Invalid(InvalidReason::WrongEnvironment));
        }
        if key.revoked_at.is_some() {
            return Err(VerifyError::Invalid(InvalidReason::Revoked));
        }
        // A key that cannot expire needs no clock.
        match record.expiry {
            Some(expiry) if SystemTime::now() >= expiry => {
                Err(VerifyError::Invalid(InvalidReason::Expired))
            }
            _ => Ok(()),
        }
    }

    /// The checks after verification (at `now`): [`gate`](Verifier::gate),
    /// then the request's `cost` taken from the key's credits and rate
    /// limits, all or nothing.
    async fn admit(
        &self,
        key: AuthenticatedKey,
        origin: Origin,
        requirement: Option<&Arc<Requirement>>,
        cost: u64,
        now: Instant,
    ) -> Result<Authorized, Refusal> {
        let key = self.gate(key, origin, requirement, now)?;
        let core = &self.core;
        let taken = if counts_credits(key.record(), origin, cost) {
            let taken = core
                .credits
                .take(core.store.credits(), key.record().id, cost, (core.clock)())
                .await;
            match taken {
                Ok(taken) => Some(taken),
                Err(NotTaken::Exhausted { retry_after_secs }) => {
                    return Err(Refusal::of_key(
                        Rejection::CreditsExhausted { retry_after_secs },
                        key,
                    ));
                }
                Err(NotTaken::Unavailable(error)) => {
                    tracing::warn!(error = %error.with_causes(), "credits unavailable");
                    return Err(Refusal::unavailable(error));
                }
            }
        } else {
            None
        };
        let charged = core.charger.charge(key.record(), origin, cost).await;
        self.settle(key, taken, cost, charged)
    }

    /// The key with its charge; or, when a rate limit refused (or could not
    /// be reached, failing closed), the refusal — and the credits taken for
    /// the request go back.
    fn settle(
        &self,
        key: AuthenticatedKey,
        taken: Option<Taken>,
        cost: u64,
        charged: Result<crate::limit::LimitOutcome, Declined>,
    ) -> Result<Authorized, Refusal> {
        let credits_remaining = match taken {
            Some(Taken::Counted { remaining, .. }) => Some(remaining),
            _ => None,
        };
        match charged {
            Ok(outcome) => Ok(Authorized::new(key, outcome, credits_remaining)),
            Err(declined) => {
                self.refund(&key, taken, cost);
                Err(refusal(declined, key))
            }
        }
    }

    /// Gives back the credits a request took, when it took some.
    fn refund(&self, key: &AuthenticatedKey, taken: Option<Taken>, cost: u64) {
        if let Some(taken) = taken {
            self.core.credits.refund(key.record().id, taken, cost);
        }
    }

    /// Returns the credits this process reserved and did not spend to the
    /// store, for a graceful stop (`keygate serve` does it on SIGTERM):
    /// how many were returned. Until then, each process holds at most one
    /// block per key (the request's cost plus up to a sixteenth of the
    /// balance left, at most 100): what a crash may forfeit.
    ///
    /// ```
    /// use keygate::{Credits, Keygate, MemoryStore, NewKey, Origin, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").credits(Credits::new(1000)?)).await?;
    /// let client = Origin::Client("192.0.2.1".parse()?);
    /// keygate.verifier().authorize_charged(created.token.expose(), client, None, 1).await?;
    /// // What this instance reserved beyond that request goes back to the
    /// // store (at most one block: 100 beyond the request's cost).
    /// let returned = keygate.verifier().release_credits().await;
    /// assert!(returned <= 100);
    /// let record = keygate.keys().get(&created.key.id).await?;
    /// assert_eq!(record.credits.map(|c| c.remaining()), Some(999));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn release_credits(&self) -> u64 {
        let Some(store) = self.core.store.credits() else {
            return 0;
        };
        self.core
            .credits
            .release_all(store, (self.core.clock)())
            .await
    }

    /// The checks between verification and the limits (at `now`): the
    /// key's IP lists, usage tracking and the requirement (an
    /// [`Origin::Inspection`] skips the first two).
    fn gate(
        &self,
        key: AuthenticatedKey,
        origin: Origin,
        requirement: Option<&Arc<Requirement>>,
        now: Instant,
    ) -> Result<AuthenticatedKey, Refusal> {
        if origin != Origin::Inspection {
            if !ip_allowed(&key, origin) {
                return Err(Refusal::of_key(Rejection::IpNotAllowed, key));
            }
            if let Some(usage) = &self.core.usage {
                let record = key.cached();
                usage.record(record.key.id, &record.noted, origin.ip(), now);
            }
        }
        if let Some(required) = requirement
            && !key.scopes().satisfies(required)
        {
            return Err(Refusal::of_key(
                Rejection::InsufficientScope(required.clone()),
                key,
            ));
        }
        Ok(key)
    }

    /// Requests the rate limiter could not count since the verifier was
    /// built: admitted uncounted, or refused `unavailable` when failing
    /// closed (always 0 for the in-process limiter).
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// assert_eq!(keygate.verifier().limiter_failures(), 0); // the local limiter never fails
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn limiter_failures(&self) -> u64 {
        self.core.charger.failures()
    }

    /// Drops the cached entries of key `id` at once.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.verify(created.token.expose()).await?;
    /// keygate.verifier().invalidate(created.key.id);
    /// assert_eq!(keygate.verifier().cached_entries(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn invalidate(&self, id: KeyId) {
        self.core.cache.invalidate(id);
    }

    /// Distrusts every cached entry (see
    /// [`Keygate::invalidate_all`](crate::Keygate::invalidate_all)).
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.verify(created.token.expose()).await?;
    /// keygate.verifier().invalidate_all(); // distrusted: read again on next use
    /// assert!(keygate.verify(created.token.expose()).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn invalidate_all(&self) {
        self.core.cache.clear();
    }

    /// Writes pending usage now; returns how many keys were written.
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// assert_eq!(keygate.verifier().flush_usage().await, 0); // nothing used yet
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flush_usage(&self) -> usize {
        match &self.core.usage {
            Some(usage) => usage.flush().await,
            None => 0,
        }
    }

    /// Entries in the validation cache (after pending maintenance).
    ///
    /// ```
    /// use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.verify(created.token.expose()).await?;
    /// assert_eq!(keygate.verifier().cached_entries(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn cached_entries(&self) -> u64 {
        self.core.cache.run_pending_tasks();
        self.core.cache.entry_count()
    }
}

/// Whether `key` may be used from `origin`. A key with IP lists and an
/// unknown client address fails closed.
fn ip_allowed(key: &AuthenticatedKey, origin: Origin) -> bool {
    let record = key.record();
    if record.ip_allow.is_empty() && record.ip_deny.is_empty() {
        return true;
    }
    match origin.ip() {
        Some(ip) => record.allows_ip(ip),
        None => {
            warn_no_client_address(record.id);
            false
        }
    }
}

/// Unix seconds of the last warning of [`warn_no_client_address`].
static LAST_NO_ADDRESS_WARNING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A key with IP lists met a request without a client address: refused
/// (fail closed), and almost always a server set up without one. Warned at
/// most once a minute, logged at debug level in between.
fn warn_no_client_address(id: KeyId) {
    use std::sync::atomic::Ordering;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_NO_ADDRESS_WARNING.load(Ordering::Relaxed);
    let due = now >= last.saturating_add(60)
        && LAST_NO_ADDRESS_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
    if due {
        tracing::warn!(key_id = %id, "{NO_CLIENT_ADDRESS}");
    } else {
        tracing::debug!(key_id = %id, "{NO_CLIENT_ADDRESS}");
    }
}

/// What [`warn_no_client_address`] says.
const NO_CLIENT_ADDRESS: &str = "refused a key with IP lists: the request carries no client \
    address. With axum, serve with `into_make_service_with_connect_info::<SocketAddr>()`; with \
    hyper, insert `keygate::PeerAddr` into the request's extensions; behind a proxy, list it \
    with `trusted_proxies` so its forwarding header is read";

/// The refusal of a request the limits declined.
fn refusal(declined: Declined, key: AuthenticatedKey) -> Refusal {
    match declined {
        Declined::Limited { rejection, states } => {
            Refusal::of_key(rejection, key).with_limits(states)
        }
        Declined::Unavailable => Refusal::of_key(Rejection::Unavailable, key),
    }
}

/// Whether a request by `key` from `origin` at `cost` spends credits: an
/// inspection, a cost of 0 and a key without credits do not.
fn counts_credits(key: &crate::key::ApiKey, origin: Origin, cost: u64) -> bool {
    origin != Origin::Inspection && cost > 0 && key.credits.is_some()
}

/// An offline refusal.
fn invalid(reason: InvalidReason) -> Refusal {
    Refusal::new(Rejection::InvalidToken(reason))
}

/// The refusal of a failed verification.
fn refused(error: VerifyError) -> Refusal {
    match error {
        VerifyError::Invalid(reason) => invalid(reason),
        VerifyError::Unavailable(error) => {
            tracing::warn!(error = %error.with_causes(), "key store unavailable");
            Refusal::unavailable(error)
        }
    }
}

/// An error shared between every waiter of one cache load.
#[derive(Debug)]
struct SharedError(LoadError);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::{ApiKey, Keygate, MemoryStore, NewKey};

    fn keygate() -> Keygate {
        Keygate::builder(MemoryStore::new())
            .pepper(Pepper::insecure_fixed_for_tests())
            .build()
            .unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    async fn restricted(keygate: &Keygate) -> String {
        let new = NewKey::new("alice", "ci")
            .scopes(["a:read"])
            .ip_allow(["10.0.0.0/8"]);
        let created = keygate.keys().create(new).await.unwrap();
        created.token.expose().to_owned()
    }

    #[tokio::test]
    async fn ip_lists_are_checked_against_the_origin_and_fail_closed_without_one() {
        let keygate = keygate();
        let token = restricted(&keygate).await;
        let verifier = keygate.verifier();
        let inside = Origin::Client(ip("10.0.0.1"));
        assert_eq!(
            verifier
                .authorize(&token, inside, None)
                .await
                .unwrap()
                .owner(),
            "alice"
        );
        for origin in [Origin::Client(ip("192.0.2.1")), Origin::Unknown] {
            let refusal = verifier.authorize(&token, origin, None).await.unwrap_err();
            assert_eq!(refusal.rejection(), &Rejection::IpNotAllowed, "{origin:?}");
            assert_eq!(refusal.key().map(AuthenticatedKey::owner), Some("alice"));
        }
    }

    /// A key of alice's with `limits` (set on the stored record: the same
    /// record every store hands back).
    async fn limited(keygate: &Keygate, limits: &str) -> String {
        let created = keygate
            .keys()
            .create(NewKey::new("alice", "limited").scopes(["a:read"]))
            .await
            .unwrap();
        let store = keygate.verifier().store().clone();
        let mut stored = store.get(&created.key.id).await.unwrap().unwrap();
        stored.key.rate_limits = serde_json::from_str(limits).unwrap();
        store.replace(&stored, crate::key::now()).await.unwrap();
        keygate.verifier().invalidate(created.key.id);
        created.token.expose().to_owned()
    }

    #[tokio::test]
    async fn a_rate_limit_refuses_past_its_budget_with_the_wait_and_the_key() {
        let keygate = keygate();
        let token = limited(
            &keygate,
            r#"[{"name": "hourly", "limit": 2, "period": "1h"}]"#,
        )
        .await;
        let verifier = keygate.verifier();
        let origin = Origin::Client(ip("10.0.0.1"));
        for _ in 0..2 {
            verifier.authorize(&token, origin, None).await.unwrap();
        }
        let refusal = verifier.authorize(&token, origin, None).await.unwrap_err();
        let Rejection::RateLimited {
            limit,
            retry_after_secs,
        } = refusal.rejection()
        else {
            panic!("not rate limited: {refusal:?}");
        };
        assert_eq!(limit.name.as_str(), "hourly");
        assert_eq!((limit.limit, limit.remaining), (2, 0));
        // One unit comes back every 30 minutes.
        assert!(
            (1_700..=1_800).contains(retry_after_secs),
            "{retry_after_secs}"
        );
        assert_eq!(refusal.rejection().status(), 429);
        assert_eq!(refusal.key().map(AuthenticatedKey::owner), Some("alice"));
    }

    #[tokio::test]
    async fn requests_refused_before_the_limits_or_inspected_consume_nothing() {
        let keygate = keygate();
        let token = limited(
            &keygate,
            r#"[{"name": "burst", "limit": 1, "period": "1h"}]"#,
        )
        .await;
        let verifier = keygate.verifier();
        let origin = Origin::Client(ip("10.0.0.1"));
        let write = Arc::new(Requirement::parse("a:write").unwrap());
        for _ in 0..3 {
            let refusal = verifier
                .authorize(&token, origin, Some(&write))
                .await
                .unwrap_err();
            assert!(matches!(
                refusal.rejection(),
                Rejection::InsufficientScope(_)
            ));
            verifier
                .authorize(&token, Origin::Inspection, None)
                .await
                .unwrap();
        }
        // The one unit is still there, and then gone.
        verifier.authorize(&token, origin, None).await.unwrap();
        let refusal = verifier.authorize(&token, origin, None).await.unwrap_err();
        assert_eq!(refusal.rejection().code(), "rate_limited");
    }

    #[tokio::test]
    async fn cached_keys_are_limited_as_loaded_ones() {
        let keygate = keygate();
        let token = limited(
            &keygate,
            r#"[{"name": "burst", "limit": 3, "period": "1h"}]"#,
        )
        .await;
        let verifier = keygate.verifier();
        let origin = Origin::Client(ip("10.0.0.1"));
        let presented = verifier.present(&token).unwrap();
        verifier.authorize(&token, origin, None).await.unwrap();
        let mut answers = Vec::new();
        for _ in 0..3 {
            let answer = verifier
                .authorize_cached(&token, &presented, origin, None, 1, Instant::now())
                .expect("cached");
            answers.push(answer.map(|_| ()).map_err(|r| r.rejection().code()));
        }
        assert_eq!(answers, [Ok(()), Ok(()), Err("rate_limited")]);
    }

    /// A keygate whose clock the test moves, and a key of alice's with
    /// `credits` refilled to 5 daily and a `burst` limit of 3 per hour.
    /// 23:59:58 UTC of the day after today.
    fn before_next_midnight() -> time::OffsetDateTime {
        let tomorrow = time::OffsetDateTime::now_utc().date().next_day().unwrap();
        tomorrow.with_hms(23, 59, 58).unwrap().assume_utc()
    }

    async fn paid(credits: u64) -> (Keygate, String, Arc<std::sync::Mutex<time::OffsetDateTime>>) {
        use crate::credits::{Credits, Refill, RefillEvery};
        // Two seconds before a midnight that is still ahead: records are
        // stamped with the system clock, so a mocked time before it would
        // put the refill schedule behind the key's own creation.
        let clock = Arc::new(std::sync::Mutex::new(before_next_midnight()));
        let read = clock.clone();
        let keygate = Keygate::builder(MemoryStore::new())
            .pepper(Pepper::insecure_fixed_for_tests())
            .clock(move || *read.lock().unwrap())
            .build()
            .unwrap();
        let credits = Credits::new(credits)
            .unwrap()
            .with_refill(Refill::new(5, RefillEvery::Day).unwrap());
        let limits =
            serde_json::from_str(r#"[{"name": "burst", "limit": 3, "period": "1h"}]"#).unwrap();
        let created = keygate
            .keys()
            .create(
                NewKey::new("alice", "paid")
                    .credits(credits)
                    .rate_limits(limits),
            )
            .await
            .unwrap();
        (keygate, created.token.expose().to_owned(), clock)
    }

    #[tokio::test]
    async fn credits_and_limits_are_all_or_nothing_and_a_refill_resets_the_balance() {
        let (keygate, token, clock) = paid(2).await;
        let verifier = keygate.verifier();
        let origin = Origin::Client(ip("10.0.0.1"));
        let first = verifier
            .authorize_charged(&token, origin, None, 1)
            .await
            .unwrap();
        assert_eq!(first.credits_remaining(), Some(1));
        assert_eq!(first.limits().states()[0].remaining, 2);
        // A cost of 2 is more than the one credit left: refused, and the
        // burst limit keeps its 2.
        let refusal = verifier
            .authorize_charged(&token, origin, None, 2)
            .await
            .unwrap_err();
        assert_eq!(
            refusal.rejection(),
            &Rejection::CreditsExhausted {
                retry_after_secs: Some(2)
            },
            "the refill is 2 s away"
        );
        assert_eq!(refusal.rejection().status(), 429);
        let last = verifier
            .authorize_charged(&token, origin, None, 1)
            .await
            .unwrap();
        assert_eq!(last.credits_remaining(), Some(0));
        assert_eq!(
            last.limits().states()[0].remaining,
            1,
            "the refusal took nothing"
        );
        let refusal = verifier.authorize(&token, origin, None).await.unwrap_err();
        assert_eq!(refusal.rejection().code(), "credits_exhausted");

        // Midnight UTC: the balance is set to 5. The burst limit has one
        // unit left; a request of 2 is refused by it, and the credits it
        // took go back.
        let midnight = *clock.lock().unwrap() + time::Duration::seconds(2);
        assert_eq!(midnight.time(), time::Time::MIDNIGHT);
        *clock.lock().unwrap() = midnight;
        let refusal = verifier
            .authorize_charged(&token, origin, None, 2)
            .await
            .unwrap_err();
        assert_eq!(refusal.rejection().code(), "rate_limited");
        let after = verifier
            .authorize_charged(&token, origin, None, 1)
            .await
            .unwrap();
        assert_eq!(
            after.credits_remaining(),
            Some(4),
            "the refused request spent nothing"
        );

        // An inspection and a cost of 0 spend nothing.
        let seen = verifier
            .authorize_charged(&token, Origin::Inspection, None, 1)
            .await
            .unwrap();
        assert_eq!(seen.credits_remaining(), None);
        let free = verifier
            .authorize_charged(&token, origin, None, 0)
            .await
            .unwrap();
        assert_eq!(free.credits_remaining(), None);

        // What this process holds goes back to the store on release.
        let returned = verifier.release_credits().await;
        let stored = verifier
            .store()
            .get(&after.key().id())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.key.credits.unwrap().remaining(),
            4,
            "returned {returned}"
        );
    }

    #[tokio::test]
    async fn cached_keys_spend_credits_from_memory_and_reserve_when_short() {
        let (keygate, token, _clock) = paid(1_000).await;
        let verifier = keygate.verifier();
        let origin = Origin::Client(ip("10.0.0.1"));
        let presented = verifier.present(&token).unwrap();
        // The first request reserves just its cost, the second a block.
        verifier.authorize(&token, origin, None).await.unwrap();
        verifier.authorize(&token, origin, None).await.unwrap();
        let answer = verifier.authorize_cached(&token, &presented, origin, None, 1, Instant::now());
        assert!(matches!(answer, Some(Ok(_))), "{answer:?}");
        let stored = verifier
            .store()
            .get(&presented_id(&presented))
            .await
            .unwrap()
            .unwrap();
        assert!(
            stored.key.credits.unwrap().remaining() < 998,
            "a block is reserved"
        );
    }

    fn presented_id(presented: &Presented) -> KeyId {
        match presented {
            Presented::Stored { id, .. } => *id,
            Presented::Custom { .. } => unreachable!("a keygate token"),
        }
    }

    #[tokio::test]
    async fn an_inspection_skips_ip_lists_and_records_no_use() {
        let keygate = keygate();
        let token = restricted(&keygate).await;
        let verifier = keygate.verifier();
        let key = verifier.authorize(&token, Origin::Inspection, None).await;
        assert!(key.is_ok(), "{key:?}");
        assert_eq!(verifier.flush_usage().await, 0, "an inspection is no use");
        verifier
            .authorize(&token, Origin::Client(ip("10.0.0.1")), None)
            .await
            .unwrap();
        assert_eq!(verifier.flush_usage().await, 1, "a request is");
    }

    #[tokio::test]
    async fn a_requirement_the_key_does_not_meet_is_refused_with_the_key() {
        let keygate = keygate();
        let token = restricted(&keygate).await;
        let verifier = keygate.verifier();
        let origin = Origin::Client(ip("10.0.0.1"));
        let read = Arc::new(Requirement::parse("a:read").unwrap());
        let write = Arc::new(Requirement::parse("a:write").unwrap());
        assert!(
            verifier
                .authorize(&token, origin, Some(&read))
                .await
                .is_ok()
        );
        let refusal = verifier
            .authorize(&token, origin, Some(&write))
            .await
            .unwrap_err();
        assert_eq!(
            refusal.rejection(),
            &Rejection::InsufficientScope(write.clone())
        );
        assert_eq!(refusal.key().map(AuthenticatedKey::owner), Some("alice"));
        // The IP lists come first: from outside, the scope is not the answer.
        let outside = Origin::Client(ip("192.0.2.1"));
        let refusal = verifier
            .authorize(&token, outside, Some(&write))
            .await
            .unwrap_err();
        assert_eq!(refusal.rejection(), &Rejection::IpNotAllowed);
    }

    #[tokio::test]
    async fn invalid_tokens_are_refused_without_a_key_and_with_their_reason() {
        let keygate = keygate();
        let token = restricted(&keygate).await;
        let verifier = keygate.verifier();
        let mut wrong = token.clone().into_bytes();
        // A different secret with a checksum that no longer matches.
        wrong[20] = if wrong[20] == b'a' { b'b' } else { b'a' };
        let wrong = String::from_utf8(wrong).unwrap();
        for (token, reason) in [
            ("kg_live_nope", InvalidReason::Malformed),
            (wrong.as_str(), InvalidReason::BadChecksum),
        ] {
            let refusal = verifier
                .authorize(token, Origin::Inspection, None)
                .await
                .unwrap_err();
            assert_eq!(refusal.rejection(), &Rejection::InvalidToken(reason));
            assert!(refusal.key().is_none() && refusal.store_error().is_none());
        }
        let id = keygate.verify(&token).await.unwrap().id();
        keygate.keys().revoke(&id, None).await.unwrap();
        let refusal = verifier
            .authorize(&token, Origin::Inspection, None)
            .await
            .unwrap_err();
        assert_eq!(
            refusal.rejection(),
            &Rejection::InvalidToken(InvalidReason::Revoked)
        );
        assert!(refusal.key().is_none(), "a revoked key proves nothing");
    }

    #[tokio::test]
    async fn an_unavailable_source_is_a_refusal_carrying_its_error() {
        let keygate = Keygate::builder(MemoryStore::new())
            .pepper(Pepper::insecure_fixed_for_tests())
            .validator(|_token: String| async { Err::<Option<ApiKey>, _>("validator down") })
            .build()
            .unwrap();
        let refusal = keygate
            .verifier()
            .authorize("some-opaque-token", Origin::Unknown, None)
            .await
            .unwrap_err();
        assert_eq!(refusal.rejection(), &Rejection::Unavailable);
        assert!(refusal.store_error().is_some());
        assert!(std::error::Error::source(&refusal).is_some());
        assert_eq!(
            refusal.to_string(),
            "Authentication is temporarily unavailable."
        );
    }

    #[test]
    fn debug_of_a_verifier_never_shows_the_pepper() {
        let keygate = keygate();
        let debug = format!("{:?}", keygate.verifier());
        assert!(
            debug.starts_with("Verifier { pepper: Pepper([redacted]), format: "),
            "{debug}"
        );
    }
}
