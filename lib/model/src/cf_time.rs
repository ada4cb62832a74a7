//! CF time units: `<unit> since <reference>` for instants, `<unit>` for durations.

use roller_proto::time::parse_instant;

/// Seconds per unit for the units CF time coordinates use here.
fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        _ => return None,
    })
}

/// Parsed `<unit> since <reference>`: `seconds = reference + value * scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstantUnits {
    /// Seconds per unit.
    pub scale: f64,
    /// The reference instant, seconds since the Unix epoch.
    pub reference: i64,
}

/// Parses CF instant units such as `seconds since 1970-01-01 00:00:00` or
/// `hours since 1970-01-01T00:00:00Z`.
pub fn parse_instant_units(units: &str) -> Option<InstantUnits> {
    let (unit, reference) = units.split_once(" since ")?;
    let scale = unit_seconds(unit)?;
    let reference = reference.trim();
    let reference = reference.strip_suffix(" UTC").unwrap_or(reference);
    let reference = reference.strip_suffix(" +00:00").unwrap_or(reference);
    let reference = parse_instant(reference)?;
    Some(InstantUnits { scale, reference })
}

/// Parses CF duration units (`seconds`, `hours`, ...) into seconds per unit.
pub fn parse_duration_units(units: &str) -> Option<f64> {
    unit_seconds(units)
}

/// Converts a value in some unit to whole seconds; `None` if it is not a whole number of
/// seconds (allowing for float rounding) or out of range.
pub fn to_whole_seconds(value: f64, scale: f64) -> Option<i64> {
    let seconds = value * scale;
    let rounded = seconds.round();
    if !seconds.is_finite() || (seconds - rounded).abs() > 1e-3 || rounded.abs() > 9.0e15 {
        return None;
    }
    // Finite, integral and well inside i64's range (checked above).
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked above: a whole number within the range of i64"
    )]
    Some(rounded as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let u = parse_instant_units("seconds since 1970-01-01 00:00:00").expect("valid");
        assert_eq!(
            u,
            InstantUnits {
                scale: 1.0,
                reference: 0
            }
        );
        let u = parse_instant_units("hours since 2019-02-14T00:00:00Z").expect("valid");
        assert_eq!(u.scale, 3600.0);
        assert_eq!(u.reference, 1_550_102_400);
        assert!(parse_instant_units("fortnights since 1970-01-01").is_none());
        assert!(parse_instant_units("seconds").is_none());
        assert_eq!(parse_duration_units("hours"), Some(3600.0));
        assert_eq!(to_whole_seconds(2.5, 3600.0), Some(9000));
        assert_eq!(to_whole_seconds(0.5, 1.0), None);
    }
}
