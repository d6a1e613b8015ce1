//! What callers send to create or change a key: [`NewKey`] and [`KeyUpdate`].
//!
//! Both hold the caller's raw values; every rule is checked when the
//! manager applies them, so a refusal can name the JSON field at fault.
//! Both deserialize strictly (unknown fields are an error) for the HTTP API.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::credits::{CreditsInput, present};
use super::limits::LimitsInput;
use crate::credits::Credits;
use crate::limit::RateLimits;
use crate::token::Environment;

/// The fields of a key to create. Each is checked at creation: a value
/// that breaks its rule is refused naming the field, and nothing is written.
///
/// # Example
///
/// ```
/// use keygate::NewKey;
///
/// let new = NewKey::new("alice", "ci")
///     .scopes(["workspaces:read"])
///     .expires_in("30d")
///     .description("CI pipeline");
/// # let _ = new;
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Who the key belongs to (the HTTP API defaults it to the caller's owner).
    #[cfg_attr(feature = "admin", schema(min_length = 1, max_length = 128))]
    pub(crate) owner: Option<String>,
    /// 1–128 characters, unique per owner among active keys.
    #[cfg_attr(feature = "admin", schema(min_length = 1, max_length = 128))]
    pub(crate) name: Option<String>,
    /// At most 1024 characters.
    #[cfg_attr(feature = "admin", schema(max_length = 1024))]
    pub(crate) description: Option<String>,
    /// The owner's organization, 1–128 characters. The HTTP API defaults it
    /// to the caller's (unless the caller holds `admin:keys`).
    #[cfg_attr(feature = "admin", schema(min_length = 1, max_length = 128))]
    pub(crate) organization: Option<String>,
    /// `live` (default) or `test`. The HTTP API defaults it to the caller's
    /// (unless the caller holds `admin:keys`).
    pub(crate) environment: Option<Environment>,
    /// At most 64 `resource:action` scopes, each at most 128 characters.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) scopes: Vec<String>,
    /// `90s`, `30min`, `12h`, `30d`, `1w`, `3mo` (calendar months), `1y`
    /// (calendar years) or `never`; a bare `m` is refused as ambiguous.
    pub(crate) expires_in: Option<String>,
    /// RFC 3339, in the future.
    pub(crate) expires_at: Option<String>,
    /// At most 64 addresses or CIDR ranges.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) ip_allow: Vec<String>,
    /// At most 64 addresses or CIDR ranges; deny wins over allow.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) ip_deny: Vec<String>,
    /// A JSON object of at most 4 KiB (4096 bytes) serialized.
    #[cfg_attr(feature = "admin", schema(value_type = Option<Object>))]
    pub(crate) metadata: Option<serde_json::Value>,
    /// At most 8 rate limits, names unique; none by default.
    #[serde(default)]
    #[cfg_attr(
        feature = "admin",
        schema(value_type = Option<Vec<crate::key::RateLimitSchema>>, max_items = 8)
    )]
    pub(crate) rate_limits: Option<LimitsInput>,
    /// The key's credits: a balance of 0 to 10^12 that each request
    /// spends, with an optional refill that sets it back to `amount` at
    /// 00:00 UTC each day, Monday (`week`) or 1st (`month`). Absent or
    /// `null`: unlimited.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(value_type = Option<Credits>))]
    pub(crate) credits: Option<CreditsInput>,
}

impl NewKey {
    /// A key named `name` for `owner`, with no scopes, the `live`
    /// environment and the default lifetime (90 days unless configured).
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> NewKey {
        NewKey {
            owner: Some(owner.into()),
            name: Some(name.into()),
            ..NewKey::default()
        }
    }

    /// Sets the owner (the HTTP API defaults it to the caller's owner).
    pub fn owner(mut self, owner: impl Into<String>) -> NewKey {
        self.owner = Some(owner.into());
        self
    }

    /// Whether an owner was given.
    pub fn has_owner(&self) -> bool {
        self.owner.is_some()
    }

    /// The owner given, if any.
    pub fn owner_name(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Free text, at most 1024 characters.
    pub fn description(mut self, description: impl Into<String>) -> NewKey {
        self.description = Some(description.into());
        self
    }

    /// The owner's organization.
    pub fn organization(mut self, organization: impl Into<String>) -> NewKey {
        self.organization = Some(organization.into());
        self
    }

    /// `live` (default) or `test`.
    pub fn environment(mut self, environment: Environment) -> NewKey {
        self.environment = Some(environment);
        self
    }

    /// Replaces the scopes (at most 64, `resource:action`).
    pub fn scopes<I, S>(mut self, scopes: I) -> NewKey
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Lifetime from now: `90s`, `30min`, `12h`, `30d`, `1w`, `3mo`, `1y`
    /// or `never` (`mo` and `y` are calendar months and years; a bare `m`
    /// is refused as ambiguous).
    pub fn expires_in(mut self, lifetime: impl Into<String>) -> NewKey {
        self.expires_in = Some(lifetime.into());
        self.expires_at = None;
        self
    }

    /// Absolute expiry; must be in the future.
    pub fn expires_at(mut self, at: OffsetDateTime) -> NewKey {
        self.expires_at = at.format(&Rfc3339).ok();
        self.expires_in = None;
        self
    }

    /// Absolute expiry as RFC 3339 text (checked at creation).
    pub fn expires_at_text(mut self, at: impl Into<String>) -> NewKey {
        self.expires_at = Some(at.into());
        self.expires_in = None;
        self
    }

    /// Addresses or CIDR ranges allowed to use the key (at most 64).
    pub fn ip_allow<I, S>(mut self, nets: I) -> NewKey
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ip_allow = nets.into_iter().map(Into::into).collect();
        self
    }

    /// Addresses or CIDR ranges refused (at most 64); deny wins over allow.
    pub fn ip_deny<I, S>(mut self, nets: I) -> NewKey
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ip_deny = nets.into_iter().map(Into::into).collect();
        self
    }

    /// A JSON object of at most 4 KiB.
    pub fn metadata(mut self, metadata: serde_json::Value) -> NewKey {
        self.metadata = Some(metadata);
        self
    }

    /// The key's rate limits (at most 8, names unique); none by default.
    pub fn rate_limits(mut self, limits: RateLimits) -> NewKey {
        self.rate_limits = Some(LimitsInput::Checked(limits));
        self
    }

    /// The key's credits; unlimited by default. The store must keep
    /// credits (every store of keygate does; see
    /// [`KeyStore::credits`](crate::KeyStore::credits)).
    ///
    /// ```
    /// use keygate::{Credits, NewKey, Refill, RefillEvery};
    ///
    /// let monthly = Credits::new(5000)?.with_refill(Refill::new(5000, RefillEvery::Month)?);
    /// let new = NewKey::new("alice", "metered").credits(monthly);
    /// # let _ = new;
    /// # Ok::<(), keygate::CreditsError>(())
    /// ```
    pub fn credits(mut self, credits: Credits) -> NewKey {
        self.credits = Some(CreditsInput::Checked(Some(credits)));
        self
    }
}

/// Changes to an existing key. Absent fields are left as they are.
///
/// Scopes may only narrow: each new scope must be allowed by the current ones.
///
/// # Example
///
/// ```
/// use keygate::KeyUpdate;
///
/// let update = KeyUpdate::default().name("ci-2").scopes(["workspaces:read"]);
/// # let _ = update;
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    /// A new name, 1–128 characters.
    #[cfg_attr(feature = "admin", schema(min_length = 1, max_length = 128))]
    pub(crate) name: Option<String>,
    /// A new description, at most 1024 characters; empty clears it.
    #[cfg_attr(feature = "admin", schema(max_length = 1024))]
    pub(crate) description: Option<String>,
    /// New metadata, replacing the old object: at most 4 KiB serialized.
    #[cfg_attr(feature = "admin", schema(value_type = Option<Object>))]
    pub(crate) metadata: Option<serde_json::Value>,
    /// A new allow list, at most 64 entries.
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) ip_allow: Option<Vec<String>>,
    /// A new deny list, at most 64 entries.
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) ip_deny: Option<Vec<String>>,
    /// Narrower scopes, at most 64.
    #[cfg_attr(feature = "admin", schema(max_items = 64))]
    pub(crate) scopes: Option<Vec<String>>,
    /// New rate limits, replacing the whole list (at most 8); `[]` removes
    /// them.
    #[serde(default)]
    #[cfg_attr(
        feature = "admin",
        schema(value_type = Option<Vec<crate::key::RateLimitSchema>>, max_items = 8)
    )]
    pub(crate) rate_limits: Option<LimitsInput>,
    /// New credits, replacing the balance and the refill (the refill
    /// schedule starts from the current period); `null` removes them (the
    /// key becomes unlimited).
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "admin", schema(value_type = Option<Credits>))]
    pub(crate) credits: Option<CreditsInput>,
}

impl KeyUpdate {
    /// A new name (unique per owner among active keys).
    pub fn name(mut self, name: impl Into<String>) -> KeyUpdate {
        self.name = Some(name.into());
        self
    }

    /// A new description; an empty string clears it.
    pub fn description(mut self, description: impl Into<String>) -> KeyUpdate {
        self.description = Some(description.into());
        self
    }

    /// New metadata, replacing the old object.
    pub fn metadata(mut self, metadata: serde_json::Value) -> KeyUpdate {
        self.metadata = Some(metadata);
        self
    }

    /// A new allow list, replacing the old one.
    pub fn ip_allow<I, S>(mut self, nets: I) -> KeyUpdate
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ip_allow = Some(nets.into_iter().map(Into::into).collect());
        self
    }

    /// A new deny list, replacing the old one.
    pub fn ip_deny<I, S>(mut self, nets: I) -> KeyUpdate
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ip_deny = Some(nets.into_iter().map(Into::into).collect());
        self
    }

    /// Narrower scopes: each must be allowed by the key's current scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> KeyUpdate
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// New rate limits, replacing the whole list; an empty list removes
    /// them.
    pub fn rate_limits(mut self, limits: RateLimits) -> KeyUpdate {
        self.rate_limits = Some(LimitsInput::Checked(limits));
        self
    }

    /// New credits, replacing the balance and the refill; `None` removes
    /// them (unlimited). Credits reserved before and returned after are
    /// dropped. To add to the balance or set it while keeping the refill,
    /// use [`Keys::adjust_credits`](crate::Keys::adjust_credits).
    pub fn credits(mut self, credits: Option<Credits>) -> KeyUpdate {
        self.credits = Some(CreditsInput::Checked(credits));
        self
    }
}
