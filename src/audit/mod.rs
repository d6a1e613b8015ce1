//! The audit log: one [`AuditRecord`] for every change of a key — who
//! ([`Actor`]), what ([`AuditAction`]), to which key ([`AuditTarget`]),
//! which fields moved from what to what ([`FieldChange`]), from where and
//! under which request id ([`AuditContext`]).
//!
//! Records are written by the store in the same transaction as the change
//! they describe (see [`AuditLog`](crate::AuditLog)), read back a page at a
//! time with an [`AuditQuery`], newest first. A record never holds a
//! token, a MAC, a secret or the pepper: `changes` is the difference
//! between two key records ([`ApiKey`](crate::ApiKey) as JSON), which hold
//! none of them.
//!
//! # Example
//!
//! ```
//! use keygate::{Actor, AuditAction, AuditContext, AuditQuery, Keygate, MemoryStore, NewKey, Pepper};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keygate = Keygate::builder(MemoryStore::new())
//!     .pepper(Pepper::insecure_fixed_for_tests())
//!     .build()?;
//! let operator = AuditContext::new(Actor::operator("deploy-bot")).request_id("req-42");
//! let created = keygate.keys().acting(&operator).create(NewKey::new("alice", "ci")).await?;
//! keygate.keys().acting(&operator).revoke(&created.key.id, Some("rotated out")).await?;
//!
//! let log = keygate.store().audit_log().expect("the memory store keeps an audit log");
//! let page = log.audit_records(&AuditQuery::default()).await?;
//! assert_eq!(page.records.len(), 2);
//! let revoke = &page.records[0]; // newest first
//! assert_eq!(revoke.action, AuditAction::Revoke);
//! assert_eq!(revoke.request_id.as_deref(), Some("req-42"));
//! assert_eq!(revoke.changes["revoked_reason"].to, "rotated out");
//! let json = serde_json::to_string(&page.records)?;
//! assert!(!json.contains(created.token.expose()), "never the token");
//! # Ok(())
//! # }
//! ```

mod changes;
mod query;
mod record;

pub(crate) use changes::{changes_between, created, deleted};
pub use query::{AuditCursor, AuditPage, AuditQuery, InvalidAuditCursor};
pub use record::{
    Actor, AuditAction, AuditContext, AuditRecord, AuditTarget, FieldChange, MAX_REQUEST_ID_LEN,
    UnknownAuditAction, valid_request_id,
};
