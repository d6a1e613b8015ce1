//! What a key record looks like on the wire (SPEC §5).

#![allow(dead_code)]

/// Every field a key record carries (SPEC §5).
pub const RECORD_FIELDS: [&str; 22] = [
    "id",
    "display_prefix",
    "name",
    "description",
    "owner",
    "organization",
    "environment",
    "scopes",
    "ip_allow",
    "ip_deny",
    "metadata",
    "created_at",
    "updated_at",
    "expires_at",
    "last_used_at",
    "last_used_ip",
    "revoked_at",
    "revoked_reason",
    "superseded_by",
    "rate_limits",
    "credits",
    "status",
];
