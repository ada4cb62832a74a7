//! Durations in configuration: `"1h"`, `"30m"`, `"3600s"`, `"1d"` or a bare number of seconds.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number with an optional unit.
    #[error("`{0}` is not a duration; write e.g. \"1h\", \"30m\", \"3600s\" or 3600")]
    NotADuration(String),
    /// More seconds than fit.
    #[error("`{0}` is too long a duration")]
    TooLong(String),
    /// Negative where only 0 or more makes sense.
    #[error("`{0}` is negative; write a duration of 0 or more")]
    Negative(String),
}

/// A whole number of seconds (0 by default; each setting says whether 0 or a negative value
/// is allowed), written in config as `"1h"`, `"90m"`, `"3600"` or `3600`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub i64);

impl Seconds {
    /// Parses `"<n>[s|m|h|d]"` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let text = text.trim();
        let (digits, scale) = match text.char_indices().last() {
            Some((i, 's')) => (&text[..i], 1),
            Some((i, 'm')) => (&text[..i], 60),
            Some((i, 'h')) => (&text[..i], 3600),
            Some((i, 'd')) => (&text[..i], 86_400),
            _ => (text, 1),
        };
        let n: i64 = digits
            .trim()
            .parse()
            .map_err(|_| DurationError::NotADuration(text.to_owned()))?;
        n.checked_mul(scale)
            .map(Self)
            .ok_or_else(|| DurationError::TooLong(text.to_owned()))
    }

    /// Renders as the shortest exact form (`"1h"`, `"90m"`, `"7s"`).
    pub fn render(self) -> String {
        let s = self.0;
        if s != 0 && s % 86_400 == 0 {
            format!("{}d", s / 86_400)
        } else if s != 0 && s % 3600 == 0 {
            format!("{}h", s / 3600)
        } else if s != 0 && s % 60 == 0 {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.render())
    }
}

/// An ISO 8601 duration of days, hours, minutes and seconds (`PT54H`, `P5DT6H`, `PT15M`), as
/// the Met Office writes `mosg__forecast_run_duration`, in seconds. Years, months and weeks
/// (whose length varies) and fractions are refused. (Written here: one small function, where a
/// crate would bring a general parser for forms the feed never uses.)
pub fn iso8601_seconds(text: &str) -> Option<i64> {
    let rest = text.trim().strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((days, time)) => (days, Some(time)),
        None => (rest, None),
    };
    let mut total: i64 = 0;
    let mut any = false;
    let mut add = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut number = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let (_, scale) = allowed.by_ref().find(|(u, _)| *u == c)?;
            let n: i64 = number.parse().ok()?;
            total = total.checked_add(n.checked_mul(*scale)?)?;
            number.clear();
            any = true;
        }
        number.is_empty().then_some(())
    };
    add(days, &[('D', 86_400)])?;
    if let Some(time) = time {
        if time.is_empty() {
            return None;
        }
        add(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iso8601_run_durations() {
        assert_eq!(iso8601_seconds("PT54H"), Some(54 * 3600));
        assert_eq!(iso8601_seconds("PT120H"), Some(120 * 3600));
        assert_eq!(
            iso8601_seconds("P5DT6H30M"),
            Some(5 * 86_400 + 6 * 3600 + 1800)
        );
        assert_eq!(iso8601_seconds("PT15M"), Some(900));
        for bad in [
            "54H", "P", "PT", "P1Y", "PT1.5H", "PT1H2", "PT1M1H", "P1W", "",
        ] {
            assert_eq!(iso8601_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_and_renders() {
        assert_eq!(Seconds::parse("1h"), Ok(Seconds(3600)));
        assert_eq!(Seconds::parse("90m"), Ok(Seconds(5400)));
        assert_eq!(Seconds::parse("3600"), Ok(Seconds(3600)));
        assert_eq!(Seconds::parse("2d"), Ok(Seconds(172_800)));
        assert!(Seconds::parse("soon").is_err());
        assert_eq!(Seconds(5400).render(), "90m");
        assert_eq!(Seconds(3600).render(), "1h");
        assert_eq!(Seconds(7).render(), "7s");
    }
}
