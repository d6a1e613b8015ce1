//! The flat row shape shared by the SQL backends, and its conversions.

use std::net::IpAddr;

use ipnet::IpNet;
use time::OffsetDateTime;

use super::StoreError;
use crate::key::{ApiKey, StoredKey};
use crate::scope::ScopeSet;
use crate::token::{Environment, KeyId};

/// A key record as primitive column values, read by column name from either
/// backend (`sqlx::FromRow` derive: no compile-time query checking).
#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    pub id: String,
    pub mac: Vec<u8>,
    pub display_prefix: String,
    pub name: String,
    pub description: Option<String>,
    pub owner: String,
    pub organization: Option<String>,
    pub environment: String,
    pub scopes: String,
    pub ip_allow: String,
    pub ip_deny: String,
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub superseded_by: Option<String>,
    pub revision: i64,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("stored key has an invalid {what}").into())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // Serializing scope sets, CIDR lists and JSON maps cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn time(secs: i64, what: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| corrupt(what))
}

fn opt_time(secs: Option<i64>, what: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    secs.map(|s| time(s, what)).transpose()
}

impl Row {
    pub(crate) fn from_stored(stored: &StoredKey) -> Row {
        let k = &stored.key;
        Row {
            id: k.id.to_string(),
            mac: stored.mac.to_vec(),
            display_prefix: k.display_prefix.clone(),
            name: k.name.clone(),
            description: k.description.clone(),
            owner: k.owner.clone(),
            organization: k.organization.clone(),
            environment: k.environment.as_str().to_owned(),
            scopes: json(&k.scopes),
            ip_allow: json(&k.ip_allow),
            ip_deny: json(&k.ip_deny),
            metadata: json(&k.metadata),
            created_at: k.created_at.unix_timestamp(),
            updated_at: k.updated_at.unix_timestamp(),
            expires_at: k.expires_at.map(OffsetDateTime::unix_timestamp),
            last_used_at: k.last_used_at.map(OffsetDateTime::unix_timestamp),
            last_used_ip: k.last_used_ip.map(|ip| ip.to_string()),
            revoked_at: k.revoked_at.map(OffsetDateTime::unix_timestamp),
            revoked_reason: k.revoked_reason.clone(),
            superseded_by: k.superseded_by.map(|id| id.to_string()),
            revision: stored.revision,
        }
    }

    pub(crate) fn into_stored(self) -> Result<StoredKey, StoreError> {
        let key = ApiKey {
            id: KeyId::parse(&self.id).map_err(|_| corrupt("id"))?,
            display_prefix: self.display_prefix,
            name: self.name,
            description: self.description,
            owner: self.owner,
            organization: self.organization,
            environment: self
                .environment
                .parse::<Environment>()
                .map_err(|_| corrupt("environment"))?,
            scopes: serde_json::from_str::<ScopeSet>(&self.scopes)
                .map_err(|_| corrupt("scope list"))?,
            ip_allow: serde_json::from_str::<Vec<IpNet>>(&self.ip_allow)
                .map_err(|_| corrupt("ip_allow list"))?,
            ip_deny: serde_json::from_str::<Vec<IpNet>>(&self.ip_deny)
                .map_err(|_| corrupt("ip_deny list"))?,
            metadata: serde_json::from_str(&self.metadata).map_err(|_| corrupt("metadata"))?,
            created_at: time(self.created_at, "created_at")?,
            updated_at: time(self.updated_at, "updated_at")?,
            expires_at: opt_time(self.expires_at, "expires_at")?,
            last_used_at: opt_time(self.last_used_at, "last_used_at")?,
            last_used_ip: self
                .last_used_ip
                .map(|ip| ip.parse::<IpAddr>().map_err(|_| corrupt("last_used_ip")))
                .transpose()?,
            revoked_at: opt_time(self.revoked_at, "revoked_at")?,
            revoked_reason: self.revoked_reason,
            superseded_by: self
                .superseded_by
                .map(|id| KeyId::parse(&id).map_err(|_| corrupt("superseded_by")))
                .transpose()?,
        };
        let mac = self.mac.as_slice().try_into().map_err(|_| corrupt("mac"))?;
        Ok(StoredKey {
            key,
            mac,
            revision: self.revision,
        })
    }
}

impl Row {
    /// Binds every column, in table order (`id` … `revision`), to an
    /// `INSERT` with 21 placeholders.
    pub(crate) fn bind_insert<'q, DB>(
        self,
        query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database,
        for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Vec<u8>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    {
        query
            .bind(self.id)
            .bind(self.mac)
            .bind(self.display_prefix)
            .bind(self.name)
            .bind(self.description)
            .bind(self.owner)
            .bind(self.organization)
            .bind(self.environment)
            .bind(self.scopes)
            .bind(self.ip_allow)
            .bind(self.ip_deny)
            .bind(self.metadata)
            .bind(self.created_at)
            .bind(self.updated_at)
            .bind(self.expires_at)
            .bind(self.last_used_at)
            .bind(self.last_used_ip)
            .bind(self.revoked_at)
            .bind(self.revoked_reason)
            .bind(self.superseded_by)
            .bind(self.revision)
    }

    /// Binds the mutable columns, then `id` and `revision`, to a
    /// compare-and-set `UPDATE … SET name, description, organization,
    /// scopes, ip_allow, ip_deny, metadata, updated_at, expires_at,
    /// revoked_at, revoked_reason, superseded_by … WHERE id AND revision`.
    pub(crate) fn bind_update<'q, DB>(
        self,
        query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database,
        for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Vec<u8>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    {
        query
            .bind(self.name)
            .bind(self.description)
            .bind(self.organization)
            .bind(self.scopes)
            .bind(self.ip_allow)
            .bind(self.ip_deny)
            .bind(self.metadata)
            .bind(self.updated_at)
            .bind(self.expires_at)
            .bind(self.revoked_at)
            .bind(self.revoked_reason)
            .bind(self.superseded_by)
            .bind(self.id)
            .bind(self.revision)
    }
}

/// Maps a sqlx error: connection-level failures are [`StoreError::Unavailable`].
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(e)),
        other => StoreError::Backend(Box::new(other)),
    }
}
