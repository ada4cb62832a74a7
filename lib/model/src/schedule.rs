//! The scheduler's clock: a five-field cron expression saying when to emit roll events, and
//! the rule that says where the window ends (the newest run that should be available by now).

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::Seconds;

/// Why a cron expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not five fields.
    #[error("`{text}` has {count} fields; write five: minute hour day-of-month month day-of-week, e.g. \"5 * * * *\"")]
    FieldCount {
        /// The expression.
        text: String,
        /// How many fields it has.
        count: usize,
    },
    /// One field is malformed or out of range.
    #[error("cron {field} field `{text}`: {why} (allowed {lo}-{hi})")]
    Field {
        /// Which field (`minute`, `hour`...).
        field: &'static str,
        /// The field's text.
        text: String,
        /// What is wrong with it.
        why: &'static str,
        /// Smallest value allowed.
        lo: u32,
        /// Largest value allowed.
        hi: u32,
    },
}

/// Why the `schedule` section of a config is unusable; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `schedule.cron` does not parse.
    #[error("`schedule.cron`: {0}")]
    Cron(#[from] CronError),
    /// An hour in `schedule.run_hours` is not an hour of the day.
    #[error("`schedule.run_hours`: {0} is not an hour of the day (0..=23)")]
    RunHour(u32),
    /// `schedule.availability_delay` is negative.
    #[error("`schedule.availability_delay`: must not be negative")]
    NegativeDelay,
}

/// When the scheduler moves the window, and where the window ends.
///
/// The newest expected run is `now - availability_delay`, snapped down to the latest of
/// `run_hours` (UTC) and then to the rolling step; the window ends there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// When to emit a roll event: a five-field cron expression in UTC
    /// (`minute hour day-of-month month day-of-week`). Default `"5 * * * *"`: every hour at
    /// minute 5.
    #[serde(default = "default_cron")]
    pub cron: String,
    /// Hours (UTC) at which the model runs, e.g. `[3, 9, 15, 21]` for MOGREPS-UK. Empty: every
    /// step of the rolling dim is a run.
    #[serde(default)]
    pub run_hours: Vec<u32>,
    /// How long after its nominal time a run's files are expected to be available.
    #[serde(default)]
    pub availability_delay: Seconds,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            cron: default_cron(),
            run_hours: Vec::new(),
            availability_delay: Seconds(0),
        }
    }
}

fn default_cron() -> String {
    "5 * * * *".into()
}

impl ScheduleConfig {
    /// Checks the section: the cron expression parses, run hours are hours of the day, the
    /// delay is not negative.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        Cron::parse(&self.cron)?;
        if let Some(&hour) = self.run_hours.iter().find(|&&h| h > 23) {
            return Err(ScheduleError::RunHour(hour));
        }
        if self.availability_delay.0 < 0 {
            return Err(ScheduleError::NegativeDelay);
        }
        Ok(())
    }
}

/// A parsed cron expression (`minute hour day-of-month month day-of-week`, UTC). Each field is
/// `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a comma-separated list of those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    days_restricted: bool,
    weekdays_restricted: bool,
}

fn parse_field(
    text: &str,
    name: &'static str,
    lo: u32,
    hi: u32,
) -> Result<(Vec<bool>, bool), CronError> {
    let mut allowed = vec![false; hi as usize + 1];
    let bad = |why: &'static str| CronError::Field {
        field: name,
        text: text.to_owned(),
        why,
        lo,
        hi,
    };
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| bad("step is not a number"))?;
                if step == 0 {
                    return Err(bad("step must be positive"));
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a: u32 = a.parse().map_err(|_| bad("not a number"))?;
            let b: u32 = b.parse().map_err(|_| bad("not a number"))?;
            (a, b)
        } else {
            let a: u32 = range.parse().map_err(|_| bad("not a number"))?;
            (a, if item.contains('/') { hi } else { a })
        };
        if from < lo || to > hi || from > to {
            return Err(bad("out of range"));
        }
        for v in (from..=to).step_by(step as usize) {
            allowed[v as usize] = true;
        }
    }
    Ok((allowed, text != "*"))
}

impl Cron {
    /// Parses an expression such as `"5 * * * *"` (every hour at minute 5).
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(CronError::FieldCount {
                text: text.to_owned(),
                count: fields.len(),
            });
        };
        let (minutes, _) = parse_field(minute, "minute", 0, 59)?;
        let (hours, _) = parse_field(hour, "hour", 0, 23)?;
        let (days, days_restricted) = parse_field(day, "day-of-month", 1, 31)?;
        let (months, _) = parse_field(month, "month", 1, 12)?;
        let (mut weekdays, weekdays_restricted) = parse_field(weekday, "day-of-week", 0, 7)?;
        // 7 is Sunday, like 0.
        if weekdays[7] {
            weekdays[0] = true;
        }
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }

    fn matches(&self, t: DateTime<Utc>) -> bool {
        let day = self.days[t.day() as usize];
        let weekday = self.weekdays[t.weekday().num_days_from_sunday() as usize];
        // Classic cron: when both day fields are restricted, either may match.
        let date = if self.days_restricted && self.weekdays_restricted {
            day || weekday
        } else {
            day && weekday
        };
        self.minutes[t.minute() as usize]
            && self.hours[t.hour() as usize]
            && self.months[t.month() as usize]
            && date
    }

    /// The first whole minute strictly after `after` (seconds since the epoch) that the
    /// expression matches, or `None` if none does within four years (e.g. 31 February).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let first = after.div_euclid(60) + 1;
        (first..first + 4 * 366 * 24 * 60)
            .map(|minute| minute * 60)
            .find(|&t| DateTime::from_timestamp(t, 0).is_some_and(|t| self.matches(t)))
    }
}

/// The newest run that should be available at `now` (seconds since the epoch): `now` minus the
/// availability delay, snapped down to the latest configured run hour (UTC), then down to the
/// rolling grid `origin + k * step`. The scheduler's roll events end the window there.
pub fn newest_expected_run(now: i64, schedule: &ScheduleConfig, origin: i64, step: i64) -> i64 {
    let mut t = now - schedule.availability_delay.0;
    if !schedule.run_hours.is_empty() {
        let mut hour = t.div_euclid(3600) * 3600;
        // A run hour is at most a day back; validation keeps hours within 0..=23.
        for _ in 0..=24 {
            let h = u32::try_from(hour.rem_euclid(86_400) / 3600).unwrap_or(0);
            if schedule.run_hours.contains(&h) {
                break;
            }
            hour -= 3600;
        }
        t = hour;
    }
    origin + (t - origin).div_euclid(step) * step
}

#[cfg(test)]
mod tests {
    use super::*;
    use roller_proto::time::parse_instant;

    fn at(text: &str) -> i64 {
        parse_instant(text).expect("valid time")
    }

    #[test]
    fn every_hour_at_minute_five() {
        let cron = Cron::parse("5 * * * *").expect("valid");
        assert_eq!(
            cron.next_after(at("2026-11-24T10:04:59Z")),
            Some(at("2026-11-24T10:05:00Z"))
        );
        assert_eq!(
            cron.next_after(at("2026-11-24T10:05:00Z")),
            Some(at("2026-11-24T11:05:00Z"))
        );
    }

    #[test]
    fn steps_lists_ranges_and_weekdays() {
        let cron = Cron::parse("*/15 3,9 * * 1-5").expect("valid");
        // 2026-11-28 is a Saturday: the next match is Monday 03:00.
        assert_eq!(
            cron.next_after(at("2026-11-27T09:45:00Z")),
            Some(at("2026-11-30T03:00:00Z"))
        );
        assert_eq!(
            cron.next_after(at("2026-11-30T03:00:00Z")),
            Some(at("2026-11-30T03:15:00Z"))
        );
        assert_eq!(
            Cron::parse("0 0 31 2 *").expect("valid").next_after(0),
            None
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (text, needle) in [
            ("5 * * *", "five"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("*/0 * * * *", "step"),
            ("a * * * *", "number"),
        ] {
            let err = Cron::parse(text).expect_err(text);
            let err = err.to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn mogreps_runs_follow_the_clock() {
        let schedule = ScheduleConfig {
            cron: "5 * * * *".into(),
            run_hours: vec![3, 9, 15, 21],
            availability_delay: Seconds(5 * 3600),
        };
        let step = 3600;
        // 14:30 minus 5 h is 09:30: the 09 UTC run is the newest expected.
        assert_eq!(
            newest_expected_run(at("2026-11-24T14:30:00Z"), &schedule, 0, step),
            at("2026-11-24T09:00:00Z")
        );
        // 07:59 minus 5 h is 02:59: yesterday's 21 UTC run.
        assert_eq!(
            newest_expected_run(at("2026-11-24T07:59:00Z"), &schedule, 0, step),
            at("2026-11-23T21:00:00Z")
        );
        // Without run hours: snapped to the step.
        let hourly = ScheduleConfig::default();
        assert_eq!(
            newest_expected_run(at("2026-11-24T14:30:00Z"), &hourly, 0, step),
            at("2026-11-24T14:00:00Z")
        );
    }
}
