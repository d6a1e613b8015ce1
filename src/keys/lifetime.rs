//! Durations as users write them: `30m`, `12h`, `30d`, `1w`, `1y`, `never`.

use time::Duration;

/// Parses `<n><unit>` with unit `s`, `m`, `h`, `d`, `w` or `y` (365 days).
/// A bare `0` is zero. Returns a message on failure, for the caller to
/// attach to a field name.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (use s, m, h, d, w or y, e.g. 30d)"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a duration (expected a number and a unit, e.g. 30d, or never)"
        ));
    }
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let seconds_per_unit: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit (use s, m, h, d, w or y)"
            ));
        }
    };
    // Bound to 1000 years: far beyond any lifetime, far below overflow.
    match n.checked_mul(seconds_per_unit) {
        Some(secs) if secs <= 1000 * 365 * 86_400 => Ok(Duration::seconds(secs)),
        _ => Err(format!("{text:?} is too large")),
    }
}

/// Parses a lifetime: a positive duration, or `None` for `never`.
pub(crate) fn parse_lifetime(text: &str) -> Result<Option<Duration>, String> {
    if text.trim().eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let d = parse_duration(text)?;
    if d <= Duration::ZERO {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Some(d))
}

/// Formats a whole-second duration the way [`parse_duration`] reads it.
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.whole_seconds();
    for (unit, per) in [
        ("y", 365 * 86_400),
        ("w", 7 * 86_400),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
    ] {
        if secs != 0 && secs % per == 0 {
            return format!("{}{unit}", secs / per);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_examples_parse() {
        assert_eq!(parse_lifetime("30m"), Ok(Some(Duration::minutes(30))));
        assert_eq!(parse_lifetime("12h"), Ok(Some(Duration::hours(12))));
        assert_eq!(parse_lifetime("30d"), Ok(Some(Duration::days(30))));
        assert_eq!(parse_lifetime("1w"), Ok(Some(Duration::weeks(1))));
        assert_eq!(parse_lifetime("1y"), Ok(Some(Duration::days(365))));
        assert_eq!(parse_lifetime("never"), Ok(None));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::seconds(90)));
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        for bad in [
            "",
            "d",
            "30",
            "30x",
            "-1d",
            "1.5h",
            "30 d",
            "99999999999999999999d",
            "1001y",
            "0d",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse_lifetime("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::days(90),
            Duration::minutes(5),
            Duration::seconds(61),
            Duration::weeks(2),
            Duration::days(365),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    proptest! {
        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,24}") {
            let _ = parse_lifetime(&s);
        }

        #[test]
        fn number_and_unit_round_trip(n in 1i64..1_000, unit in "[smhdwy]") {
            let d = parse_duration(&format!("{n}{unit}")).unwrap();
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
