//! [`Keys`]: the management operations.

use time::{Duration, OffsetDateTime};

use super::audited::Writer;
use super::credits;
use super::input::{KeyUpdate, NewKey};
use super::lifetime::Span;
use super::limits;
use super::rules::{self, KeyPolicy};
use super::{Ceiling, KeyError};
use crate::audit::{AuditAction, AuditContext, AuditTarget, changes_between};
use crate::credits::{CreditChange, Credits};
use crate::key::now;
use crate::key::{ApiKey, KeyStatus, StoredKey};
use crate::secret::SecretToken;
use crate::store::{Cursor, InsertRules, ListQuery, StoreError};
use crate::token::{Environment, KeyId};
use crate::verify::Verifier;

/// How often a compare-and-set update is retried when another writer got
/// there first.
const MAX_ATTEMPTS: usize = 8;

/// A key just created or rotated, with its token — shown this once.
///
/// ```
/// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
/// assert!(created.token.expose().starts_with(&created.key.display_prefix));
/// // The record serializes without the token.
/// assert!(!serde_json::to_string(&created.key)?.contains(created.token.expose()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CreatedKey {
    /// The full token. Hand it to the user; it cannot be recovered later.
    pub token: SecretToken,
    /// The new key's record.
    pub key: ApiKey,
}

/// One page of [`Keys::list`].
///
/// ```
/// # use keygate::{Keygate, ListQuery, MemoryStore, NewKey, Pepper};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// keygate.keys().create(NewKey::new("alice", "ci")).await?;
/// let page = keygate.keys().list(&ListQuery::default()).await?;
/// assert_eq!(page.keys[0].name, "ci");
/// assert!(page.next_cursor.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct KeyPage {
    /// Keys in creation order.
    pub keys: Vec<ApiKey>,
    /// Pass to [`ListQuery::cursor`] for the next page; `None` on the last.
    pub next_cursor: Option<Cursor>,
}

/// Key management on a [`Keygate`](crate::Keygate), from
/// [`Keygate::keys`](crate::Keygate::keys).
///
/// Every call checks every rule before writing, and writes nothing when it
/// refuses; refusals are [`KeyError`]s naming the field at fault. Name
/// uniqueness and the per-owner limit are enforced inside the store's own
/// transactions, so they hold under concurrency.
///
/// [`Keys::create`], [`Keys::rotate`] and [`Keys::update`] act as the
/// operator (the CLI, your own code) and are bounded by the rules only.
/// [`Keys::create_as`], [`Keys::rotate_as`] and [`Keys::update_as`] act on
/// behalf of a calling key and keep every key within its [`Ceiling`]: no
/// key ever creates a key more powerful than itself. Lifetimes and grace
/// periods are written as durations (`90s`, `30min`, `12h`, `30d`, `1w`,
/// `3mo`, `1y`; `mo` and `y` are calendar units, a bare `m` is refused as
/// ambiguous).
///
/// # Example
///
/// ```
/// use keygate::{KeyError, Keygate, MemoryStore, NewKey, Pepper};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keygate = Keygate::builder(MemoryStore::new())
///     .pepper(Pepper::insecure_fixed_for_tests())
///     .build()?;
/// let keys = keygate.keys();
/// let created = keys.create(NewKey::new("alice", "ci").scopes(["workspaces:read"])).await?;
/// assert!(created.token.expose().starts_with("kg_live_"));
///
/// let duplicate = keys.create(NewKey::new("alice", "ci")).await.unwrap_err();
/// assert_eq!(duplicate.field(), Some("name"));
///
/// let bad = keys.create(NewKey::new("alice", "x").scopes(["Not A Scope"])).await.unwrap_err();
/// assert!(matches!(bad, KeyError::Invalid { field: "scopes", .. }));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Keys<'a> {
    pub(super) verifier: &'a Verifier,
    policy: &'a KeyPolicy,
    context: &'a AuditContext,
}

fn from_store(e: StoreError, limit: u32) -> KeyError {
    match e {
        StoreError::NameConflict => {
            KeyError::conflict("name", "the owner already has an active key with this name")
        }
        StoreError::KeyLimitReached => KeyError::KeyLimitReached { limit },
        StoreError::NotFound => KeyError::NotFound,
        StoreError::NoCredits => KeyError::invalid(
            "credits",
            "the key has no credits (it is unlimited): set a balance instead of adding to it",
        ),
        StoreError::TooManyCredits => KeyError::invalid(
            "add",
            "the balance would exceed 1000000000000 credits, the most a key may hold",
        ),
        other => KeyError::Store(other),
    }
}

impl<'a> Keys<'a> {
    pub(crate) fn new(
        verifier: &'a Verifier,
        policy: &'a KeyPolicy,
        context: &'a AuditContext,
    ) -> Keys<'a> {
        Keys {
            verifier,
            policy,
            context,
        }
    }

    /// The same operations, each change recorded in the audit log as made
    /// by `context`'s actor, from its client address, under its request id.
    /// Without it, changes are recorded as made by the keygate's default
    /// actor ([`KeygateBuilder::audit_actor`](crate::KeygateBuilder::audit_actor)).
    ///
    /// ```
    /// use keygate::{Actor, AuditContext, Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .build()?;
    /// let context = AuditContext::new(Actor::operator("billing-sync"));
    /// keygate.keys().acting(&context).create(NewKey::new("alice", "ci")).await?;
    /// let log = keygate.store().audit_log().unwrap();
    /// let page = log.audit_records(&Default::default()).await?;
    /// assert_eq!(page.records[0].actor, Actor::operator("billing-sync"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn acting<'b>(self, context: &'b AuditContext) -> Keys<'b>
    where
        'a: 'b,
    {
        Keys {
            verifier: self.verifier,
            policy: self.policy,
            context,
        }
    }

    /// The only way this type writes to the store: each change with its
    /// audit record.
    fn writer(&self) -> Writer<'a> {
        Writer {
            store: self.verifier.store().as_ref(),
        }
    }

    fn limit(&self) -> u32 {
        self.policy.max_keys_per_owner
    }

    fn err(&self, e: StoreError) -> KeyError {
        from_store(e, self.limit())
    }

    /// The store's [`CreditStore`](crate::CreditStore), required to give a
    /// key credits.
    fn credit_store(&self) -> Result<&dyn crate::store::CreditStore, KeyError> {
        self.verifier.store().credits().ok_or_else(|| {
            KeyError::invalid(
                "credits",
                "this key store does not keep credits, so keys cannot have any",
            )
        })
    }

    /// Creates a key with any valid scopes and attributes: for trusted
    /// callers (the CLI, your own code). No [`Ceiling`] applies.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] naming the field that breaks its rule (the
    /// bounds documented on [`NewKey`]'s setters),
    /// [`KeyError::Conflict`] for a duplicate name,
    /// [`KeyError::KeyLimitReached`], or [`KeyError::Store`].
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci").scopes(["workspaces:read"])).await?;
    /// assert_eq!(created.token.expose().len(), 62); // kg_live_ + 54 characters
    /// assert_eq!(created.key.owner, "alice");
    /// assert!(keygate.verify(created.token.expose()).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create(&self, new: NewKey) -> Result<CreatedKey, KeyError> {
        self.create_within(new, None).await
    }

    /// Creates a key on behalf of a calling key: the new key must stay
    /// within the caller's [`Ceiling`] — scopes, expiry,
    /// environment, organization, IP lists, rate limits and credits.
    ///
    /// What the request leaves out comes from the caller where the caller
    /// limits it: without `environment` or `organization`, the caller's;
    /// without a lifetime, the default lifetime cut to the caller's expiry.
    /// An allow list is never inherited: a caller with one must give one.
    ///
    /// # Errors
    ///
    /// As [`Keys::create`]; anything beyond the ceiling is
    /// [`KeyError::Forbidden`] naming the field.
    ///
    /// ```
    /// # use keygate::{Ceiling, KeyError, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let caller = keygate.keys().create(NewKey::new("alice", "ci").scopes(["keys:create", "reports:read"])).await?;
    /// let caller = keygate.verify(caller.token.expose()).await?;
    /// let ceiling = Ceiling::of(&caller);
    /// let within = NewKey::new("alice", "child").scopes(["reports:read"]);
    /// assert!(keygate.keys().create_as(&ceiling, within).await.is_ok());
    /// let beyond = NewKey::new("alice", "wider").scopes(["reports:*"]);
    /// assert!(matches!(
    ///     keygate.keys().create_as(&ceiling, beyond).await,
    ///     Err(KeyError::Forbidden { field: "scopes", .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_as(
        &self,
        ceiling: &Ceiling<'_>,
        new: NewKey,
    ) -> Result<CreatedKey, KeyError> {
        self.create_within(new, Some(ceiling)).await
    }

    async fn create_within(
        &self,
        new: NewKey,
        ceiling: Option<&Ceiling<'_>>,
    ) -> Result<CreatedKey, KeyError> {
        let inner = self.verifier.core();
        let now = now();
        let owner = rules::identity(
            "owner",
            new.owner
                .as_deref()
                .ok_or_else(|| KeyError::invalid("owner", "owner is required"))?,
        )?;
        let name = rules::name(
            new.name
                .as_deref()
                .ok_or_else(|| KeyError::invalid("name", "name is required"))?,
        )?;
        let organization = new
            .organization
            .as_deref()
            .map(|o| rules::identity("organization", o))
            .transpose()?;
        let description = new
            .description
            .as_deref()
            .map(|d| rules::text("description", d))
            .transpose()?;
        let scopes = rules::scopes(&new.scopes, self.policy.catalog.as_ref(), None)?;
        let mut expires_at = rules::expiry(
            new.expires_in.as_deref(),
            new.expires_at.as_deref(),
            self.policy,
            now,
        )?;
        let ip_allow = rules::ip_list("ip_allow", &new.ip_allow)?;
        let ip_deny = rules::ip_list("ip_deny", &new.ip_deny)?;
        let metadata = rules::metadata(new.metadata.as_ref())?;
        let rate_limits = new
            .rate_limits
            .as_ref()
            .map(limits::rate_limits)
            .transpose()?
            .unwrap_or_default();
        let credits = new
            .credits
            .as_ref()
            .map(credits::credits)
            .transpose()?
            .flatten();
        if credits.is_some() {
            self.credit_store()?;
        }
        let mut environment = new.environment.unwrap_or_default();
        let mut organization = organization;
        if let Some(ceiling) = ceiling {
            if new.environment.is_none() {
                environment = ceiling.default_environment().unwrap_or_default();
            }
            if new.organization.is_none() {
                organization = ceiling.default_organization().map(str::to_owned);
            }
            if new.expires_in.is_none() && new.expires_at.is_none() {
                expires_at = ceiling.cap_expiry(expires_at);
            }
            ceiling.check_scopes(&scopes)?;
            ceiling.check_expiry(expires_at)?;
            ceiling.check_environment(environment)?;
            ceiling.check_organization(organization.as_deref())?;
            ceiling.check_ip_allow(&ip_allow)?;
            ceiling.check_ip_deny(&ip_deny)?;
            ceiling.check_rate_limits(&rate_limits)?;
            ceiling.check_credits(credits.as_ref())?;
        }

        let id = KeyId::generate();
        let key = ApiKey {
            id,
            display_prefix: inner.format.display_prefix(environment, id),
            name,
            description,
            owner,
            organization,
            environment,
            scopes,
            ip_allow,
            ip_deny,
            metadata,
            created_at: now,
            updated_at: now,
            expires_at,
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
            revoked_reason: None,
            superseded_by: None,
            rate_limits,
            credits,
        };
        let (token, stored) = self.mint(key, environment);
        let record = self.context.record(
            AuditAction::Create,
            AuditTarget::of(&stored.key),
            crate::audit::created(&stored.key),
            now,
        );
        self.writer()
            .insert(
                &stored,
                InsertRules {
                    max_keys_per_owner: self.limit(),
                    now: inner.wall_now(),
                },
                record,
            )
            .await
            .map_err(|e| self.err(e))?;
        tracing::info!(key_id = %id, owner = %stored.key.owner, "key created");
        Ok(CreatedKey {
            token,
            key: stored.key,
        })
    }

    /// A fresh token for `key` (whose id it carries) and the record to store.
    fn mint(&self, key: ApiKey, environment: Environment) -> (SecretToken, StoredKey) {
        let inner = self.verifier.core();
        let token = inner.format.generate_with_id(environment, key.id);
        let mac = inner.pepper.mac(token.expose());
        (
            token,
            StoredKey {
                key,
                mac,
                revision: 0,
            },
        )
    }

    async fn load(&self, id: &KeyId) -> Result<StoredKey, KeyError> {
        self.verifier
            .core()
            .store
            .get(id)
            .await
            .map_err(|e| self.err(e))?
            .ok_or(KeyError::NotFound)
    }

    /// The key with this id.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotFound`] or [`KeyError::Store`].
    ///
    /// ```
    /// # use keygate::{KeyError, KeyId, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci")).await?.key.id;
    /// assert_eq!(keygate.keys().get(&id).await?.name, "ci");
    /// let absent = KeyId::parse("0000000000000000")?;
    /// assert!(matches!(keygate.keys().get(&absent).await, Err(KeyError::NotFound)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get(&self, id: &KeyId) -> Result<ApiKey, KeyError> {
        Ok(self.load(id).await?.key)
    }

    /// A page of keys in creation order.
    ///
    /// # Errors
    ///
    /// [`KeyError::Store`].
    ///
    /// ```
    /// # use keygate::{Keygate, ListQuery, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// for name in ["a", "b", "c"] {
    ///     keygate.keys().create(NewKey::new("alice", name)).await?;
    /// }
    /// keygate.keys().create(NewKey::new("bob", "a")).await?;
    /// let first = keygate.keys().list(&ListQuery { owner: Some("alice".into()), limit: 2, ..ListQuery::default() }).await?;
    /// assert_eq!(first.keys.len(), 2);
    /// let cursor = first.next_cursor.expect("a second page");
    /// let rest = keygate.keys().list(&ListQuery { owner: Some("alice".into()), limit: 2, cursor: Some(cursor), ..ListQuery::default() }).await?;
    /// assert_eq!(rest.keys.len(), 1);
    /// assert!(rest.next_cursor.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list(&self, query: &ListQuery) -> Result<KeyPage, KeyError> {
        let page = self
            .verifier
            .store()
            .list(query)
            .await
            .map_err(|e| self.err(e))?;
        Ok(KeyPage {
            keys: page.keys.into_iter().map(|k| k.key).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// Reads the key, applies `change` and writes it back if nobody changed
    /// it in between; retries otherwise.
    async fn modify<F>(
        &self,
        id: &KeyId,
        action: AuditAction,
        mut change: F,
    ) -> Result<ApiKey, KeyError>
    where
        F: FnMut(&mut ApiKey, OffsetDateTime) -> Result<bool, KeyError>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let mut stored = self.load(id).await?;
            let before = stored.key.clone();
            let now = now();
            if !change(&mut stored.key, now)? {
                return Ok(stored.key);
            }
            stored.key.updated_at = now;
            let record = self.context.record(
                action,
                AuditTarget::of(&before),
                changes_between(Some(&before), Some(&stored.key)),
                now,
            );
            match self
                .writer()
                .replace(&stored, self.verifier.core().wall_now(), record)
                .await
            {
                Ok(()) => {
                    self.verifier.invalidate(*id);
                    return Ok(stored.key);
                }
                Err(StoreError::Stale) => continue,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(KeyError::conflict(
            "id",
            "the key kept changing concurrently; try again",
        ))
    }

    /// Changes name, description, metadata, IP lists, rate limits (the
    /// whole list is replaced; an empty one removes them), credits (the
    /// balance and refill are replaced, `None` removes them; refused with
    /// [`KeyError::Conflict`] on `id` for a rotated key, whose credits
    /// moved to its successor), or narrows scopes: for
    /// trusted callers. No [`Ceiling`] applies.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] naming the field (a scope the key does not
    /// already hold is refused), [`KeyError::Conflict`] for a duplicate
    /// name, [`KeyError::NotFound`], or [`KeyError::Store`].
    ///
    /// ```
    /// # use keygate::{KeyUpdate, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let updated = keygate.keys().update(&created.key.id, KeyUpdate::default().ip_allow(["10.0.0.0/8"])).await?;
    /// assert_eq!(updated.ip_allow, ["10.0.0.0/8".parse::<ipnet::IpNet>()?]);
    /// assert_eq!(updated.name, "ci"); // what the update leaves out is unchanged
    /// # Ok(())
    /// # }
    /// ```
    pub async fn update(&self, id: &KeyId, update: KeyUpdate) -> Result<ApiKey, KeyError> {
        self.update_within(id, update, None).await
    }

    /// Updates a key on behalf of a calling key: every field the update
    /// sets must stay within the caller's [`Ceiling`] — scopes within the
    /// caller's grants (and, as always, the key's own), IP lists no wider
    /// than the caller's, rate limits no looser and credits no larger than
    /// the caller's. Fields the update leaves alone are not judged: an
    /// update cannot widen them.
    ///
    /// # Errors
    ///
    /// As [`Keys::update`]; a value beyond the ceiling is
    /// [`KeyError::Forbidden`] naming the field.
    ///
    /// ```
    /// # use keygate::{Ceiling, KeyError, KeyUpdate, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let caller = keygate.keys().create(NewKey::new("alice", "admin").scopes(["keys:update"]).ip_allow(["10.0.0.0/8"])).await?;
    /// let caller = keygate.verify(caller.token.expose()).await?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci").ip_allow(["10.1.0.0/16"])).await?.key.id;
    /// let wider = KeyUpdate::default().ip_allow(["0.0.0.0/0"]);
    /// assert!(matches!(
    ///     keygate.keys().update_as(&Ceiling::of(&caller), &id, wider).await,
    ///     Err(KeyError::Forbidden { field: "ip_allow", .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn update_as(
        &self,
        ceiling: &Ceiling<'_>,
        id: &KeyId,
        update: KeyUpdate,
    ) -> Result<ApiKey, KeyError> {
        self.update_within(id, update, Some(ceiling)).await
    }

    async fn update_within(
        &self,
        id: &KeyId,
        update: KeyUpdate,
        ceiling: Option<&Ceiling<'_>>,
    ) -> Result<ApiKey, KeyError> {
        let catalog = self.policy.catalog.as_ref();
        // Validate what does not depend on the stored record once, up front.
        let name = update.name.as_deref().map(rules::name).transpose()?;
        let description = update
            .description
            .as_deref()
            .map(|d| rules::text("description", d))
            .transpose()?;
        let metadata = update
            .metadata
            .as_ref()
            .map(|m| rules::metadata(Some(m)))
            .transpose()?;
        let ip_allow = update
            .ip_allow
            .as_deref()
            .map(|l| rules::ip_list("ip_allow", l))
            .transpose()?;
        let ip_deny = update
            .ip_deny
            .as_deref()
            .map(|l| rules::ip_list("ip_deny", l))
            .transpose()?;
        let rate_limits = update
            .rate_limits
            .as_ref()
            .map(limits::rate_limits)
            .transpose()?;
        let new_credits: Option<Option<Credits>> =
            update.credits.as_ref().map(credits::credits).transpose()?;
        let credit_store = match new_credits {
            Some(_) => Some(self.credit_store()?),
            None => None,
        };
        if let Some(ceiling) = ceiling {
            if let Some(c) = &new_credits {
                ceiling.check_credits(c.as_ref())?;
            }
            if let Some(l) = &ip_allow {
                ceiling.check_ip_allow(l)?;
            }
            if let Some(l) = &ip_deny {
                ceiling.check_ip_deny(l)?;
            }
            if let Some(l) = &rate_limits {
                ceiling.check_rate_limits(l)?;
            }
        }
        let only_credits = update.scopes.is_none()
            && name.is_none()
            && description.is_none()
            && metadata.is_none()
            && ip_allow.is_none()
            && ip_deny.is_none()
            && rate_limits.is_none()
            && new_credits.is_some();
        // Only credits: no record of an empty change before theirs.
        let key = if only_credits {
            let key = self.load(id).await?.key;
            refuse_superseded(&key)?;
            key
        } else {
            self.modify(id, AuditAction::Update, |key, _now| {
                if let Some(raw) = &update.scopes {
                    let bound = rules::ScopeBound {
                        grants: &key.scopes,
                        holder: "the key's current scopes (scopes may only narrow)",
                    };
                    let scopes = rules::scopes(raw, catalog, Some(bound))?;
                    if let Some(ceiling) = ceiling {
                        ceiling.check_scopes(&scopes)?;
                    }
                    key.scopes = scopes;
                }
                if let Some(name) = &name {
                    key.name.clone_from(name);
                }
                if let Some(d) = &description {
                    key.description = (!d.is_empty()).then(|| d.clone());
                }
                if let Some(m) = &metadata {
                    key.metadata.clone_from(m);
                }
                if let Some(l) = &ip_allow {
                    key.ip_allow.clone_from(l);
                }
                if let Some(l) = &ip_deny {
                    key.ip_deny.clone_from(l);
                }
                if let Some(l) = &rate_limits {
                    key.rate_limits.clone_from(l);
                }
                if new_credits.is_some() {
                    refuse_superseded(key)?;
                }
                Ok(true)
            })
            .await?
        };
        // The store writes credits only through its credit operations,
        // never with the rest of the record.
        let key = match (new_credits, credit_store) {
            (Some(c), Some(_)) => {
                let now = now();
                let record = self.context.record(
                    AuditAction::Update,
                    AuditTarget::of(&key),
                    Default::default(),
                    now,
                );
                let stored = self
                    .writer()
                    .adjust(
                        id,
                        CreditChange::Replace(c),
                        self.verifier.core().wall_now(),
                        record,
                    )
                    .await
                    .map_err(|e| self.err(e))?;
                self.verifier.invalidate(*id);
                stored.key
            }
            _ => key,
        };
        tracing::info!(key_id = %id, "key updated");
        Ok(key)
    }

    /// Revokes a key: it is refused from the next request on. Revoking a
    /// revoked key changes nothing and returns it.
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] on `reason` (over 1024 characters or control
    /// characters), [`KeyError::NotFound`], or [`KeyError::Store`].
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let revoked = keygate.keys().revoke(&created.key.id, Some("leaked")).await?;
    /// assert!(revoked.revoked_at.is_some());
    /// assert_eq!(revoked.revoked_reason.as_deref(), Some("leaked"));
    /// assert!(keygate.verify(created.token.expose()).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn revoke(&self, id: &KeyId, reason: Option<&str>) -> Result<ApiKey, KeyError> {
        let reason = reason
            .map(|r| rules::text("reason", r))
            .transpose()?
            .filter(|r| !r.is_empty());
        let key = self
            .modify(id, AuditAction::Revoke, |key, now| {
                if key.revoked_at.is_some() {
                    return Ok(false);
                }
                key.revoked_at = Some(now);
                key.revoked_reason.clone_from(&reason);
                Ok(true)
            })
            .await?;
        tracing::info!(key_id = %id, "key revoked");
        Ok(key)
    }

    /// Rotates a key: a new key with the same attributes (rate limits and
    /// credits included), name and lifetime length; the old one gets `superseded_by` and expires at
    /// `min(old expiry, now + grace)`. For trusted callers: no [`Ceiling`]
    /// applies.
    ///
    /// The new key **continues the old key's credits**, it does not get a
    /// fresh grant: the store moves the balance (as it stands at the
    /// rotation, a due refill applied), the refill and the balance's
    /// generation to the new key in the rotation's transaction, and leaves
    /// the old key a balance of 0 without a refill. While the old key is
    /// still valid (its grace period), the credits it spends are drawn
    /// from its successor's balance, so the two never hold a copy each.
    ///
    /// # Errors
    ///
    /// [`KeyError::Conflict`] on `id` when the key is revoked, expired or
    /// already rotated; [`KeyError::Invalid`] on `grace` when negative;
    /// [`KeyError::NotFound`]; [`KeyError::Store`].
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let old = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let new = keygate.keys().rotate(&old.key.id, time::Duration::ZERO).await?;
    /// assert!(keygate.verify(new.token.expose()).await.is_ok());
    /// assert!(keygate.verify(old.token.expose()).await.is_err()); // no grace
    /// assert_eq!(keygate.keys().get(&old.key.id).await?.superseded_by, Some(new.key.id));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn rotate(&self, id: &KeyId, grace: Duration) -> Result<CreatedKey, KeyError> {
        self.rotate_within(id, Span::from(grace), None).await
    }

    /// Rotates on behalf of a calling key. Rotation hands out a token for a
    /// copy of the key, so the key must be within the caller's [`Ceiling`]
    /// in every attribute (refused otherwise), and the new key never
    /// outlives the caller: its renewed expiry is cut to the caller's.
    ///
    /// # Errors
    ///
    /// As [`Keys::rotate`]; a key beyond the ceiling is
    /// [`KeyError::Forbidden`] naming the field.
    ///
    /// ```
    /// # use keygate::{Ceiling, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let caller = keygate.keys().create(NewKey::new("alice", "admin").scopes(["keys:create"]).expires_in("1d")).await?;
    /// let caller = keygate.verify(caller.token.expose()).await?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci").expires_in("1h")).await?.key.id;
    /// let rotated = keygate.keys().rotate_as(&Ceiling::of(&caller), &id, time::Duration::ZERO).await?;
    /// assert!(rotated.key.expires_at <= caller.expires_at()); // never outlives the caller
    /// # Ok(())
    /// # }
    /// ```
    pub async fn rotate_as(
        &self,
        ceiling: &Ceiling<'_>,
        id: &KeyId,
        grace: Duration,
    ) -> Result<CreatedKey, KeyError> {
        self.rotate_within(id, Span::from(grace), Some(ceiling))
            .await
    }

    /// [`Keys::rotate`] or [`Keys::rotate_as`] with a grace that may be in
    /// calendar units (`1mo`), measured from the instant of the rotation.
    pub(crate) async fn rotate_within(
        &self,
        id: &KeyId,
        grace: Span,
        ceiling: Option<&Ceiling<'_>>,
    ) -> Result<CreatedKey, KeyError> {
        if grace.is_negative() {
            return Err(KeyError::invalid("grace", "grace must not be negative"));
        }
        let inner = self.verifier.core();
        for _ in 0..MAX_ATTEMPTS {
            let old = self.load(id).await?;
            let now = now();
            match old.key.status_at(now) {
                KeyStatus::Active if old.key.superseded_by.is_none() => {}
                KeyStatus::Active => {
                    return Err(KeyError::conflict("id", "the key was already rotated"));
                }
                KeyStatus::Revoked => {
                    return Err(KeyError::conflict("id", "a revoked key cannot be rotated"));
                }
                KeyStatus::Expired => {
                    return Err(KeyError::conflict("id", "an expired key cannot be rotated"));
                }
            }
            if let Some(ceiling) = ceiling {
                ceiling.check_key(&old.key)?;
            }
            let cutoff = grace
                .after(now)
                .ok_or_else(|| KeyError::invalid("grace", "grace is too large"))?;
            let new_id = KeyId::generate();
            let mut fresh = old.key.clone();
            fresh.id = new_id;
            fresh.display_prefix = inner.format.display_prefix(fresh.environment, new_id);
            fresh.created_at = now;
            fresh.updated_at = now;
            fresh.expires_at = old.key.expires_at.map(|at| {
                let lifetime = at - old.key.created_at;
                let lifetime = self
                    .policy
                    .max_lifetime
                    .map_or(lifetime, |max| lifetime.min(max));
                now + lifetime
            });
            if let Some(ceiling) = ceiling {
                fresh.expires_at = ceiling.cap_expiry(fresh.expires_at);
            }
            fresh.last_used_at = None;
            fresh.last_used_ip = None;
            let environment = fresh.environment;
            let (token, new) = self.mint(fresh, environment);

            let mut superseded = old.clone();
            superseded.key.superseded_by = Some(new_id);
            superseded.key.updated_at = now;
            superseded.key.expires_at =
                Some(old.key.expires_at.map_or(cutoff, |at| at.min(cutoff)));
            let record = self.context.record(
                AuditAction::Rotate,
                AuditTarget::of(&old.key),
                changes_between(Some(&old.key), Some(&superseded.key)),
                now,
            );
            match self
                .writer()
                .rotate(&superseded, &new, inner.wall_now(), record)
                .await
            {
                Ok(()) => {
                    self.verifier.invalidate(*id);
                    tracing::info!(key_id = %id, new_key_id = %new_id, "key rotated");
                    // The store moved the balance as it stood at the rotation.
                    let key = match new.key.credits {
                        Some(_) => self.load(&new_id).await.map_or(new.key, |k| k.key),
                        None => new.key,
                    };
                    return Ok(CreatedKey { token, key });
                }
                Err(StoreError::Stale) => continue,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(KeyError::conflict(
            "id",
            "the key kept changing concurrently; try again",
        ))
    }

    /// Adds to a key's credits or sets them ([`CreditChange::Add`],
    /// [`CreditChange::Set`]), or replaces them ([`CreditChange::Replace`]),
    /// atomically in the store, and returns the record: for trusted
    /// callers. No [`Ceiling`] applies.
    ///
    /// Adding to a key without credits (unlimited) is refused: there is no
    /// balance to add to; setting gives it one (without a refill). A set or
    /// a replacement starts a new generation of the balance (credits
    /// reserved before and returned after are dropped); an add does not. A
    /// rotated key's credits moved to its successor: adjust that one.
    ///
    /// # Example
    ///
    /// ```
    /// use keygate::{CreditChange, Credits, Keygate, MemoryStore, NewKey, Pepper};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let keygate = Keygate::builder(MemoryStore::new())
    ///     .pepper(Pepper::insecure_fixed_for_tests())
    ///     .build()?;
    /// let keys = keygate.keys();
    /// let key = keys.create(NewKey::new("alice", "ci").credits(Credits::new(10)?)).await?.key;
    /// let key = keys.adjust_credits(&key.id, CreditChange::Add(5)).await?;
    /// assert_eq!(key.credits.map(|c| c.remaining()), Some(15));
    /// let key = keys.adjust_credits(&key.id, CreditChange::Set(3)).await?;
    /// assert_eq!(key.credits.map(|c| c.remaining()), Some(3));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::Invalid`] on `credits` for an add to a key without
    /// credits, on `add` when the balance would exceed
    /// [`MAX_CREDITS`](crate::MAX_CREDITS), on `set` above it, or on
    /// `credits` when the store keeps no credits; [`KeyError::Conflict`] on
    /// `id` for a rotated key; [`KeyError::NotFound`]; [`KeyError::Store`].
    ///
    /// ```
    /// # use keygate::{CreditChange, Credits, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci").credits(Credits::new(10)?)).await?.key.id;
    /// let key = keygate.keys().adjust_credits(&id, CreditChange::Add(5)).await?;
    /// assert_eq!(key.credits.map(|c| c.remaining()), Some(15));
    /// let key = keygate.keys().adjust_credits(&id, CreditChange::Set(1)).await?;
    /// assert_eq!(key.credits.map(|c| c.remaining()), Some(1));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn adjust_credits(
        &self,
        id: &KeyId,
        change: CreditChange,
    ) -> Result<ApiKey, KeyError> {
        self.adjust_credits_within(id, change, None).await
    }

    /// Adjusts a key's credits on behalf of a calling key: a caller with
    /// credits cannot leave the key with more than its own remaining (see
    /// [`Ceiling`]).
    ///
    /// # Errors
    ///
    /// As [`Keys::adjust_credits`]; beyond the ceiling,
    /// [`KeyError::Forbidden`] on `credits`.
    ///
    /// ```
    /// # use keygate::{Ceiling, CreditChange, Credits, KeyError, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let caller = keygate.keys().create(NewKey::new("alice", "admin").scopes(["keys:update"]).credits(Credits::new(50)?)).await?;
    /// let caller = keygate.verify(caller.token.expose()).await?;
    /// let id = keygate.keys().create(NewKey::new("alice", "ci").credits(Credits::new(10)?)).await?.key.id;
    /// let ceiling = Ceiling::of(&caller);
    /// assert!(keygate.keys().adjust_credits_as(&ceiling, &id, CreditChange::Set(50)).await.is_ok());
    /// assert!(matches!(
    ///     keygate.keys().adjust_credits_as(&ceiling, &id, CreditChange::Set(51)).await,
    ///     Err(KeyError::Forbidden { field: "credits", .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn adjust_credits_as(
        &self,
        ceiling: &Ceiling<'_>,
        id: &KeyId,
        change: CreditChange,
    ) -> Result<ApiKey, KeyError> {
        self.adjust_credits_within(id, change, Some(ceiling)).await
    }

    async fn adjust_credits_within(
        &self,
        id: &KeyId,
        change: CreditChange,
        ceiling: Option<&Ceiling<'_>>,
    ) -> Result<ApiKey, KeyError> {
        if let CreditChange::Set(n) = change
            && n > crate::credits::MAX_CREDITS
        {
            return Err(KeyError::invalid(
                "set",
                format!(
                    "must be a whole number from 0 to {}",
                    crate::credits::MAX_CREDITS
                ),
            ));
        }
        self.credit_store()?;
        let current = self.load(id).await?;
        refuse_superseded(&current.key)?;
        if let Some(ceiling) = ceiling {
            ceiling.check_credit_change(current.key.credits.as_ref(), &change)?;
        }
        let now = now();
        let record = self.context.record(
            AuditAction::Credits,
            AuditTarget::of(&current.key),
            Default::default(),
            now,
        );
        let stored = self
            .writer()
            .adjust(id, change, self.verifier.core().wall_now(), record)
            .await
            .map_err(|e| self.err(e))?;
        self.verifier.invalidate(*id);
        tracing::info!(key_id = %id, "key credits adjusted");
        Ok(stored.key)
    }

    /// Deletes a key's record.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotFound`] or [`KeyError::Store`].
    ///
    /// ```
    /// # use keygate::{KeyError, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// keygate.keys().delete(&created.key.id).await?;
    /// assert!(matches!(keygate.keys().get(&created.key.id).await, Err(KeyError::NotFound)));
    /// assert!(keygate.verify(created.token.expose()).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete(&self, id: &KeyId) -> Result<(), KeyError> {
        let before = match self.load(id).await {
            Ok(stored) => stored.key,
            Err(KeyError::NotFound) => {
                self.verifier.invalidate(*id);
                return Err(KeyError::NotFound);
            }
            Err(e) => return Err(e),
        };
        let record = self.context.record(
            AuditAction::Delete,
            AuditTarget::of(&before),
            crate::audit::deleted(&before),
            now(),
        );
        let existed = self
            .writer()
            .delete(id, record)
            .await
            .map_err(|e| self.err(e))?;
        self.verifier.invalidate(*id);
        if !existed {
            return Err(KeyError::NotFound);
        }
        tracing::info!(key_id = %id, "key deleted");
        Ok(())
    }

    /// Number of active, non-superseded keys of `owner`.
    ///
    /// # Errors
    ///
    /// [`KeyError::Store`].
    ///
    /// ```
    /// # use keygate::{Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let a = keygate.keys().create(NewKey::new("alice", "a")).await?;
    /// keygate.keys().create(NewKey::new("alice", "b")).await?;
    /// keygate.keys().revoke(&a.key.id, None).await?;
    /// assert_eq!(keygate.keys().count_active("alice").await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn count_active(&self, owner: &str) -> Result<u64, KeyError> {
        self.verifier
            .core()
            .store
            .count_current(owner, now())
            .await
            .map_err(|e| self.err(e))
    }
}

/// A rotated key's credits moved to its successor: changing its own would
/// change nothing a request draws from.
fn refuse_superseded(key: &ApiKey) -> Result<(), KeyError> {
    match key.superseded_by {
        Some(next) => Err(KeyError::conflict(
            "id",
            format!("the key was rotated: its credits moved to its successor {next}"),
        )),
        None => Ok(()),
    }
}
