//! An [`AuditRecord`] as the SQL backends keep it (table `keygate_audit`):
//! the flat row and its conversions.

use std::net::IpAddr;

use time::OffsetDateTime;

use super::StoreError;
use crate::audit::{AuditAction, AuditRecord, AuditTarget};
use crate::token::KeyId;

/// A record as primitive column values, read by column name from either
/// backend.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub id: String,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target_key_id: String,
    pub target_owner: String,
    pub changes: String,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("stored audit record has an invalid {what}").into())
}

impl AuditRow {
    pub(crate) fn from_record(record: &AuditRecord) -> AuditRow {
        AuditRow {
            id: record.id.clone(),
            at: record.at.unix_timestamp(),
            // Serializing an actor and a map of JSON values cannot fail.
            actor: serde_json::to_string(&record.actor).unwrap_or_default(),
            action: record.action.as_str().to_owned(),
            target_key_id: record.target.key_id.to_string(),
            target_owner: record.target.owner.clone(),
            changes: serde_json::to_string(&record.changes).unwrap_or_default(),
            client_ip: record.client_ip.map(|ip| ip.to_string()),
            request_id: record.request_id.clone(),
        }
    }

    pub(crate) fn into_record(self) -> Result<AuditRecord, StoreError> {
        Ok(AuditRecord {
            id: self.id,
            at: OffsetDateTime::from_unix_timestamp(self.at).map_err(|_| corrupt("at"))?,
            actor: serde_json::from_str(&self.actor).map_err(|_| corrupt("actor"))?,
            action: self
                .action
                .parse::<AuditAction>()
                .map_err(|_| corrupt("action"))?,
            target: AuditTarget {
                key_id: KeyId::parse(&self.target_key_id).map_err(|_| corrupt("target_key_id"))?,
                owner: self.target_owner,
            },
            changes: serde_json::from_str(&self.changes).map_err(|_| corrupt("changes"))?,
            client_ip: self
                .client_ip
                .map(|ip| ip.parse::<IpAddr>().map_err(|_| corrupt("client_ip")))
                .transpose()?,
            request_id: self.request_id,
        })
    }

    /// Binds every column in table order to an `INSERT` with 9 placeholders.
    pub(crate) fn bind_insert<'q, DB>(
        self,
        query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database,
        for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    {
        query
            .bind(self.id)
            .bind(self.at)
            .bind(self.actor)
            .bind(self.action)
            .bind(self.target_key_id)
            .bind(self.target_owner)
            .bind(self.changes)
            .bind(self.client_ip)
            .bind(self.request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditContext};

    #[test]
    fn a_record_round_trips_through_a_row() {
        let key = crate::key::tests::sample(crate::key::now());
        let record = AuditContext::new(Actor::key(key.id, "root"))
            .client_ip("2001:db8::1".parse().unwrap())
            .request_id("abc")
            .record(
                AuditAction::Revoke,
                AuditTarget::of(&key),
                crate::audit::created(&key),
                crate::key::now(),
            );
        let back = AuditRow::from_record(&record).into_record().unwrap();
        assert_eq!(back, record);
        let mut row = AuditRow::from_record(&record);
        row.action = "key.explode".into();
        assert!(row.into_record().is_err());
    }
}
