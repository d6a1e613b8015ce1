//! [`Period`]: the window of a rate limit, whole seconds from 1s to 1d.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest period: one day, in seconds.
pub const MAX_PERIOD_SECS: u32 = 86_400;

/// The period of a rate limit: whole seconds, from `1s` to `1d`.
///
/// Its text form uses keygate's duration units `s`, `min`, `h` and `d`
/// (`"1s"`, `"90s"`, `"30min"`, `"1h"`, `"1d"`); it is written in the
/// largest unit that divides it. A bare `m` is refused as ambiguous.
///
/// ```
/// use keygate::Period;
///
/// let period: Period = "90min".parse()?;
/// assert_eq!(period.as_secs(), 5_400);
/// assert_eq!(Period::from_secs(3_600)?.to_string(), "1h");
/// assert!("1m".parse::<Period>().is_err());
/// # Ok::<(), keygate::PeriodError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period(u32);

/// Units from the largest, as written and as multiples of a second.
const UNITS: [(&str, u32); 4] = [("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)];

impl Period {
    /// One second, the shortest period.
    pub const ONE_SECOND: Period = Period(1);

    /// One day, the longest period.
    pub const ONE_DAY: Period = Period(MAX_PERIOD_SECS);

    /// A period of `secs` seconds.
    ///
    /// # Errors
    ///
    /// [`PeriodError`] unless `1 <= secs <= 86_400`.
    ///
    /// ```
    /// use keygate::Period;
    ///
    /// assert_eq!(Period::from_secs(3600)?, Period::parse("1h")?);
    /// assert!(Period::from_secs(0).is_err());
    /// assert!(Period::from_secs(86_401).is_err()); // longer than a day
    /// # Ok::<(), keygate::PeriodError>(())
    /// ```
    pub fn from_secs(secs: u64) -> Result<Period, PeriodError> {
        match u32::try_from(secs) {
            Ok(secs @ 1..=MAX_PERIOD_SECS) => Ok(Period(secs)),
            _ => Err(PeriodError::range(&format!("{secs}s"), secs == 0)),
        }
    }

    /// Parses `<n><unit>`, unit `s`, `min`, `h` or `d`.
    ///
    /// # Errors
    ///
    /// [`PeriodError`], naming the text, when it is not a number and one of
    /// those units, when the unit is a bare `m`, or when the period is
    /// outside `1s..=1d`.
    ///
    /// ```
    /// use keygate::Period;
    ///
    /// assert_eq!(Period::parse("90s")?.as_secs(), 90);
    /// assert_eq!(Period::parse("1d")?.as_secs(), 86_400);
    /// assert!(Period::parse("2d").is_err());
    /// assert!(Period::parse("1m").is_err()); // ambiguous: write 1min
    /// # Ok::<(), keygate::PeriodError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Period, PeriodError> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let per = match unit {
            "m" => {
                return Err(PeriodError::new(
                    text,
                    "is ambiguous: write min for minutes",
                ));
            }
            _ => UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, per)| *per),
        };
        let (Some(per), false) = (per, number.is_empty()) else {
            return Err(PeriodError::new(
                text,
                "is not a period (a whole number and a unit s, min, h or d, from 1s to 1d)",
            ));
        };
        // Any number longer than this is far above a day in every unit.
        let n: u64 = if number.len() > 12 {
            u64::MAX
        } else {
            number.parse().unwrap_or(u64::MAX)
        };
        match n.saturating_mul(u64::from(per)) {
            0 => Err(PeriodError::range(text, true)),
            secs if secs > u64::from(MAX_PERIOD_SECS) => Err(PeriodError::range(text, false)),
            // In range, so it fits a u32.
            secs => Ok(Period(secs as u32)),
        }
    }

    /// The period in seconds, 1 to 86 400.
    ///
    /// ```
    /// use keygate::Period;
    ///
    /// assert_eq!(Period::parse("30min")?.as_secs(), 1800);
    /// # Ok::<(), keygate::PeriodError>(())
    /// ```
    pub fn as_secs(self) -> u64 {
        u64::from(self.0)
    }

    /// The period as a [`Duration`].
    ///
    /// ```
    /// use keygate::Period;
    ///
    /// assert_eq!(Period::parse("1h")?.as_duration(), std::time::Duration::from_secs(3600));
    /// # Ok::<(), keygate::PeriodError>(())
    /// ```
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.as_secs())
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `s` divides everything, so the search always ends.
        let (unit, per) = UNITS
            .iter()
            .find(|(_, per)| self.0.is_multiple_of(*per))
            .copied()
            .unwrap_or(("s", 1));
        write!(f, "{}{unit}", self.0 / per)
    }
}

impl fmt::Debug for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Period({self})")
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Period, PeriodError> {
        Period::parse(s)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    /// A string such as `"1h"`, or a whole number of seconds.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Period, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Period;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a period such as \"1s\", \"30min\", \"1h\" or \"1d\"")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Period, E> {
                Period::parse(v).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Period, E> {
                Period::from_secs(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Why a text or a number is not a [`Period`]. Its message names the text
/// (cut to 32 characters) and the allowed range, e.g.
/// `"2d" is longer than 1d`.
///
/// ```
/// use keygate::Period;
///
/// assert!(Period::parse("1w").is_err()); // at most a day
/// assert!(Period::parse("soon").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown:?} {problem}")]
pub struct PeriodError {
    shown: String,
    problem: &'static str,
}

impl PeriodError {
    fn new(text: &str, problem: &'static str) -> PeriodError {
        PeriodError {
            shown: text.chars().take(32).collect(),
            problem,
        }
    }

    fn range(text: &str, too_short: bool) -> PeriodError {
        let problem = match too_short {
            true => "is shorter than 1s (a period is 1s to 1d)",
            false => "is longer than 1d",
        };
        PeriodError::new(text, problem)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Period;

    #[test]
    fn periods_take_s_min_h_and_d() {
        for (text, secs) in [
            ("1s", 1),
            ("90s", 90),
            ("30min", 1_800),
            ("1h", 3_600),
            ("1d", 86_400),
            ("24h", 86_400),
        ] {
            assert_eq!(Period::parse(text).map(Period::as_secs), Ok(secs), "{text}");
        }
    }

    #[test]
    fn periods_are_written_in_the_largest_unit_that_divides_them() {
        for (secs, text) in [
            (1, "1s"),
            (90, "90s"),
            (120, "2min"),
            (1_800, "30min"),
            (7_200, "2h"),
            (86_400, "1d"),
            (86_399, "86399s"),
        ] {
            assert_eq!(Period::from_secs(secs).unwrap().to_string(), text);
        }
    }

    #[test]
    fn out_of_range_and_malformed_periods_are_refused_with_the_text_named() {
        let message = |text: &str| Period::parse(text).unwrap_err().to_string();
        assert_eq!(message("2d"), r#""2d" is longer than 1d"#);
        assert_eq!(message("86401s"), r#""86401s" is longer than 1d"#);
        assert!(message("0s").contains("shorter than 1s"));
        assert!(message("1m").contains("ambiguous: write min"));
        for bad in [
            "",
            "s",
            "1",
            "1 s",
            " 1s",
            "1.5h",
            "-1s",
            "1w",
            "1sec",
            "99999999999999999999999d",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}x", "9".repeat(60));
        assert!(message(&long).starts_with(&format!("{:?}", &long[..32])));
        assert!(Period::from_secs(0).is_err());
        assert!(Period::from_secs(86_401).is_err());
    }

    #[test]
    fn serde_takes_text_or_seconds_and_writes_text() {
        let period: Period = serde_json::from_str("\"30min\"").unwrap();
        assert_eq!(serde_json::to_string(&period).unwrap(), "\"30min\"");
        assert_eq!(
            serde_json::from_str::<Period>("60").unwrap().to_string(),
            "1min"
        );
        assert!(serde_json::from_str::<Period>("\"2d\"").is_err());
        assert!(serde_json::from_str::<Period>("0").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = Period::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_number_shaped_text(n in any::<u64>(), unit in "(s|min|h|d|m|)") {
            let _ = Period::parse(&format!("{n}{unit}"));
        }

        #[test]
        fn format_then_parse_round_trips(secs in 1u64..=86_400) {
            let period = Period::from_secs(secs).unwrap();
            prop_assert_eq!(Period::parse(&period.to_string()), Ok(period));
        }
    }
}
