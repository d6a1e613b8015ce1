//! The rules on a key's fields (owner, organization, name, description,
//! scopes, IP lists, metadata, lifetime), each returning the parsed value or a
//! [`KeyError::Invalid`] naming the field.

use ipnet::IpNet;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::KeyError;
use super::lifetime::{format_duration, parse_lifetime};
use crate::scope::{Scope, ScopeCatalog, ScopeSet};

/// Longest owner, organization and name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest description and revocation reason, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Most scopes on one key.
pub const MAX_SCOPES: usize = 64;
/// Most entries in each IP list.
pub const MAX_IP_ENTRIES: usize = 64;
/// Largest metadata object, serialized, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Lifetime and catalog rules, configured on [`KeygateBuilder`](crate::KeygateBuilder).
#[derive(Clone, Debug)]
pub(crate) struct KeyPolicy {
    pub max_lifetime: Option<Duration>,
    pub default_lifetime: Option<Duration>,
    pub max_keys_per_owner: u32,
    pub catalog: Option<ScopeCatalog>,
}

/// Owner and organization: 1–128 printable characters.
pub(crate) fn identity(field: &'static str, value: &str) -> Result<String, KeyError> {
    let chars = value.chars().count();
    if value.trim().is_empty() {
        return Err(KeyError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if chars > MAX_NAME_CHARS {
        return Err(KeyError::invalid(
            field,
            format!("{field} must be at most {MAX_NAME_CHARS} characters, got {chars}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(KeyError::invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Key name: 1–128 characters, no control characters.
pub(crate) fn name(value: &str) -> Result<String, KeyError> {
    identity("name", value)
}

/// Free text up to 1024 characters; newlines and tabs are the only control
/// characters allowed.
pub(crate) fn text(field: &'static str, value: &str) -> Result<String, KeyError> {
    let chars = value.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(KeyError::invalid(
            field,
            format!("{field} must be at most {MAX_DESCRIPTION_CHARS} characters, got {chars}"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(KeyError::invalid(
            field,
            format!("{field} must not contain control characters other than newline and tab"),
        ));
    }
    Ok(value.to_owned())
}

/// The bound a new scope set must stay within (400 when it does not), and
/// how to name it: the key's current scopes, when an update narrows them.
pub(crate) struct ScopeBound<'a> {
    pub grants: &'a ScopeSet,
    /// Completes "scope X is not within …".
    pub holder: &'static str,
}

/// Scopes: at most 64, each valid, in the catalog when there is one, and
/// within `bound` when given.
pub(crate) fn scopes(
    raw: &[String],
    catalog: Option<&ScopeCatalog>,
    bound: Option<ScopeBound<'_>>,
) -> Result<ScopeSet, KeyError> {
    if raw.len() > MAX_SCOPES {
        return Err(KeyError::invalid(
            "scopes",
            format!(
                "a key may hold at most {MAX_SCOPES} scopes, got {}",
                raw.len()
            ),
        ));
    }
    let mut parsed = Vec::with_capacity(raw.len());
    for text in raw {
        let scope = Scope::parse(text).map_err(|e| KeyError::invalid("scopes", e.to_string()))?;
        if let Some(catalog) = catalog {
            catalog
                .check(&scope)
                .map_err(|e| KeyError::invalid("scopes", e.to_string()))?;
        }
        parsed.push(scope);
    }
    let set = ScopeSet::new(parsed);
    if let Some(bound) = bound
        && let Err(scope) = bound.grants.check_can_mint(&set)
    {
        return Err(KeyError::invalid(
            "scopes",
            format!("scope {scope} is not within {}", bound.holder),
        ));
    }
    Ok(set)
}

/// An IP list: at most 64 addresses or CIDR ranges. Host bits of a range
/// are cleared (`10.1.2.3/8` is stored as `10.0.0.0/8`).
pub(crate) fn ip_list(field: &'static str, raw: &[String]) -> Result<Vec<IpNet>, KeyError> {
    if raw.len() > MAX_IP_ENTRIES {
        return Err(KeyError::invalid(
            field,
            format!(
                "{field} may hold at most {MAX_IP_ENTRIES} entries, got {}",
                raw.len()
            ),
        ));
    }
    let mut nets: Vec<IpNet> = Vec::with_capacity(raw.len());
    for entry in raw {
        let text = entry.trim();
        let net = match text.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => match text.parse::<std::net::IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    let shown: String = text.chars().take(64).collect();
                    return Err(KeyError::invalid(
                        field,
                        format!("{shown:?} is not an IPv4/IPv6 address or CIDR range"),
                    ));
                }
            },
        };
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    Ok(nets)
}

/// Metadata: a JSON object of at most 4 KiB.
pub(crate) fn metadata(
    value: Option<&serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, KeyError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(serde_json::Map::new()),
        Some(serde_json::Value::Object(map)) => {
            let size = serde_json::to_vec(map)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_METADATA_BYTES {
                return Err(KeyError::invalid(
                    "metadata",
                    format!(
                        "metadata must be at most {MAX_METADATA_BYTES} bytes of JSON, got {size}"
                    ),
                ));
            }
            Ok(map.clone())
        }
        Some(_) => Err(KeyError::invalid(
            "metadata",
            "metadata must be a JSON object",
        )),
    }
}

/// The expiry of a new key from `expires_in` / `expires_at` and the policy.
pub(crate) fn expiry(
    expires_in: Option<&str>,
    expires_at: Option<&str>,
    policy: &KeyPolicy,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, KeyError> {
    let at = match (expires_in, expires_at) {
        (Some(_), Some(_)) => {
            return Err(KeyError::invalid(
                "expires_at",
                "give either expires_in or expires_at, not both",
            ));
        }
        (Some(text), None) => {
            match parse_lifetime(text).map_err(|m| KeyError::invalid("expires_in", m))? {
                None => None,
                Some(span) => Some(span.after(now).ok_or_else(|| {
                    KeyError::invalid("expires_in", "the lifetime ends too far in the future")
                })?),
            }
        }
        (None, Some(text)) => {
            let at = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
                let shown: String = text.chars().take(64).collect();
                KeyError::invalid(
                    "expires_at",
                    format!("{shown:?} is not an RFC 3339 timestamp (e.g. 2030-01-01T00:00:00Z)"),
                )
            })?;
            // Whole seconds: a key never outlives the instant it was given.
            let at = at.replace_nanosecond(0).unwrap_or(at);
            if at <= now {
                return Err(KeyError::invalid(
                    "expires_at",
                    "expires_at must be in the future",
                ));
            }
            Some(at)
        }
        (None, None) => policy.default_lifetime.map(|d| now + d),
    };
    let field = if expires_at.is_some() {
        "expires_at"
    } else {
        "expires_in"
    };
    match (at, policy.max_lifetime) {
        (None, Some(max)) => Err(KeyError::invalid(
            field,
            format!(
                "keys must expire: the maximum lifetime is {}",
                format_duration(max)
            ),
        )),
        (Some(at), Some(max)) if at > now + max => Err(KeyError::invalid(
            field,
            format!(
                "the lifetime exceeds the maximum of {}",
                format_duration(max)
            ),
        )),
        _ => Ok(at.map(|at| at.to_offset(time::UtcOffset::UTC))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> KeyPolicy {
        KeyPolicy {
            max_lifetime: None,
            default_lifetime: Some(Duration::days(90)),
            max_keys_per_owner: 0,
            catalog: None,
        }
    }

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2027-01-15 08:00:00 UTC)
    }

    #[test]
    fn identity_rules() {
        assert!(identity("owner", "alice@example.com").is_ok());
        assert!(identity("owner", "alice smith").is_ok());
        assert!(identity("owner", "").is_err());
        assert!(identity("owner", "   ").is_err());
        assert!(identity("owner", "a\u{7}").is_err());
        assert!(identity("owner", &"x".repeat(128)).is_ok());
        assert!(identity("owner", &"é".repeat(129)).is_err());
        assert_eq!(name("bad\nname").unwrap_err().field(), Some("name"));
    }

    #[test]
    fn text_allows_newlines_not_other_controls() {
        assert!(text("description", "line one\nline\ttwo").is_ok());
        assert!(text("description", "nul\0").is_err());
        assert!(text("description", &"d".repeat(1025)).is_err());
    }

    #[test]
    fn scope_rules() {
        let raw = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(scopes(&raw(&["a:b", "a:b"]), None, None).unwrap().len(), 1);
        assert!(scopes(&raw(&["A:b"]), None, None).is_err());
        let too_many: Vec<String> = (0..65).map(|i| format!("r{i}:read")).collect();
        assert!(scopes(&too_many, None, None).is_err());
        let catalog = ScopeCatalog::new().with("workspaces:read", "read").unwrap();
        assert!(scopes(&raw(&["workspaces:read"]), Some(&catalog), None).is_ok());
        assert!(scopes(&raw(&["workspaces:*"]), Some(&catalog), None).is_ok());
        assert!(scopes(&raw(&["templates:use"]), Some(&catalog), None).is_err());
        let grants = ScopeSet::parse(["workspaces:*"]).unwrap();
        let ceiling = || {
            Some(ScopeBound {
                grants: &grants,
                holder: "the test grants",
            })
        };
        assert!(scopes(&raw(&["workspaces:read"]), None, ceiling()).is_ok());
        let err = scopes(&raw(&["*:read"]), None, ceiling()).unwrap_err();
        assert!(err.to_string().contains("*:read"), "{err}");
    }

    #[test]
    fn ip_rules() {
        let raw = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let nets = ip_list(
            "ip_allow",
            &raw(&["10.1.2.3/8", "192.168.0.1", "2001:db8::/32"]),
        )
        .unwrap();
        assert_eq!(nets[0].to_string(), "10.0.0.0/8");
        assert_eq!(nets[1].to_string(), "192.168.0.1/32");
        let err = ip_list("ip_deny", &raw(&["10.0.0.0/33"])).unwrap_err();
        assert_eq!(err.field(), Some("ip_deny"));
        assert!(ip_list("ip_allow", &raw(&["example.com"])).is_err());
        let many: Vec<String> = (0..65).map(|i| format!("10.0.0.{i}")).collect();
        assert!(ip_list("ip_allow", &many).is_err());
    }

    #[test]
    fn metadata_rules() {
        assert!(metadata(Some(&serde_json::json!({"team": "ci"}))).is_ok());
        assert!(metadata(Some(&serde_json::json!([1, 2]))).is_err());
        let big = serde_json::json!({"x": "y".repeat(4100)});
        assert!(metadata(Some(&big)).is_err());
        assert!(metadata(None).unwrap().is_empty());
    }

    #[test]
    fn expiry_rules() {
        let p = policy();
        assert_eq!(
            expiry(None, None, &p, now()).unwrap(),
            Some(now() + Duration::days(90))
        );
        assert_eq!(expiry(Some("never"), None, &p, now()).unwrap(), None);
        assert_eq!(
            expiry(Some("30min"), None, &p, now()).unwrap(),
            Some(now() + Duration::minutes(30))
        );
        let err = expiry(Some("30m"), None, &p, now()).unwrap_err();
        assert_eq!(err.field(), Some("expires_in"));
        assert!(err.to_string().contains("min") && err.to_string().contains("mo"));
        // Calendar units: 2027-01-15T08:00:00Z plus a month and a year.
        assert_eq!(
            expiry(Some("1mo"), None, &p, now()).unwrap(),
            Some(time::macros::datetime!(2027-02-15 08:00:00 UTC))
        );
        assert_eq!(
            expiry(Some("1y"), None, &p, now()).unwrap(),
            Some(time::macros::datetime!(2028-01-15 08:00:00 UTC))
        );
        assert_eq!(
            expiry(None, Some("2030-01-01T00:00:00.900Z"), &p, now())
                .unwrap()
                .unwrap()
                .unix_timestamp(),
            1_893_456_000
        );
        assert!(expiry(None, Some("2020-01-01T00:00:00Z"), &p, now()).is_err());
        assert!(expiry(None, Some("tomorrow"), &p, now()).is_err());
        assert!(expiry(Some("1d"), Some("2030-01-01T00:00:00Z"), &p, now()).is_err());
        let capped = KeyPolicy {
            max_lifetime: Some(Duration::days(30)),
            ..policy()
        };
        assert_eq!(
            expiry(Some("never"), None, &capped, now())
                .unwrap_err()
                .field(),
            Some("expires_in")
        );
        assert!(expiry(Some("31d"), None, &capped, now()).is_err());
        assert!(expiry(Some("30d"), None, &capped, now()).is_ok());
        // A calendar month from January 15 is 31 days: over a 30-day maximum.
        assert!(expiry(Some("1mo"), None, &capped, now()).is_err());
        assert_eq!(
            expiry(None, Some("2030-01-01T00:00:00Z"), &capped, now())
                .unwrap_err()
                .field(),
            Some("expires_at")
        );
    }
}
