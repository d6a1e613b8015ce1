//! [`RefillEvery`]: how often credits are refilled, and where the
//! boundaries of that calendar fall.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// How often a [`Refill`](crate::Refill) sets a key's credits back to its
/// amount. Boundaries are at 00:00 UTC: every day, every Monday (`week`),
/// or on the 1st of every month (`month`).
///
/// Written `"day"`, `"week"` or `"month"` in JSON and on the command line.
///
/// # Example
///
/// ```
/// use keygate::RefillEvery;
/// use time::macros::datetime;
///
/// // Wednesday 3 December 2026, 17:30 UTC.
/// let t = datetime!(2026-12-03 17:30 UTC);
/// assert_eq!(RefillEvery::Day.latest_boundary_at_or_before(t), datetime!(2026-12-03 0:00 UTC));
/// assert_eq!(RefillEvery::Week.latest_boundary_at_or_before(t), datetime!(2026-11-30 0:00 UTC));
/// assert_eq!(RefillEvery::Month.next_boundary_after(t), Some(datetime!(2027-01-01 0:00 UTC)));
/// assert_eq!("week".parse::<RefillEvery>(), Ok(RefillEvery::Week));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RefillEvery {
    /// At 00:00 UTC every day.
    Day,
    /// At 00:00 UTC every Monday.
    Week,
    /// At 00:00 UTC on the 1st of every month.
    Month,
}

/// A refill period other than `day`, `week` or `month`.
///
/// ```
/// use keygate::RefillEvery;
///
/// let error = "hourly".parse::<RefillEvery>().unwrap_err();
/// assert_eq!(error.0, "hourly");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a refill period: use day, week or month")]
pub struct InvalidRefillEvery(pub String);

impl std::str::FromStr for RefillEvery {
    type Err = InvalidRefillEvery;

    fn from_str(s: &str) -> Result<RefillEvery, InvalidRefillEvery> {
        match s {
            "day" => Ok(RefillEvery::Day),
            "week" => Ok(RefillEvery::Week),
            "month" => Ok(RefillEvery::Month),
            other => Err(InvalidRefillEvery(other.to_owned())),
        }
    }
}

impl std::fmt::Display for RefillEvery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn midnight(date: Date) -> OffsetDateTime {
    PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc()
}

fn first_of_month(date: Date) -> Date {
    date.replace_day(1).unwrap_or(date)
}

impl RefillEvery {
    /// The lowercase name used in JSON: `day`, `week` or `month`.
    ///
    /// ```
    /// use keygate::RefillEvery;
    ///
    /// assert_eq!(RefillEvery::Week.as_str(), "week");
    /// assert_eq!("month".parse::<RefillEvery>().map(RefillEvery::as_str), Ok("month"));
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            RefillEvery::Day => "day",
            RefillEvery::Week => "week",
            RefillEvery::Month => "month",
        }
    }

    /// The last refill boundary at or before `t` (in UTC): `t` itself when
    /// `t` is a boundary.
    ///
    /// For the first days of the earliest date `time` represents (year
    /// -9999), where the Monday before does not exist, the start of `t`'s
    /// day.
    ///
    /// ```
    /// use keygate::RefillEvery;
    /// use time::macros::datetime;
    ///
    /// let t = datetime!(2026-12-04 18:30 UTC); // a Friday
    /// assert_eq!(RefillEvery::Day.latest_boundary_at_or_before(t), datetime!(2026-12-04 0:00 UTC));
    /// assert_eq!(RefillEvery::Week.latest_boundary_at_or_before(t), datetime!(2026-11-30 0:00 UTC)); // Monday
    /// assert_eq!(RefillEvery::Month.latest_boundary_at_or_before(t), datetime!(2026-12-01 0:00 UTC));
    /// ```
    pub fn latest_boundary_at_or_before(self, t: OffsetDateTime) -> OffsetDateTime {
        let date = t.to_offset(UtcOffset::UTC).date();
        let boundary = match self {
            RefillEvery::Day => date,
            RefillEvery::Week => {
                let back = Duration::days(i64::from(date.weekday().number_days_from_monday()));
                date.checked_sub(back).unwrap_or(date)
            }
            RefillEvery::Month => first_of_month(date),
        };
        midnight(boundary)
    }

    /// The first refill boundary strictly after `t`; `None` past the last
    /// date `time` represents (year 9999).
    ///
    /// ```
    /// use keygate::RefillEvery;
    /// use time::macros::datetime;
    ///
    /// let t = datetime!(2026-12-04 18:30 UTC);
    /// assert_eq!(RefillEvery::Month.next_boundary_after(t), Some(datetime!(2027-01-01 0:00 UTC)));
    /// assert_eq!(RefillEvery::Day.next_boundary_after(t), Some(datetime!(2026-12-05 0:00 UTC)));
    /// ```
    pub fn next_boundary_after(self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let latest = self.latest_boundary_at_or_before(t).date();
        let next = match self {
            RefillEvery::Day => latest.next_day()?,
            RefillEvery::Week => {
                // `latest` is a Monday, except at the very start of time's range.
                let ahead = 7 - i64::from(latest.weekday().number_days_from_monday());
                latest.checked_add(Duration::days(ahead))?
            }
            RefillEvery::Month => {
                let (year, month) = match latest.month() {
                    Month::December => (latest.year().checked_add(1)?, Month::January),
                    month => (latest.year(), month.next()),
                };
                Date::from_calendar_date(year, month, 1).ok()?
            }
        };
        Some(midnight(next))
    }

    /// Whether `t` is a refill boundary.
    ///
    /// ```
    /// use keygate::RefillEvery;
    /// use time::macros::datetime;
    ///
    /// assert!(RefillEvery::Month.is_boundary(datetime!(2026-12-01 0:00 UTC)));
    /// assert!(!RefillEvery::Month.is_boundary(datetime!(2026-12-02 0:00 UTC)));
    /// assert!(RefillEvery::Week.is_boundary(datetime!(2026-11-30 0:00 UTC))); // a Monday
    /// ```
    pub fn is_boundary(self, t: OffsetDateTime) -> bool {
        self.latest_boundary_at_or_before(t) == t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn boundaries_fall_at_midnight_mondays_and_the_first() {
        let t = datetime!(2026-12-03 17:30:05 UTC);
        assert_eq!(
            RefillEvery::Day.next_boundary_after(t),
            Some(datetime!(2026-12-04 0:00 UTC))
        );
        assert_eq!(
            RefillEvery::Week.next_boundary_after(t),
            Some(datetime!(2026-12-07 0:00 UTC))
        );
        assert_eq!(
            RefillEvery::Month.latest_boundary_at_or_before(t),
            datetime!(2026-12-01 0:00 UTC)
        );
        // A boundary is its own latest, and the next one is a whole period on.
        let monday = datetime!(2026-11-30 0:00 UTC);
        assert!(RefillEvery::Week.is_boundary(monday));
        assert_eq!(
            RefillEvery::Week.latest_boundary_at_or_before(monday),
            monday
        );
        assert_eq!(
            RefillEvery::Week.next_boundary_after(monday),
            Some(datetime!(2026-12-07 0:00 UTC))
        );
        assert_eq!(
            RefillEvery::Month.next_boundary_after(datetime!(2026-12-31 23:59:59 UTC)),
            Some(datetime!(2027-01-01 0:00 UTC))
        );
        assert_eq!(
            RefillEvery::Month.next_boundary_after(datetime!(2028-01-31 12:00 UTC)),
            Some(datetime!(2028-02-01 0:00 UTC))
        );
    }

    #[test]
    fn other_offsets_are_read_in_utc() {
        // 01:00 on the 1st in +02:00 is still the 30th/31st in UTC.
        let t = datetime!(2026-12-01 1:00 +2);
        assert_eq!(
            RefillEvery::Month.latest_boundary_at_or_before(t),
            datetime!(2026-11-01 0:00 UTC)
        );
        assert_eq!(
            RefillEvery::Day.latest_boundary_at_or_before(t),
            datetime!(2026-11-30 0:00 UTC)
        );
    }

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for every in [RefillEvery::Day, RefillEvery::Week, RefillEvery::Month] {
            assert_eq!(every.as_str().parse::<RefillEvery>(), Ok(every));
            assert_eq!(
                serde_json::to_value(every).unwrap(),
                serde_json::Value::String(every.to_string())
            );
        }
        for bad in ["", "Day", "monthly", "1d", "year"] {
            assert!(bad.parse::<RefillEvery>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<RefillEvery>(r#""hour""#).is_err());
    }

    #[test]
    fn the_end_of_times_range_has_no_next_boundary() {
        let last = datetime!(9999-12-31 12:00 UTC);
        assert_eq!(RefillEvery::Day.next_boundary_after(last), None);
        assert_eq!(RefillEvery::Month.next_boundary_after(last), None);
    }

    fn every() -> impl Strategy<Value = RefillEvery> {
        prop_oneof![
            Just(RefillEvery::Day),
            Just(RefillEvery::Week),
            Just(RefillEvery::Month)
        ]
    }

    proptest! {
        #[test]
        fn latest_and_next_bracket_t_with_no_boundary_between(
            every in every(),
            // 1970 to 9000, with sub-second parts.
            secs in 0i64..221_845_392_000,
            nanos in 0u32..1_000_000_000,
        ) {
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                .replace_nanosecond(nanos).unwrap();
            let latest = every.latest_boundary_at_or_before(t);
            let next = every.next_boundary_after(t).unwrap();
            prop_assert!(latest <= t);
            prop_assert!(next > t);
            prop_assert!(every.is_boundary(latest));
            prop_assert!(every.is_boundary(next));
            // Nothing between: the boundary after `latest` is `next`.
            prop_assert_eq!(every.next_boundary_after(latest), Some(next));
            // And no boundary in (latest, t]: the latest of every second
            // before `next` is `latest`.
            let just_before = next - Duration::nanoseconds(1);
            prop_assert_eq!(every.latest_boundary_at_or_before(just_before), latest);
            let span = next - latest;
            match every {
                RefillEvery::Day => prop_assert_eq!(span, Duration::days(1)),
                RefillEvery::Week => prop_assert_eq!(span, Duration::weeks(1)),
                RefillEvery::Month => prop_assert!(
                    (Duration::days(28)..=Duration::days(31)).contains(&span)
                ),
            }
        }
    }
}
