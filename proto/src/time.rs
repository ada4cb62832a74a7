//! Instants on the wire: RFC 3339 text at the edge, whole seconds since the Unix epoch inside.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Parses an RFC 3339 instant such as `2019-02-14T03:00:00Z` into seconds since the Unix epoch.
///
/// A naive `2019-02-14T03:00:00` or `2019-02-14 03:00:00` is read as UTC, as the Met Office
/// notifications mean it. Fractions of a second are rejected: every time in this system is a
/// whole number of seconds.
pub fn parse_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .map(|t| t.and_utc())
        })?;
    if parsed.timestamp_subsec_nanos() != 0 {
        return None;
    }
    Some(parsed.timestamp())
}

/// The current time in whole seconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Formats seconds since the Unix epoch as RFC 3339 (`2019-02-14T03:00:00Z`).
pub fn format_instant(seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{seconds} s since 1970-01-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_met_office_form_and_naive_forms() {
        assert_eq!(parse_instant("2019-02-14T03:00:00Z"), Some(1_550_113_200));
        assert_eq!(
            parse_instant("2019-02-14T03:00:00+00:00"),
            Some(1_550_113_200)
        );
        assert_eq!(parse_instant("2019-02-14 03:00:00"), Some(1_550_113_200));
        assert_eq!(parse_instant("1970-01-01"), Some(0));
    }

    #[test]
    fn rejects_non_times_and_fractions() {
        assert_eq!(parse_instant("banana"), None);
        assert_eq!(parse_instant("2019-02-30T03:00:00Z"), None);
        assert_eq!(parse_instant("2019-02-14T03:00:00.5Z"), None);
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_instant(1_550_113_200), "2019-02-14T03:00:00Z");
        assert_eq!(parse_instant(&format_instant(12_345_678)), Some(12_345_678));
    }
}
