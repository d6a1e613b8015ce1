//! What to read of the audit log: [`AuditQuery`], and its pages.

use time::OffsetDateTime;

use super::{AuditAction, AuditRecord};
use crate::store::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::token::KeyId;

/// Which records to read, newest first: every filter set must hold.
///
/// ```
/// use keygate::{AuditAction, AuditQuery};
///
/// let revocations = AuditQuery { owner: Some("alice".into()), action: Some(AuditAction::Revoke), ..AuditQuery::default() };
/// assert_eq!(revocations.limit, 0); // the default page size
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records whose target key belongs to this owner.
    pub owner: Option<String>,
    /// Only records of this target key.
    pub key_id: Option<KeyId>,
    /// Only records of this action.
    pub action: Option<AuditAction>,
    /// Only records made at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only records made before this time.
    pub until: Option<OffsetDateTime>,
    /// Page size; 0 means [`DEFAULT_PAGE_SIZE`], capped at [`MAX_PAGE_SIZE`].
    pub limit: u32,
    /// Continue after this position (from a previous [`AuditPage::next_cursor`]).
    pub cursor: Option<AuditCursor>,
}

impl AuditQuery {
    /// The effective page size: `limit`, or [`DEFAULT_PAGE_SIZE`] for 0,
    /// capped at [`MAX_PAGE_SIZE`].
    ///
    /// ```
    /// use keygate::AuditQuery;
    ///
    /// assert!(AuditQuery::default().page_size() > 0); // 0 means the default size
    /// assert_eq!(AuditQuery { limit: 10, ..AuditQuery::default() }.page_size(), 10);
    /// ```
    pub fn page_size(&self) -> u32 {
        match self.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        }
    }

    /// Whether `record` passes every filter and lies after the cursor.
    ///
    /// ```
    /// # use keygate::{Actor, AuditAction, AuditQuery, Keygate, MemoryStore, NewKey, Pepper};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
    /// let created = keygate.keys().create(NewKey::new("alice", "ci")).await?;
    /// let log = keygate.store().audit_log().expect("an audit log");
    /// let record = &log.audit_records(&AuditQuery::default()).await?.records[0];
    /// assert!(AuditQuery { action: Some(AuditAction::Create), ..AuditQuery::default() }.matches(record));
    /// assert!(!AuditQuery { owner: Some("bob".into()), ..AuditQuery::default() }.matches(record));
    /// # let _ = (created, Actor::default());
    /// # Ok(())
    /// # }
    /// ```
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let at = record.at.unix_timestamp();
        self.owner
            .as_ref()
            .is_none_or(|o| *o == record.target.owner)
            && self.key_id.is_none_or(|id| id == record.target.key_id)
            && self.action.is_none_or(|a| a == record.action)
            && self.since.is_none_or(|t| at >= t.unix_timestamp())
            && self.until.is_none_or(|t| at < t.unix_timestamp())
            && self
                .cursor
                .as_ref()
                .is_none_or(|c| AuditCursor::after(record) < *c)
    }
}

/// A position in the log's order (newest first: time, then id, both
/// descending). Opaque text in APIs: `<unix seconds>.<record id>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditCursor {
    /// Time of the last record returned, in Unix seconds.
    pub at: i64,
    /// Id of the last record returned.
    pub id: String,
}

impl AuditCursor {
    /// The cursor just after `record`.
    pub fn after(record: &AuditRecord) -> AuditCursor {
        AuditCursor {
            at: record.at.unix_timestamp(),
            id: record.id.clone(),
        }
    }
}

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at, self.id)
    }
}

/// A cursor string that was not produced by keygate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid audit cursor")]
pub struct InvalidAuditCursor;

impl std::str::FromStr for AuditCursor {
    type Err = InvalidAuditCursor;

    fn from_str(s: &str) -> Result<AuditCursor, InvalidAuditCursor> {
        let (at, id) = s.split_once('.').ok_or(InvalidAuditCursor)?;
        let at = at.parse::<i64>().map_err(|_| InvalidAuditCursor)?;
        let id = uuid::Uuid::try_parse(id).map_err(|_| InvalidAuditCursor)?;
        Ok(AuditCursor {
            at,
            id: id.hyphenated().to_string(),
        })
    }
}

/// One page of the audit log.
///
/// ```
/// # use keygate::{AuditQuery, Keygate, MemoryStore, NewKey, Pepper};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let keygate = Keygate::builder(MemoryStore::new()).pepper(Pepper::insecure_fixed_for_tests()).build()?;
/// for name in ["a", "b", "c"] {
///     keygate.keys().create(NewKey::new("alice", name)).await?;
/// }
/// let log = keygate.store().audit_log().expect("an audit log");
/// let first = log.audit_records(&AuditQuery { limit: 2, ..AuditQuery::default() }).await?;
/// assert_eq!(first.records.len(), 2);
/// let rest = log.audit_records(&AuditQuery { limit: 2, cursor: first.next_cursor, ..AuditQuery::default() }).await?;
/// assert_eq!(rest.records.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct AuditPage {
    /// Records, newest first.
    pub records: Vec<AuditRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<AuditCursor>,
}

impl AuditPage {
    /// The page of at most `size` records from `records`, which are in
    /// log order and may hold one more (saying a next page exists).
    pub(crate) fn from_rows(mut records: Vec<AuditRecord>, size: u32) -> AuditPage {
        let next_cursor = if records.len() > size as usize {
            records.truncate(size as usize);
            records.last().map(AuditCursor::after)
        } else {
            None
        };
        AuditPage {
            records,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_cursor_round_trips_through_its_text() {
        let cursor = AuditCursor {
            at: 1_764_806_400,
            id: "0193a7c4-5b1e-7cc0-9d2e-3f4a5b6c7d8e".into(),
        };
        assert_eq!(cursor.to_string().parse::<AuditCursor>(), Ok(cursor));
        for bad in [
            "",
            "1",
            "x.0193a7c4-5b1e-7cc0-9d2e-3f4a5b6c7d8e",
            "1.not-a-uuid",
            "1.",
        ] {
            assert!(bad.parse::<AuditCursor>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn the_cursor_parser_never_panics(s in ".{0,80}") {
            if let Ok(cursor) = s.parse::<AuditCursor>() {
                prop_assert_eq!(cursor.to_string().parse::<AuditCursor>(), Ok(cursor));
            }
        }
    }
}
