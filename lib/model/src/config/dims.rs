//! The `[[message_dims]]` and `[[file_dims]]` sections: the dims a notification names and the dims
//! inside a file.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};
use crate::duration::Seconds;

/// A dim whose index comes from a scalar coordinate of the file (e.g. `forecast_period`).
///
/// Its values are evenly spaced (`start`, `step`, `size`), or given by `segments` (e.g. hourly
/// to 54 h, then 3-hourly to 120 h, from `start`), or listed in `values`. Segments are turned
/// into `values` when the config is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageDimConfig {
    /// Coordinate name in the file and dim name in the dataset.
    pub name: String,
    /// Spacing (evenly spaced values only).
    #[serde(default = "zero_seconds")]
    pub step: Seconds,
    /// Number of indices (`index = (value - start) / step`, `0 <= index < size`); with
    /// `segments` or `values`, the number of values (may be left out).
    #[serde(default)]
    pub size: u32,
    /// Value of index 0.
    #[serde(default = "zero_seconds")]
    pub start: Seconds,
    /// Runs of evenly spaced values, each continuing from the last value of the one before
    /// (the first from `start`) by `step` up to and including `until`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentConfig>,
    /// Every value, increasing (`["0h", "15m", "30m"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Seconds>,
}

/// One evenly spaced run of a message dim's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// Spacing in this run.
    pub step: Seconds,
    /// Last value of this run.
    pub until: Seconds,
}

impl MessageDimConfig {
    /// The value (seconds) at `index`.
    pub fn value_at(&self, index: u32) -> i64 {
        match self.values.get(index as usize) {
            Some(v) => v.0,
            None if self.values.is_empty() => self.start.0 + i64::from(index) * self.step.0,
            None => i64::MAX,
        }
    }

    /// The index of `value`, if it is one of the dim's values.
    pub fn index_of(&self, value: i64) -> Option<u32> {
        if !self.values.is_empty() {
            return self
                .values
                .binary_search(&Seconds(value))
                .ok()
                .and_then(|i| u32::try_from(i).ok());
        }
        let since = value - self.start.0;
        let index = since.div_euclid(self.step.0.max(1));
        (since.rem_euclid(self.step.0.max(1)) == 0 && (0..i64::from(self.size)).contains(&index))
            .then(|| u32::try_from(index).ok())
            .flatten()
    }

    /// How many of the dim's values are at most `limit` (without listing them).
    pub fn count_at_most(&self, limit: i64) -> u32 {
        if !self.values.is_empty() {
            let n = self.values.partition_point(|v| v.0 <= limit);
            return u32::try_from(n).unwrap_or(u32::MAX);
        }
        if limit < self.start.0 || self.step.0 <= 0 {
            return 0;
        }
        let n = (limit - self.start.0) / self.step.0 + 1;
        u32::try_from(n).unwrap_or(u32::MAX).min(self.size)
    }

    /// Every value, in index order.
    pub fn all_values(&self) -> Vec<i64> {
        (0..self.size).map(|i| self.value_at(i)).collect()
    }

    /// The values accepted, for error messages (`0 + k * 3600 s for k in 0..55`, or the list
    /// shortened).
    pub fn describe(&self) -> String {
        if self.values.is_empty() {
            return format!(
                "{} + k * {} s for k in 0..{}",
                self.start.0, self.step.0, self.size
            );
        }
        let shown: Vec<String> = self
            .values
            .iter()
            .take(6)
            .map(|v| v.0.to_string())
            .collect();
        let more = if self.values.len() > 6 {
            format!(
                ", ... {} (s; {} values)",
                self.value_at(self.size - 1),
                self.size
            )
        } else {
            " (s)".to_owned()
        };
        format!("one of {}{more}", shown.join(", "))
    }

    /// Turns `segments` into `values` and sets `size`; checks the result.
    pub(super) fn normalise(&mut self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let forms = [
            self.step.0 != 0,
            !self.segments.is_empty(),
            !self.values.is_empty(),
        ];
        if forms.iter().filter(|&&f| f).count() != 1 {
            return Err(invalid(
                key("step"),
                "give exactly one of `step` (with `size`), `segments` or `values`",
            ));
        }
        if !self.segments.is_empty() {
            let mut values = vec![self.start];
            for (j, segment) in self.segments.iter().enumerate() {
                let last = values.last().map_or(self.start.0, |v| v.0);
                if segment.step.0 <= 0 || segment.until.0 < last {
                    return Err(invalid(
                        key(&format!("segments[{j}]")),
                        format!(
                            "needs a positive step and an `until` at or after {last} s, where the run before it ends"
                        ),
                    ));
                }
                if (segment.until.0 - last) % segment.step.0 != 0 {
                    return Err(invalid(
                        key(&format!("segments[{j}].until")),
                        format!(
                            "{} s is not {last} s plus a whole number of {} s steps",
                            segment.until.0, segment.step.0
                        ),
                    ));
                }
                let count = (segment.until.0 - last) / segment.step.0;
                if usize::try_from(count).map_or(true, |c| values.len() + c > 1_000_000) {
                    return Err(invalid(key("segments"), "more than 1000000 values"));
                }
                let mut next = last;
                for _ in 0..count {
                    next += segment.step.0;
                    values.push(Seconds(next));
                }
            }
            self.values = values;
            self.segments.clear();
        }
        if !self.values.is_empty() {
            if self.start.0 != 0 && self.start != self.values[0] {
                return Err(invalid(
                    key("start"),
                    "is the first of `values`; leave it out or make it equal",
                ));
            }
            if !self.values.windows(2).all(|w| w[0] < w[1]) {
                return Err(invalid(key("values"), "must be strictly increasing"));
            }
            let n = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
            if self.size != 0 && self.size != n {
                return Err(invalid(
                    key("size"),
                    format!("is {} but the dim has {n} values; leave it out", self.size),
                ));
            }
            self.size = n;
            self.start = self.values[0];
            self.step = Seconds(0);
        }
        Ok(())
    }
}

fn zero_seconds() -> Seconds {
    Seconds(0)
}

/// A dim of the field inside each file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDimConfig {
    /// Dim name in the file.
    pub name: String,
    /// Length every file must have.
    pub size: u64,
    /// Chunk length in the dataset.
    pub chunk: u64,
    /// Whether the dim's coordinate belongs to each run rather than to the dataset (the
    /// members of a time-lagged ensemble, which change from run to run): stored per run as
    /// `<name>_per_run(<rolling dim>, <name>)`. Default: true for `realization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_run: Option<bool>,
}

impl FileDimConfig {
    /// Whether the dim's coordinate is stored per run (see [`FileDimConfig::per_run`]).
    pub fn is_per_run(&self) -> bool {
        self.per_run.unwrap_or(self.name == "realization")
    }
}

impl MessageDimConfig {
    /// Checks the step, the size and the listed values; `key` names a field of this dim in
    /// errors (`message_dims[0].size`).
    pub fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if self.values.is_empty() && self.step.0 <= 0 {
            return Err(invalid(key("step"), "must be positive"));
        }
        if !self.segments.is_empty() {
            return Err(invalid(
                key("segments"),
                "must be turned into values first (read the config with DatasetConfig::load)",
            ));
        }
        if self.size == 0 {
            return Err(invalid(key("size"), "must be at least 1"));
        }
        let listed = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        if !self.values.is_empty()
            && (listed != self.size || !self.values.windows(2).all(|w| w[0] < w[1]))
        {
            return Err(invalid(
                key("values"),
                "must be strictly increasing, as many as `size`",
            ));
        }
        Ok(())
    }
}

impl FileDimConfig {
    /// Checks the size and the chunk; `key` names a field of this dim in errors.
    pub fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if self.size == 0 {
            return Err(invalid(key("size"), "must be at least 1"));
        }
        if self.chunk == 0 || self.chunk > self.size {
            return Err(invalid(
                key("chunk"),
                format!("must be between 1 and the dim's size {}", self.size),
            ));
        }
        Ok(())
    }
}
