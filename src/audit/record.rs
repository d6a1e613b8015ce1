//! [`AuditRecord`] and its parts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::key::ApiKey;
use crate::token::KeyId;

/// Who made a change.
///
/// As JSON: `{"key_id", "owner"}` for a key calling the HTTP API,
/// `{"cli": "<os user>"}` for the `keygate` command line, and
/// `{"operator": "<name>"}` for code calling [`Keys`](crate::Keys)
/// without naming anyone else (the default actor is the operator
/// `"library"`; see [`KeygateBuilder::audit_actor`](crate::KeygateBuilder::audit_actor)).
///
/// ```
/// use keygate::Actor;
///
/// assert_eq!(serde_json::to_value(Actor::operator("migration")).unwrap(), serde_json::json!({"operator": "migration"}));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(untagged)]
#[non_exhaustive]
pub enum Actor {
    /// A key, through the HTTP API.
    Key {
        /// The calling key's id.
        #[cfg_attr(feature = "admin", schema(value_type = String))]
        key_id: KeyId,
        /// The calling key's owner.
        owner: String,
    },
    /// The `keygate` command line, run by this operating-system user.
    Cli {
        /// The user name.
        cli: String,
    },
    /// Code acting as the operator, under this name.
    Operator {
        /// The name.
        operator: String,
    },
}

impl Actor {
    /// The calling key `key_id` of `owner`.
    ///
    /// ```
    /// use keygate::{Actor, KeyId};
    ///
    /// let actor = Actor::key(KeyId::parse("0000000000000001")?, "alice");
    /// assert_eq!(serde_json::to_value(&actor).unwrap(), serde_json::json!({"key_id": "0000000000000001", "owner": "alice"}));
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn key(key_id: KeyId, owner: impl Into<String>) -> Actor {
        Actor::Key {
            key_id,
            owner: owner.into(),
        }
    }

    /// The command line, run by operating-system user `user`.
    ///
    /// ```
    /// use keygate::Actor;
    ///
    /// assert_eq!(serde_json::to_value(Actor::cli("root")).unwrap(), serde_json::json!({"cli": "root"}));
    /// ```
    pub fn cli(user: impl Into<String>) -> Actor {
        Actor::Cli { cli: user.into() }
    }

    /// Code acting as the operator `name`.
    ///
    /// ```
    /// use keygate::Actor;
    ///
    /// assert_eq!(Actor::default(), Actor::operator("library"));
    /// ```
    pub fn operator(name: impl Into<String>) -> Actor {
        Actor::Operator {
            operator: name.into(),
        }
    }
}

impl Default for Actor {
    /// The operator `"library"`.
    fn default() -> Actor {
        Actor::operator("library")
    }
}

/// What a change did.
///
/// ```
/// use keygate::AuditAction;
///
/// assert_eq!(serde_json::to_string(&AuditAction::Credits).unwrap(), r#""key.credits""#);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub enum AuditAction {
    /// `key.create`.
    #[serde(rename = "key.create")]
    Create,
    /// `key.update`.
    #[serde(rename = "key.update")]
    Update,
    /// `key.revoke`.
    #[serde(rename = "key.revoke")]
    Revoke,
    /// `key.rotate`.
    #[serde(rename = "key.rotate")]
    Rotate,
    /// `key.delete`.
    #[serde(rename = "key.delete")]
    Delete,
    /// `key.credits`: credits added or set.
    #[serde(rename = "key.credits")]
    Credits,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 6] = [
        AuditAction::Create,
        AuditAction::Update,
        AuditAction::Revoke,
        AuditAction::Rotate,
        AuditAction::Delete,
        AuditAction::Credits,
    ];

    /// The name written in records, e.g. `key.revoke`.
    ///
    /// ```
    /// use keygate::AuditAction;
    ///
    /// assert_eq!(AuditAction::Revoke.as_str(), "key.revoke");
    /// assert_eq!("key.rotate".parse::<AuditAction>(), Ok(AuditAction::Rotate));
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "key.create",
            AuditAction::Update => "key.update",
            AuditAction::Revoke => "key.revoke",
            AuditAction::Rotate => "key.rotate",
            AuditAction::Delete => "key.delete",
            AuditAction::Credits => "key.credits",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`AuditAction::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown action: expected key.create, key.update, key.revoke, key.rotate, key.delete or key.credits"
)]
pub struct UnknownAuditAction;

impl std::str::FromStr for AuditAction {
    type Err = UnknownAuditAction;

    fn from_str(s: &str) -> Result<AuditAction, UnknownAuditAction> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(UnknownAuditAction)
    }
}

/// The key a change was made to.
///
/// ```
/// use keygate::{ApiKey, AuditTarget, KeyId};
///
/// let key = ApiKey::new(KeyId::parse("0000000000000001")?, "alice");
/// let target = AuditTarget::of(&key);
/// assert_eq!((target.key_id, target.owner.as_str()), (key.id, "alice"));
/// # Ok::<(), keygate::TokenError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct AuditTarget {
    /// Its id.
    #[cfg_attr(feature = "admin", schema(value_type = String))]
    pub key_id: KeyId,
    /// Its owner.
    pub owner: String,
}

impl AuditTarget {
    /// The target `key`.
    ///
    /// ```
    /// use keygate::{ApiKey, AuditTarget, KeyId};
    ///
    /// let key = ApiKey::new(KeyId::parse("0000000000000001")?, "alice");
    /// assert_eq!(AuditTarget::of(&key).owner, "alice");
    /// # Ok::<(), keygate::TokenError>(())
    /// ```
    pub fn of(key: &ApiKey) -> AuditTarget {
        AuditTarget {
            key_id: key.id,
            owner: key.owner.clone(),
        }
    }
}

/// One field's value before and after a change (JSON `null` for a field
/// that did not exist: every `from` of a creation, every `to` of a
/// deletion).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct FieldChange {
    /// The value before: any JSON value (`null` when there was none).
    #[cfg_attr(feature = "admin", schema(value_type = Value))]
    pub from: serde_json::Value,
    /// The value after: any JSON value (`null` when there is none).
    #[cfg_attr(feature = "admin", schema(value_type = Value))]
    pub to: serde_json::Value,
}

/// Longest request id accepted from a proxy, and recorded.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether `id` is a request id keygate takes as it is: 1 to
/// [`MAX_REQUEST_ID_LEN`] bytes of visible ASCII (`!` to `~`).
///
/// ```
/// use keygate::valid_request_id;
///
/// assert!(valid_request_id("01a24268-8c4f-70ad-8b91-1f0ee0060551"));
/// assert!(!valid_request_id("has a space"));
/// assert!(!valid_request_id(""));
/// ```
pub fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Who is acting, from where, under which request id: what every change
/// made through [`Keys::acting`](crate::Keys::acting) writes into its
/// [`AuditRecord`].
///
/// ```
/// use keygate::{Actor, AuditContext};
///
/// let context = AuditContext::new(Actor::cli("root"))
///     .client_ip("10.0.0.7".parse().unwrap())
///     .request_id("has a space"); // not a valid request id: dropped
/// assert_eq!(context.request_id, None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditContext {
    /// Who.
    pub actor: Actor,
    /// The client's address, when known.
    pub client_ip: Option<IpAddr>,
    /// The request's id, when there is one.
    pub request_id: Option<String>,
}

impl AuditContext {
    /// `actor`, with no address and no request id.
    ///
    /// ```
    /// use keygate::{Actor, AuditContext};
    ///
    /// let context = AuditContext::new(Actor::cli("root"));
    /// assert_eq!((context.client_ip, context.request_id), (None, None));
    /// ```
    pub fn new(actor: Actor) -> AuditContext {
        AuditContext {
            actor,
            client_ip: None,
            request_id: None,
        }
    }

    /// With the client's address.
    ///
    /// ```
    /// use keygate::{Actor, AuditContext};
    ///
    /// let context = AuditContext::new(Actor::cli("root")).client_ip("10.0.0.7".parse().unwrap());
    /// assert_eq!(context.client_ip, Some("10.0.0.7".parse().unwrap()));
    /// ```
    #[must_use]
    pub fn client_ip(mut self, ip: IpAddr) -> AuditContext {
        self.client_ip = Some(ip);
        self
    }

    /// With the request id `id`, when it is [valid](valid_request_id)
    /// (otherwise none is recorded).
    ///
    /// ```
    /// use keygate::{Actor, AuditContext};
    ///
    /// let context = AuditContext::new(Actor::cli("root")).request_id("req-1");
    /// assert_eq!(context.request_id.as_deref(), Some("req-1"));
    /// ```
    #[must_use]
    pub fn request_id(mut self, id: impl Into<String>) -> AuditContext {
        let id = id.into();
        self.request_id = valid_request_id(&id).then_some(id);
        self
    }

    /// A record of `action` on `target` with `changes`, made now, with a
    /// fresh id.
    pub(crate) fn record(
        &self,
        action: AuditAction,
        target: AuditTarget,
        changes: BTreeMap<String, FieldChange>,
        at: OffsetDateTime,
    ) -> AuditRecord {
        AuditRecord {
            id: AuditRecord::new_id(),
            at,
            actor: self.actor.clone(),
            action,
            target,
            changes,
            client_ip: self.client_ip,
            request_id: self.request_id.clone(),
        }
    }
}

/// One change of one key, as the audit log keeps it.
///
/// As JSON: `id` (a UUID v7), `at` (RFC 3339 UTC), `actor`, `action`,
/// `target`, `changes` (field name → `{"from", "to"}`), `client_ip` and
/// `request_id` (each `null` when unknown).
///
/// ```
/// # use keygate::{AuditAction, AuditQuery, Keygate, MemoryStore, NewKey, Pepper};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
/// keygate.keys().revoke(&created.key.id, Some("leaked")).await?;
/// let log = keygate.store().audit_log().expect("an audit log");
/// let records = log.audit_records(&AuditQuery::default()).await?.records; // newest first
/// assert_eq!(records[0].action, AuditAction::Revoke);
/// assert_eq!(records[0].target.key_id, created.key.id);
/// assert_eq!(records[0].changes["revoked_reason"].to, serde_json::json!("leaked"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AuditRecord {
    /// The record's id: a UUID v7 (time-ordered).
    pub id: String,
    /// When the change was made.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "admin", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    /// Who made it.
    pub actor: Actor,
    /// What it did.
    pub action: AuditAction,
    /// The key it was made to.
    pub target: AuditTarget,
    /// Each field that changed, from what to what.
    pub changes: BTreeMap<String, FieldChange>,
    /// The client's address, when known.
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>))]
    pub client_ip: Option<IpAddr>,
    /// The request's id, when there was one.
    pub request_id: Option<String>,
}

impl AuditRecord {
    /// A record with a fresh id, for code writing records itself.
    pub fn new(
        at: OffsetDateTime,
        actor: Actor,
        action: AuditAction,
        target: AuditTarget,
        changes: BTreeMap<String, FieldChange>,
    ) -> AuditRecord {
        AuditRecord {
            id: AuditRecord::new_id(),
            at,
            actor,
            action,
            target,
            changes,
            client_ip: None,
            request_id: None,
        }
    }

    /// A fresh UUID v7.
    pub(crate) fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// This record with `field`'s change set (a store fills in what only
    /// its transaction knows, such as a credit balance).
    pub(crate) fn with_change(
        &self,
        field: &str,
        from: serde_json::Value,
        to: serde_json::Value,
    ) -> AuditRecord {
        let mut record = self.clone();
        if from != to {
            record
                .changes
                .insert(field.to_owned(), FieldChange { from, to });
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn actors_serialize_as_the_three_shapes() {
        let id = KeyId::parse("abcdefghij012345").unwrap();
        assert_eq!(
            serde_json::to_value(Actor::key(id, "alice")).unwrap(),
            serde_json::json!({"key_id": "abcdefghij012345", "owner": "alice"})
        );
        assert_eq!(
            serde_json::to_value(Actor::cli("root")).unwrap(),
            serde_json::json!({"cli": "root"})
        );
        for actor in [Actor::key(id, "a"), Actor::cli("b"), Actor::operator("c")] {
            let json = serde_json::to_string(&actor).unwrap();
            assert_eq!(serde_json::from_str::<Actor>(&json).unwrap(), actor);
        }
    }

    #[test]
    fn actions_round_trip_by_name() {
        for action in AuditAction::ALL {
            assert_eq!(action.as_str().parse::<AuditAction>(), Ok(action));
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::json!(action.as_str())
            );
        }
        assert!("key.frobnicate".parse::<AuditAction>().is_err());
        assert!("KEY.CREATE".parse::<AuditAction>().is_err());
    }

    #[test]
    fn request_ids_are_bounded_visible_ascii() {
        assert!(valid_request_id("0193a7c4-5b1e-7cc0-9d2e-3f4a5b6c7d8e"));
        assert!(valid_request_id(&"a".repeat(MAX_REQUEST_ID_LEN)));
        assert!(!valid_request_id(&"a".repeat(MAX_REQUEST_ID_LEN + 1)));
        for bad in ["", "a b", "tab\there", "é", "line\n"] {
            assert!(!valid_request_id(bad), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn action_parser_never_panics_and_accepts_only_names(s in ".{0,20}") {
            match s.parse::<AuditAction>() {
                Ok(action) => prop_assert_eq!(action.as_str(), s.as_str()),
                Err(_) => prop_assert!(AuditAction::ALL.iter().all(|a| a.as_str() != s)),
            }
        }

        #[test]
        fn a_valid_request_id_is_exactly_bounded_visible_ascii(s in "[ -~\t\u{e9}]{0,140}") {
            prop_assert_eq!(
                valid_request_id(&s),
                !s.is_empty() && s.len() <= MAX_REQUEST_ID_LEN && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
            );
        }
    }
}
