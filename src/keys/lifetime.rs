//! Durations as users write them: `90s`, `30min`, `12h`, `30d`,
//! `1w`, `3mo`, `1y`, `never` — the one parser behind `expires_in`, `grace`
//! and the CLI.
//!
//! `mo` and `y` are calendar units: `1mo` from January 31 ends on the last
//! day of February, `1y` from February 29 ends on February 28. They are
//! therefore a [`Span`], not a fixed number of seconds, and only become an
//! instant when added to a start ([`Span::after`]). A bare `m` is refused:
//! some tools read it as minutes, others as months.

use time::{Date, Duration, Month, OffsetDateTime};

/// The longest span accepted, in seconds (1000 years of 365 days): far
/// beyond any lifetime, far below overflow.
const MAX_SECONDS: i64 = 1000 * 365 * 86_400;
/// The longest span accepted, in calendar months (1000 years).
const MAX_MONTHS: i64 = 1000 * 12;

/// The units, longest first as [`format_duration`] tries them, with their
/// length in seconds. `mo` and `y` are calendar units and not listed.
const SECOND_UNITS: [(&str, i64); 5] = [
    ("w", 7 * 86_400),
    ("d", 86_400),
    ("h", 3_600),
    ("min", 60),
    ("s", 1),
];

/// What the error messages list as the accepted units.
const UNITS: &str = "s, min, h, d, w, mo or y";

/// A span of time as a user wrote it: whole seconds, or whole calendar
/// months (`mo`; `y` is twelve of them). Added to a start instant with
/// [`Span::after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    /// A fixed number of seconds (`s`, `min`, `h`, `d`, `w`).
    Seconds(i64),
    /// Calendar months (`mo`, `y`): the same day of the month that many
    /// months later, clamped to the last day of a shorter month.
    Months(i64),
}

impl Span {
    /// Nothing: zero seconds.
    pub(crate) const ZERO: Span = Span::Seconds(0);

    /// The instant this span after `start`, or `None` when that is beyond
    /// the dates `time` represents.
    pub(crate) fn after(self, start: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Span::Seconds(secs) => start.checked_add(Duration::seconds(secs)),
            Span::Months(months) => {
                let date = add_months(start.date(), months)?;
                Some(start.replace_date(date))
            }
        }
    }

    /// Whether the span is zero or negative.
    pub(crate) fn is_empty(self) -> bool {
        match self {
            Span::Seconds(n) | Span::Months(n) => n <= 0,
        }
    }

    /// Whether the span is negative.
    pub(crate) fn is_negative(self) -> bool {
        match self {
            Span::Seconds(n) | Span::Months(n) => n < 0,
        }
    }
}

impl From<Duration> for Span {
    fn from(d: Duration) -> Span {
        Span::Seconds(d.whole_seconds())
    }
}

/// `date` plus `months` calendar months, the day clamped to the length of
/// the month it lands in.
fn add_months(date: Date, months: i64) -> Option<Date> {
    let index = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = date.day().min(time::util::days_in_month(month, year));
    Date::from_calendar_date(year, month, day).ok()
}

/// Parses `<n><unit>` with unit `s`, `min`, `h`, `d`, `w`, `mo` (a calendar
/// month) or `y` (a calendar year). A bare `0` is zero; a bare `m` is
/// refused as ambiguous. Returns a message on failure, for the caller to
/// attach to a field name. Never panics.
pub(crate) fn parse_span(text: &str) -> Result<Span, String> {
    let text = text.trim();
    // What error messages echo: bounded, and printable through `{:?}`.
    let shown: String = text.chars().take(32).collect();
    if text == "0" {
        return Ok(Span::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{shown:?} has no unit (use {UNITS}, e.g. 30d)"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "{shown:?} is not a duration (expected a number and a unit, e.g. 30d, or never)"
        ));
    }
    let too_large = || format!("{shown:?} is too large (at most 1000 years)");
    let n: i64 = digits.parse().map_err(|_| too_large())?;
    let (per, calendar) = match unit {
        "s" => (1, false),
        "min" => (60, false),
        "h" => (3_600, false),
        "d" => (86_400, false),
        "w" => (7 * 86_400, false),
        "mo" => (1, true),
        "y" => (12, true),
        "m" => {
            return Err(format!(
                "{shown:?} is ambiguous: write min for minutes or mo for months"
            ));
        }
        _ => return Err(format!("{shown:?} has an unknown unit (use {UNITS})")),
    };
    let total = n.checked_mul(per).ok_or_else(too_large)?;
    match calendar {
        false if total <= MAX_SECONDS => Ok(Span::Seconds(total)),
        true if total <= MAX_MONTHS => Ok(Span::Months(total)),
        _ => Err(too_large()),
    }
}

/// Parses a lifetime: a positive span, or `None` for `never`.
pub(crate) fn parse_lifetime(text: &str) -> Result<Option<Span>, String> {
    if text.trim().eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let span = parse_span(text)?;
    if span.is_empty() {
        let shown: String = text.trim().chars().take(32).collect();
        return Err(format!("{shown:?} must be longer than zero"));
    }
    Ok(Some(span))
}

/// Parses a duration measured from now (the CLI's `--grace`): as
/// [`parse_span`], a calendar span resolved against the current instant.
#[cfg(any(test, feature = "cli"))]
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let now = OffsetDateTime::now_utc();
    let span = parse_span(text)?;
    span.after(now)
        .map(|at| at - now)
        .ok_or_else(|| format!("{:?} is too large", text.trim()))
}

/// Formats a whole-second duration the way [`parse_span`] reads it, in the
/// largest second-based unit that divides it (`w`, `d`, `h`, `min`, `s`;
/// never the calendar units, whose length varies).
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.whole_seconds();
    for (unit, per) in SECOND_UNITS {
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
    use time::macros::datetime;

    fn secs(d: Duration) -> Option<Span> {
        Some(Span::Seconds(d.whole_seconds()))
    }

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse_lifetime("90s"), Ok(secs(Duration::seconds(90))));
        assert_eq!(parse_lifetime("30min"), Ok(secs(Duration::minutes(30))));
        assert_eq!(parse_lifetime("12h"), Ok(secs(Duration::hours(12))));
        assert_eq!(parse_lifetime("30d"), Ok(secs(Duration::days(30))));
        assert_eq!(parse_lifetime("1w"), Ok(secs(Duration::weeks(1))));
        assert_eq!(parse_lifetime("3mo"), Ok(Some(Span::Months(3))));
        assert_eq!(parse_lifetime("1y"), Ok(Some(Span::Months(12))));
        assert_eq!(parse_lifetime("never"), Ok(None));
        assert_eq!(parse_lifetime(" NEVER "), Ok(None));
        assert_eq!(parse_span("0"), Ok(Span::ZERO));
        assert_eq!(parse_span(" 5min "), Ok(Span::Seconds(300)));
    }

    #[test]
    fn a_bare_m_is_ambiguous_and_names_min_and_mo() {
        for text in ["30m", "1m", "0m"] {
            let err = parse_lifetime(text).unwrap_err();
            assert!(err.contains("ambiguous"), "{err}");
            assert!(err.contains("min") && err.contains("mo"), "{err}");
        }
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
            "30D",
            "30mins",
            "1month",
            "99999999999999999999d",
            "1001y",
            "12001mo",
            "0d",
            "0mo",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse_lifetime("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(parse_lifetime("1000y").is_ok());
    }

    #[test]
    fn a_calendar_month_is_the_same_day_next_month_clamped() {
        let jan31 = datetime!(2027-01-31 10:30:00 UTC);
        assert_eq!(
            Span::Months(1).after(jan31),
            Some(datetime!(2027-02-28 10:30:00 UTC))
        );
        assert_eq!(
            Span::Months(1).after(datetime!(2028-01-31 00:00:00 UTC)),
            Some(datetime!(2028-02-29 00:00:00 UTC)),
            "leap year"
        );
        assert_eq!(
            Span::Months(1).after(datetime!(2027-03-15 08:00:00 UTC)),
            Some(datetime!(2027-04-15 08:00:00 UTC))
        );
        assert_eq!(
            Span::Months(1).after(datetime!(2027-12-31 23:59:59 UTC)),
            Some(datetime!(2028-01-31 23:59:59 UTC)),
            "across the year end"
        );
        assert_eq!(
            Span::Months(13).after(jan31),
            Some(datetime!(2028-02-29 10:30:00 UTC))
        );
    }

    #[test]
    fn a_calendar_year_keeps_the_date_and_clamps_february_29() {
        let span = parse_span("1y").unwrap();
        assert_eq!(
            span.after(datetime!(2028-02-29 12:00:00 UTC)),
            Some(datetime!(2029-02-28 12:00:00 UTC))
        );
        assert_eq!(
            span.after(datetime!(2027-06-01 00:00:00 UTC)),
            Some(datetime!(2028-06-01 00:00:00 UTC)),
            "366 days across a February 29"
        );
        assert_eq!(
            parse_span("4y")
                .unwrap()
                .after(datetime!(2028-02-29 12:00:00 UTC)),
            Some(datetime!(2032-02-29 12:00:00 UTC))
        );
    }

    #[test]
    fn spans_beyond_the_representable_dates_are_none() {
        let late = datetime!(9990-01-01 00:00:00 UTC);
        assert_eq!(parse_span("1000y").unwrap().after(late), None);
        assert_eq!(parse_span("1000w").unwrap().after(late), None);
    }

    #[test]
    fn format_emits_min_and_round_trips() {
        assert_eq!(format_duration(Duration::minutes(30)), "30min");
        assert_eq!(format_duration(Duration::days(365)), "365d");
        assert_eq!(format_duration(Duration::weeks(2)), "2w");
        assert_eq!(format_duration(Duration::seconds(61)), "61s");
        for d in [
            Duration::days(90),
            Duration::minutes(5),
            Duration::seconds(61),
            Duration::weeks(2),
            Duration::days(365),
        ] {
            assert_eq!(parse_span(&format_duration(d)), Ok(Span::from(d)));
        }
    }

    #[test]
    fn duration_from_now_resolves_calendar_units() {
        assert_eq!(parse_duration("1h"), Ok(Duration::hours(1)));
        let month = parse_duration("1mo").unwrap();
        assert!(month >= Duration::days(28) && month <= Duration::days(31));
        assert!(parse_duration("30m").is_err());
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(s in "\\PC{0,24}") {
            let _ = parse_lifetime(&s);
            let _ = parse_duration(&s);
        }

        #[test]
        fn the_parser_never_panics_on_near_misses(
            n in "[0-9]{0,22}",
            unit in "(s|m|mi|min|mo|mon|h|d|w|y|ms|)",
        ) {
            let _ = parse_lifetime(&format!("{n}{unit}"));
        }

        #[test]
        fn second_spans_round_trip_through_format(secs in 1i64..=MAX_SECONDS) {
            let d = Duration::seconds(secs);
            prop_assert_eq!(parse_span(&format_duration(d)), Ok(Span::Seconds(secs)));
        }

        #[test]
        fn number_and_unit_round_trip(n in 1i64..1_000, unit in "(s|min|h|d|w)") {
            let span = parse_span(&format!("{n}{unit}")).unwrap();
            let Span::Seconds(secs) = span else { panic!("{span:?}") };
            prop_assert_eq!(parse_span(&format_duration(Duration::seconds(secs))).unwrap(), span);
        }

        #[test]
        fn calendar_spans_land_on_a_valid_date_no_later_than_the_day(
            start in 0i64..4_000_000_000,
            months in 1i64..=MAX_MONTHS,
        ) {
            let start = OffsetDateTime::from_unix_timestamp(start).unwrap();
            if let Some(end) = Span::Months(months).after(start) {
                prop_assert!(end > start);
                prop_assert!(end.day() <= start.day());
                prop_assert_eq!(end.time(), start.time());
            }
        }
    }
}
