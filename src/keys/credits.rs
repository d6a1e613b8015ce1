//! The `credits` field of a create or an update, and the body of a credit
//! adjustment: as the library's setters give them (already checked) or as
//! a request body sends them (checked here, so that a refusal names the
//! field at fault: `credits.remaining`, `credits.refill.amount`,
//! `credits.refill.every`). The rules themselves are those of [`Credits`]
//! and [`Refill`].

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::KeyError;
use crate::credits::{CreditChange, Credits, MAX_CREDITS, Refill, RefillEvery};

/// Credits as given to [`NewKey`](crate::NewKey) or
/// [`KeyUpdate`](crate::KeyUpdate).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CreditsInput {
    /// Built by the library's setters: valid by construction (`None`:
    /// unlimited).
    Checked(Option<Credits>),
    /// Sent in a request body (`null` included), checked when the manager
    /// applies it.
    Json(Value),
}

impl<'de> Deserialize<'de> for CreditsInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CreditsInput, D::Error> {
        Value::deserialize(deserializer).map(CreditsInput::Json)
    }
}

/// For a field where `null` means something (remove) and absence means
/// "unchanged": a present value, `null` included, is `Some`.
pub(crate) fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<CreditsInput>, D::Error> {
    Value::deserialize(deserializer).map(|v| Some(CreditsInput::Json(v)))
}

const SHAPE: &str = r#"credits must be an object {"remaining", "refill"?} or null (unlimited)"#;

fn count(value: &Value, field: &'static str, min: u64) -> Result<u64, KeyError> {
    value
        .as_u64()
        .filter(|n| (min..=MAX_CREDITS).contains(n))
        .ok_or_else(|| {
            KeyError::invalid(
                field,
                format!("must be a whole number from {min} to {MAX_CREDITS}"),
            )
        })
}

fn no_unknown(
    map: &Map<String, Value>,
    known: &[&str],
    field: &'static str,
) -> Result<(), KeyError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(KeyError::invalid(
            field,
            format!("unknown field {unknown:?}, expected {}", known.join(" or ")),
        )),
        None => Ok(()),
    }
}

/// The credits of `input`; `None` is unlimited.
///
/// # Errors
///
/// [`KeyError::Invalid`] naming the field: `credits` when it is neither an
/// object nor `null` or has an unknown field; `credits.remaining` when
/// missing, not a whole number or above 10^12; `credits.refill` when it is
/// neither an object nor `null` or has an unknown field;
/// `credits.refill.amount` when missing or not from 1 to 10^12;
/// `credits.refill.every` when missing or not `day`, `week` or `month`.
pub(crate) fn credits(input: &CreditsInput) -> Result<Option<Credits>, KeyError> {
    let map = match input {
        CreditsInput::Checked(credits) => return Ok(*credits),
        CreditsInput::Json(Value::Null) => return Ok(None),
        CreditsInput::Json(Value::Object(map)) => map,
        CreditsInput::Json(_) => return Err(KeyError::invalid("credits", SHAPE)),
    };
    no_unknown(map, &["remaining", "refill"], "credits")?;
    let remaining = map
        .get("remaining")
        .filter(|v| !v.is_null())
        .ok_or_else(|| KeyError::invalid("credits.remaining", "is required"))?;
    let remaining = count(remaining, "credits.remaining", 0)?;
    let refill = match map.get("refill") {
        None | Some(Value::Null) => None,
        Some(Value::Object(refill)) => Some(one_refill(refill)?),
        Some(_) => {
            return Err(KeyError::invalid(
                "credits.refill",
                r#"must be an object {"amount", "every"} or null"#,
            ));
        }
    };
    let credits = Credits::new(remaining)
        .map_err(|e| KeyError::invalid("credits.remaining", e.to_string()))?;
    Ok(Some(credits.with_refill(refill)))
}

fn one_refill(map: &Map<String, Value>) -> Result<Refill, KeyError> {
    no_unknown(map, &["amount", "every"], "credits.refill")?;
    let amount = map
        .get("amount")
        .filter(|v| !v.is_null())
        .ok_or_else(|| KeyError::invalid("credits.refill.amount", "is required"))?;
    let amount = count(amount, "credits.refill.amount", 1)?;
    let every = map
        .get("every")
        .filter(|v| !v.is_null())
        .ok_or_else(|| KeyError::invalid("credits.refill.every", "is required"))?;
    let every = every
        .as_str()
        .ok_or_else(|| KeyError::invalid("credits.refill.every", "must be day, week or month"))?
        .parse::<RefillEvery>()
        .map_err(|e| KeyError::invalid("credits.refill.every", e.to_string()))?;
    Refill::new(amount, every)
        .map_err(|e| KeyError::invalid("credits.refill.amount", e.to_string()))
}

/// The adjustment a body `{"add": N}` or `{"set": N}` asks for (the HTTP
/// API's).
///
/// # Errors
///
/// [`KeyError::Invalid`]: on `credits` when the body is not an object, has
/// neither or both of `add` and `set`, or has another field; on `add` or
/// `set` when its value is not a whole number from 0 to 10^12.
#[cfg_attr(not(feature = "admin"), allow(dead_code))]
pub(crate) fn change(body: &Value) -> Result<CreditChange, KeyError> {
    let Value::Object(map) = body else {
        return Err(KeyError::invalid(
            "credits",
            r#"the body must be a JSON object {"add": N} or {"set": N}"#,
        ));
    };
    no_unknown(map, &["add", "set"], "credits")?;
    match (map.get("add"), map.get("set")) {
        (Some(n), None) => Ok(CreditChange::Add(count(n, "add", 0)?)),
        (None, Some(n)) => Ok(CreditChange::Set(count(n, "set", 0)?)),
        _ => Err(KeyError::invalid(
            "credits",
            r#"give exactly one of "add" and "set""#,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Option<Credits>, KeyError> {
        credits(&CreditsInput::Json(serde_json::from_str(json).unwrap()))
    }

    fn field_of(json: &str) -> &'static str {
        check(json).unwrap_err().field().unwrap_or_default()
    }

    #[test]
    fn valid_credits_are_parsed() {
        let credits = check(r#"{"remaining": 5000, "refill": {"amount": 5000, "every": "month"}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(credits.remaining(), 5000);
        assert_eq!(credits.refill().unwrap().every(), RefillEvery::Month);
        assert_eq!(
            check(r#"{"remaining": 0}"#).unwrap(),
            Some(Credits::new(0).unwrap())
        );
        assert_eq!(
            check(r#"{"remaining": 1000000000000, "refill": null}"#).unwrap(),
            Some(Credits::new(MAX_CREDITS).unwrap())
        );
        assert_eq!(check("null").unwrap(), None);
    }

    #[test]
    fn every_refusal_names_its_field() {
        for (bad, field) in [
            (r#"5"#, "credits"),
            (r#"[]"#, "credits"),
            (r#"{"remaining": 1, "extra": 1}"#, "credits"),
            (r#"{}"#, "credits.remaining"),
            (r#"{"remaining": null}"#, "credits.remaining"),
            (r#"{"remaining": -1}"#, "credits.remaining"),
            (r#"{"remaining": 1.5}"#, "credits.remaining"),
            (r#"{"remaining": "5"}"#, "credits.remaining"),
            (r#"{"remaining": 1000000000001}"#, "credits.remaining"),
            (r#"{"remaining": 1, "refill": 5}"#, "credits.refill"),
            (
                r#"{"remaining": 1, "refill": {"amount": 1, "every": "day", "at": 1}}"#,
                "credits.refill",
            ),
            (
                r#"{"remaining": 1, "refill": {"every": "day"}}"#,
                "credits.refill.amount",
            ),
            (
                r#"{"remaining": 1, "refill": {"amount": 0, "every": "day"}}"#,
                "credits.refill.amount",
            ),
            (
                r#"{"remaining": 1, "refill": {"amount": 1000000000001, "every": "day"}}"#,
                "credits.refill.amount",
            ),
            (
                r#"{"remaining": 1, "refill": {"amount": 1}}"#,
                "credits.refill.every",
            ),
            (
                r#"{"remaining": 1, "refill": {"amount": 1, "every": "hour"}}"#,
                "credits.refill.every",
            ),
            (
                r#"{"remaining": 1, "refill": {"amount": 1, "every": 7}}"#,
                "credits.refill.every",
            ),
        ] {
            let error = check(bad).unwrap_err();
            assert_eq!(error.code(), "bad_request", "{bad}");
            assert_eq!(field_of(bad), field, "{bad}: {error}");
        }
    }

    #[test]
    fn an_adjustment_is_exactly_one_of_add_and_set() {
        let change = |json: &str| super::change(&serde_json::from_str(json).unwrap());
        assert_eq!(change(r#"{"add": 5}"#).unwrap(), CreditChange::Add(5));
        assert_eq!(change(r#"{"set": 0}"#).unwrap(), CreditChange::Set(0));
        for (bad, field) in [
            (r#"[]"#, "credits"),
            (r#"{}"#, "credits"),
            (r#"{"add": 1, "set": 2}"#, "credits"),
            (r#"{"add": 1, "by": 2}"#, "credits"),
            (r#"{"add": -1}"#, "add"),
            (r#"{"add": "1"}"#, "add"),
            (r#"{"set": 1000000000001}"#, "set"),
            (r#"{"set": null}"#, "set"),
        ] {
            let error = change(bad).unwrap_err();
            assert_eq!(error.field(), Some(field), "{bad}: {error}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_credits_are_accepted_exactly_within_their_bounds(
            remaining in proptest::prop_oneof![0u64..=MAX_CREDITS, proptest::num::u64::ANY],
            amount in proptest::prop_oneof![0u64..=MAX_CREDITS, proptest::num::u64::ANY],
            every in proptest::sample::select(vec!["day", "week", "month", "year", "Day", ""]),
        ) {
            let json = serde_json::json!({
                "remaining": remaining,
                "refill": {"amount": amount, "every": every},
            });
            let parsed = credits(&CreditsInput::Json(json.clone()));
            let valid = remaining <= MAX_CREDITS
                && (1..=MAX_CREDITS).contains(&amount)
                && ["day", "week", "month"].contains(&every);
            proptest::prop_assert_eq!(parsed.is_ok(), valid, "{}", json);
            if let Ok(Some(credits)) = parsed {
                // What is accepted serializes back to what was sent.
                proptest::prop_assert_eq!(serde_json::to_value(credits).unwrap(), json);
            }
        }
    }
}
