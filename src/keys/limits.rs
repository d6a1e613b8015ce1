//! The `rate_limits` field of a create or an update: as the
//! library's setters give it (already checked) or as a request body sends
//! it (checked here, so that a refusal names the field at fault, e.g.
//! `rate_limits[1].period`). The rules themselves are those of
//! [`RateLimit`] and [`RateLimits`].

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::KeyError;
use crate::limit::{
    LimitName, MAX_RATE_LIMITS, Period, RateLimit, RateLimitError, RateLimits, RateLimitsError,
};

/// Rate limits as given to [`NewKey`](crate::NewKey) or
/// [`KeyUpdate`](crate::KeyUpdate).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LimitsInput {
    /// Built by the library's setters: valid by construction.
    Checked(RateLimits),
    /// Sent in a request body, checked when the manager applies it.
    Json(Value),
}

impl<'de> Deserialize<'de> for LimitsInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LimitsInput, D::Error> {
        Value::deserialize(deserializer).map(LimitsInput::Json)
    }
}

/// One limit as sent: every field optional, so that a missing one is
/// named rather than reported as a shapeless serde error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    name: Option<Value>,
    limit: Option<Value>,
    period: Option<Value>,
    shared: Option<Value>,
}

/// The part of a limit a field name points at (the column of [`FIELDS`]).
#[derive(Clone, Copy)]
enum Part {
    Whole = 0,
    Name = 1,
    Limit = 2,
    Period = 3,
    Shared = 4,
}

/// Field names by position and part: `KeyError` names its field with a
/// `&'static str`, and a list is refused before any position past the
/// eighth is looked at.
const FIELDS: [[&str; 5]; MAX_RATE_LIMITS] = [
    [
        "rate_limits[0]",
        "rate_limits[0].name",
        "rate_limits[0].limit",
        "rate_limits[0].period",
        "rate_limits[0].shared",
    ],
    [
        "rate_limits[1]",
        "rate_limits[1].name",
        "rate_limits[1].limit",
        "rate_limits[1].period",
        "rate_limits[1].shared",
    ],
    [
        "rate_limits[2]",
        "rate_limits[2].name",
        "rate_limits[2].limit",
        "rate_limits[2].period",
        "rate_limits[2].shared",
    ],
    [
        "rate_limits[3]",
        "rate_limits[3].name",
        "rate_limits[3].limit",
        "rate_limits[3].period",
        "rate_limits[3].shared",
    ],
    [
        "rate_limits[4]",
        "rate_limits[4].name",
        "rate_limits[4].limit",
        "rate_limits[4].period",
        "rate_limits[4].shared",
    ],
    [
        "rate_limits[5]",
        "rate_limits[5].name",
        "rate_limits[5].limit",
        "rate_limits[5].period",
        "rate_limits[5].shared",
    ],
    [
        "rate_limits[6]",
        "rate_limits[6].name",
        "rate_limits[6].limit",
        "rate_limits[6].period",
        "rate_limits[6].shared",
    ],
    [
        "rate_limits[7]",
        "rate_limits[7].name",
        "rate_limits[7].limit",
        "rate_limits[7].period",
        "rate_limits[7].shared",
    ],
];

/// The name of part `part` of the limit at `index` (`rate_limits` past
/// the table, which the length check makes unreachable).
fn field(index: usize, part: Part) -> &'static str {
    FIELDS
        .get(index)
        .map_or("rate_limits", |fields| fields[part as usize])
}

/// The rate limits of `input`.
///
/// # Errors
///
/// [`KeyError::Invalid`] naming the field: `rate_limits` when it is not an
/// array or holds more than 8 limits, `rate_limits[i]` for an element that
/// is not an object or has an unknown field, `rate_limits[i].name`,
/// `.limit`, `.period` or `.shared` for a missing or invalid value (a
/// repeated name included).
pub(crate) fn rate_limits(input: &LimitsInput) -> Result<RateLimits, KeyError> {
    let items = match input {
        LimitsInput::Checked(limits) => return Ok(limits.clone()),
        LimitsInput::Json(Value::Null) => return Ok(RateLimits::empty()),
        LimitsInput::Json(Value::Array(items)) => items,
        LimitsInput::Json(_) => {
            return Err(KeyError::invalid(
                "rate_limits",
                "rate_limits must be an array of {\"name\", \"limit\", \"period\", \"shared\"?} objects",
            ));
        }
    };
    if items.len() > MAX_RATE_LIMITS {
        return Err(list_error(&RateLimitsError::TooMany { count: items.len() }));
    }
    let limits = items
        .iter()
        .enumerate()
        .map(|(index, item)| one(index, item))
        .collect::<Result<Vec<_>, _>>()?;
    RateLimits::new(limits).map_err(|e| list_error(&e))
}

/// The limit at `index`.
fn one(index: usize, item: &Value) -> Result<RateLimit, KeyError> {
    let raw = RawLimit::deserialize(item)
        .map_err(|e| KeyError::invalid(field(index, Part::Whole), e.to_string()))?;
    let required = |part: Part, value: Option<Value>| {
        value
            .filter(|v| !v.is_null())
            .ok_or_else(|| KeyError::invalid(field(index, part), "is required"))
    };
    let invalid = |source: RateLimitError| list_error(&RateLimitsError::Invalid { index, source });

    let name = required(Part::Name, raw.name)?;
    let name = name
        .as_str()
        .ok_or_else(|| KeyError::invalid(field(index, Part::Name), "must be a string"))?;
    let name = LimitName::parse(name).map_err(|e| invalid(RateLimitError::Name(e)))?;
    let limit = required(Part::Limit, raw.limit)?;
    let limit = limit.as_u64().ok_or_else(|| {
        KeyError::invalid(
            field(index, Part::Limit),
            "must be a whole number from 1 to 1000000000",
        )
    })?;
    let period = required(Part::Period, raw.period)?;
    let period = Period::deserialize(&period)
        .map_err(|e| KeyError::invalid(field(index, Part::Period), e.to_string()))?;
    let shared = match raw.shared {
        None | Some(Value::Null) => false,
        Some(Value::Bool(shared)) => shared,
        Some(_) => {
            return Err(KeyError::invalid(
                field(index, Part::Shared),
                "must be true or false",
            ));
        }
    };
    Ok(RateLimit::new(name, limit, period)
        .map_err(invalid)?
        .shared(shared))
}

/// A list's refusal as a [`KeyError::Invalid`] naming the field.
fn list_error(error: &RateLimitsError) -> KeyError {
    match error {
        RateLimitsError::TooMany { count } => KeyError::invalid(
            "rate_limits",
            format!("a key may carry at most {MAX_RATE_LIMITS} rate limits, got {count}"),
        ),
        RateLimitsError::DuplicateName { index, name } => KeyError::invalid(
            field(*index, Part::Name),
            format!(
                "{:?} is used by an earlier limit (names are unique per key)",
                name.as_str()
            ),
        ),
        RateLimitsError::Invalid { index, source } => {
            let part = match source.field() {
                "name" => Part::Name,
                "limit" => Part::Limit,
                "period" => Part::Period,
                _ => Part::Whole,
            };
            KeyError::invalid(field(*index, part), source.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<RateLimits, KeyError> {
        rate_limits(&LimitsInput::Json(serde_json::from_str(json).unwrap()))
    }

    fn field_of(json: &str) -> &'static str {
        check(json).unwrap_err().field().unwrap_or_default()
    }

    #[test]
    fn valid_limits_are_parsed_in_order() {
        let limits = check(
            r#"[{"name": "burst", "limit": 20, "period": "1s"},
                {"name": "hourly", "limit": 1000, "period": 3600, "shared": true}]"#,
        )
        .unwrap();
        let names: Vec<_> = limits.iter().map(|l| l.name().to_string()).collect();
        assert_eq!(names, ["burst", "hourly"]);
        assert_eq!(limits.as_slice()[1].period().as_secs(), 3600);
        assert!(limits.as_slice()[1].is_shared());
        assert!(check("[]").unwrap().is_empty());
        assert!(check("null").unwrap().is_empty());
    }

    #[test]
    fn every_refusal_names_its_field() {
        assert_eq!(field_of(r#"{"name": "a"}"#), "rate_limits");
        let nine = format!(
            "[{}]",
            (0..9)
                .map(|i| format!(r#"{{"name": "l{i}", "limit": 1, "period": "1s"}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(field_of(&nine), "rate_limits");
        let ok = r#"{"name": "ok", "limit": 1, "period": "1s"}"#;
        for (bad, field) in [
            (
                r#"{"name": "Bad", "limit": 1, "period": "1s"}"#,
                "rate_limits[1].name",
            ),
            (r#"{"limit": 1, "period": "1s"}"#, "rate_limits[1].name"),
            (
                r#"{"name": 5, "limit": 1, "period": "1s"}"#,
                "rate_limits[1].name",
            ),
            (
                r#"{"name": "ok", "limit": 1, "period": "1s"}"#,
                "rate_limits[1].name",
            ),
            (
                r#"{"name": "b", "limit": 0, "period": "1s"}"#,
                "rate_limits[1].limit",
            ),
            (
                r#"{"name": "b", "limit": -1, "period": "1s"}"#,
                "rate_limits[1].limit",
            ),
            (
                r#"{"name": "b", "limit": 1000000001, "period": "1s"}"#,
                "rate_limits[1].limit",
            ),
            (
                r#"{"name": "b", "limit": 1, "period": "2d"}"#,
                "rate_limits[1].period",
            ),
            (
                r#"{"name": "b", "limit": 1, "period": "1m"}"#,
                "rate_limits[1].period",
            ),
            (r#"{"name": "b", "limit": 1}"#, "rate_limits[1].period"),
            (
                r#"{"name": "b", "limit": 1, "period": "1s", "shared": "yes"}"#,
                "rate_limits[1].shared",
            ),
            (
                r#"{"name": "b", "limit": 1, "period": "1s", "extra": 1}"#,
                "rate_limits[1]",
            ),
            (r#""burst""#, "rate_limits[1]"),
        ] {
            let json = format!("[{ok}, {bad}]");
            let error = check(&json).unwrap_err();
            assert_eq!(error.code(), "bad_request", "{bad}");
            assert_eq!(error.field(), Some(field), "{bad}: {error}");
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let error = check(r#"[{"name": "b", "limit": 1, "period": "2d"}]"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"rate_limits[0].period: "2d" is longer than 1d"#
        );
        let error = check(
            r#"[{"name": "a", "limit": 1, "period": "1s"}, {"name": "a", "limit": 2, "period": "1h"}]"#,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"rate_limits[1].name: "a" is used by an earlier limit (names are unique per key)"#
        );
    }

    #[test]
    fn checked_limits_pass_through() {
        let limits: RateLimits =
            serde_json::from_str(r#"[{"name": "a", "limit": 3, "period": "1min"}]"#).unwrap();
        assert_eq!(
            rate_limits(&LimitsInput::Checked(limits.clone())).unwrap(),
            limits
        );
    }
}
