//! The Met Office object notification: one JSON object per NetCDF file landing in a bucket.
//!
//! Real notifications carry numbers as strings (`"forecast_period": "10800"`) and sometimes as
//! numbers; both are accepted. Unknown fields are ignored so that new upstream fields never stop
//! ingestion; a missing or malformed *required* field is rejected with the field's name.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::parse_instant;

/// Upper bound on a notification's JSON size. Real ones are well under 2 KiB.
pub const MAX_NOTIFICATION_BYTES: usize = 64 * 1024;

/// A parsed, validated notification. Times are whole seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Producing model, e.g. `mo-atmospheric-ukv-prd`.
    pub model: String,
    /// Field name, e.g. `air_temperature`.
    pub name: String,
    /// Source bucket; absent for local files.
    pub bucket: Option<String>,
    /// Object key in the bucket, or a local path / `file://` URL.
    pub key: String,
    /// Size of the object in bytes, when announced.
    pub object_size: Option<u64>,
    /// Start of the model run (seconds since the epoch).
    pub forecast_reference_time: i64,
    /// Lead time in seconds, when announced.
    pub forecast_period: Option<i64>,
    /// Validity time (seconds since the epoch), when announced.
    pub time: Option<i64>,
    /// When the object was created (seconds since the epoch), when announced.
    pub created_time: Option<i64>,
    /// Ensemble members in the file, when announced.
    pub realization: Option<Vec<i64>>,
    /// Height levels in the file, when announced (units in `height_units`).
    pub height: Option<Vec<f64>>,
    /// Pressure levels in the file, when announced (units in `pressure_units`).
    pub pressure: Option<Vec<f64>>,
    /// Depth levels in the file, when announced.
    pub depth: Option<Vec<f64>>,
    /// CF cell methods of the field (e.g. `time: mean`), when announced.
    pub cell_methods: Option<String>,
}

/// Why a notification was rejected. The message names the field and what was wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotificationError {
    /// The payload is not a JSON object.
    #[error("notification is not a JSON object: {0}")]
    NotJson(String),
    /// The payload is larger than [`MAX_NOTIFICATION_BYTES`].
    #[error("notification is {0} bytes, more than the {MAX_NOTIFICATION_BYTES}-byte limit")]
    TooLarge(usize),
    /// A required field is absent.
    #[error("notification has no `{0}` field; it is required")]
    Missing(&'static str),
    /// A field is present but its value cannot be used.
    #[error("notification field `{field}`: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What was wrong, with the value seen.
        reason: String,
    },
    /// An SNS envelope that does not hold a notice.
    #[error("SNS envelope: {0}")]
    Envelope(String),
    /// An object key that does not have today's form, so no metadata can be read from it.
    #[error("object key `{key}` does not parse: {reason}")]
    BadKey {
        /// The key (URL-decoded).
        key: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// One record of an S3 event does not parse.
    #[error("S3 event record {index}: {reason}")]
    Record {
        /// Its position in `Records`, from 0.
        index: usize,
        /// Why.
        reason: String,
    },
}

impl Notification {
    /// Parses one notification from JSON text.
    pub fn from_json(text: &str) -> Result<Self, NotificationError> {
        if text.len() > MAX_NOTIFICATION_BYTES {
            return Err(NotificationError::TooLarge(text.len()));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| NotificationError::NotJson(e.to_string()))?;
        match value {
            Value::Object(map) => Self::from_map(&map),
            other => Err(NotificationError::NotJson(format!(
                "expected an object, got {}",
                kind(&other)
            ))),
        }
    }

    /// Parses one notification from an already-decoded JSON object. A key or bucket with control
    /// characters is refused: no object is named so, and the identity goes into message
    /// headers.
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, NotificationError> {
        let fields = Fields(map);
        let key = fields.required_text("key")?;
        if key.is_empty() {
            return Err(NotificationError::Invalid {
                field: "key",
                reason: "is empty".into(),
            });
        }
        printable("key", &key)?;
        let bucket = fields.text("bucket")?;
        if let Some(bucket) = &bucket {
            printable("bucket", bucket)?;
        }
        Ok(Self {
            model: fields.required_text("model")?,
            name: fields.required_text("name")?,
            bucket,
            key,
            object_size: match map.get("object_size") {
                None | Some(Value::Null) => None,
                Some(value) => Some(whole_bytes("object_size", value)?),
            },
            forecast_reference_time: fields
                .instant("forecast_reference_time")?
                .ok_or(NotificationError::Missing("forecast_reference_time"))?,
            forecast_period: fields.period()?,
            time: fields.instant("time")?,
            created_time: fields.instant("created_time")?,
            realization: fields.list("realization", |v| v.parse::<i64>().ok())?,
            height: fields.list("height", parse_float)?,
            pressure: fields.list("pressure", parse_float)?,
            depth: fields.list("depth", parse_float)?,
            cell_methods: fields.text("cell_methods")?,
        })
    }

    /// The notification's identity: the same object announced twice has the same id.
    ///
    /// Used to deduplicate replays and to name scratch objects.
    pub fn id(&self) -> String {
        match &self.bucket {
            Some(bucket) => format!("{bucket}/{}", self.key),
            None => self.key.clone(),
        }
    }

    /// Whether the field is on several vertical levels (heights, pressures or depths).
    pub fn is_multi_level(&self) -> bool {
        [&self.height, &self.pressure, &self.depth]
            .iter()
            .any(|levels| levels.as_ref().is_some_and(|l| l.len() > 1))
    }
}

/// A size in bytes: a whole number, as a number or a string; the real feed sends whole floats
/// (`4034391.0`), which are accepted, but a fraction or a negative number is refused.
pub(crate) fn whole_bytes(field: &'static str, value: &Value) -> Result<u64, NotificationError> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(NotificationError::Invalid {
                field,
                reason: format!("expected a number of bytes, got {}", kind(other)),
            })
        }
    };
    let invalid = || NotificationError::Invalid {
        field,
        reason: format!("`{text}` is not a whole, non-negative number of bytes"),
    };
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    let float: f64 = text.parse().map_err(|_| invalid())?;
    if !(0.0..9.0e15).contains(&float) || float.fract() != 0.0 {
        return Err(invalid());
    }
    // Whole, non-negative and below 2^53: exact as an integer.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked above: a whole, non-negative number below 2^53"
    )]
    Ok(float as u64)
}

/// Refuses a field with control characters (a newline in a key would end a header line).
pub(crate) fn printable(field: &'static str, value: &str) -> Result<(), NotificationError> {
    if value.chars().any(char::is_control) {
        return Err(NotificationError::Invalid {
            field,
            reason: "contains control characters (newlines, tabs...), which no object name has"
                .into(),
        });
    }
    Ok(())
}

fn parse_float(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Field accessors that accept the string-or-number forms seen in real notifications.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// The field as text; numbers are accepted and rendered; `null` counts as absent.
    fn text(&self, field: &'static str) -> Result<Option<String>, NotificationError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(NotificationError::Invalid {
                field,
                reason: format!("expected a string or number, got {}", kind(other)),
            }),
        }
    }

    fn required_text(&self, field: &'static str) -> Result<String, NotificationError> {
        self.text(field)?.ok_or(NotificationError::Missing(field))
    }

    fn instant(&self, field: &'static str) -> Result<Option<i64>, NotificationError> {
        self.text(field)?
            .map(|t| {
                parse_instant(&t).ok_or_else(|| NotificationError::Invalid {
                    field,
                    reason: format!(
                        "`{t}` is not a time; expected RFC 3339 such as 2019-02-14T03:00:00Z"
                    ),
                })
            })
            .transpose()
    }

    /// `forecast_period` in seconds, honouring `forecast_period_units` (seconds by default).
    fn period(&self) -> Result<Option<i64>, NotificationError> {
        let Some(text) = self.text("forecast_period")? else {
            return Ok(None);
        };
        let value: f64 = text.parse().map_err(|_| NotificationError::Invalid {
            field: "forecast_period",
            reason: format!("`{text}` is not a number"),
        })?;
        let units = self
            .text("forecast_period_units")?
            .unwrap_or_else(|| "seconds".into());
        let scale = match units.as_str() {
            "s" | "second" | "seconds" => 1.0,
            "min" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            other => {
                return Err(NotificationError::Invalid {
                    field: "forecast_period_units",
                    reason: format!("`{other}` is not one of seconds, minutes, hours"),
                })
            }
        };
        let seconds = value * scale;
        if !seconds.is_finite() || seconds.fract() != 0.0 || seconds.abs() > 1e15 {
            return Err(NotificationError::Invalid {
                field: "forecast_period",
                reason: format!("`{text}` {units} is not a whole number of seconds"),
            });
        }
        // The value is finite, integral and well inside i64's range (checked above).
        #[expect(
            clippy::cast_possible_truncation,
            reason = "checked above: whole seconds within the range of i64"
        )]
        Ok(Some(seconds as i64))
    }

    /// A space-separated list (`"0 1 2"`), a JSON array, or a single number.
    fn list<T>(
        &self,
        field: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<Vec<T>>, NotificationError> {
        let items: Vec<String> = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(values)) => values
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(_) => self
                .text(field)?
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        };
        items
            .iter()
            .map(|item| {
                parse(item).ok_or_else(|| NotificationError::Invalid {
                    field,
                    reason: format!("`{item}` is not a number"),
                })
            })
            .collect::<Result<Vec<T>, _>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = r#"{"model": "mo-atmospheric-mogreps-uk-prd", "name": "air_temperature",
        "bucket": "aws-earth-mo-atmospheric-mogreps-uk-prd",
        "key": "71ef822facc9efd00829c570fa6cfc822791797d.nc", "object_size": "323943448",
        "forecast_reference_time": "2019-02-14T03:00:00Z", "forecast_period": "10800",
        "forecast_period_units": "seconds", "time": "2019-02-14T06:00:00Z",
        "created_time": "2019-02-14T06:59:35Z", "realization": "0 1 2 3 4 5 6 7 8 9 10 11",
        "height": "5.0 10.0 20.0 6000.0", "height_units": "m", "ttl": "1550369304",
        "some_future_field": {"nested": true}}"#;

    #[test]
    fn parses_a_real_notification() {
        let n = Notification::from_json(REAL).expect("valid");
        assert_eq!(n.model, "mo-atmospheric-mogreps-uk-prd");
        assert_eq!(n.object_size, Some(323_943_448));
        assert_eq!(n.forecast_reference_time, 1_550_113_200);
        assert_eq!(n.forecast_period, Some(10_800));
        assert_eq!(n.time, Some(1_550_113_200 + 10_800));
        assert_eq!(n.realization.as_deref().map(<[i64]>::len), Some(12));
        assert_eq!(n.height, Some(vec![5.0, 10.0, 20.0, 6000.0]));
        assert!(n.is_multi_level());
        assert_eq!(
            n.id(),
            "aws-earth-mo-atmospheric-mogreps-uk-prd/71ef822facc9efd00829c570fa6cfc822791797d.nc"
        );
    }

    #[test]
    fn accepts_numbers_as_numbers() {
        let n = Notification::from_json(
            r#"{"model":"m","name":"n","key":"k.nc","object_size":12,
                "forecast_reference_time":"2019-02-14T03:00:00Z","forecast_period":3,
                "forecast_period_units":"hours","height":[1.5]}"#,
        )
        .expect("valid");
        assert_eq!(n.object_size, Some(12));
        assert_eq!(n.forecast_period, Some(3 * 3600));
        assert_eq!(n.height, Some(vec![1.5]));
        assert!(!n.is_multi_level());
    }

    #[test]
    fn rejects_missing_key_with_its_name() {
        let err = Notification::from_json(
            r#"{"model":"m","name":"n","forecast_reference_time":"2019-02-14T03:00:00Z"}"#,
        )
        .expect_err("no key");
        assert_eq!(err, NotificationError::Missing("key"));
        assert!(err.to_string().contains("`key`"));
    }

    #[test]
    fn rejects_a_reference_time_that_is_not_a_time() {
        let err = Notification::from_json(
            r#"{"model":"m","name":"n","key":"k","forecast_reference_time":"yesterday"}"#,
        )
        .expect_err("bad time");
        assert!(matches!(
            err,
            NotificationError::Invalid {
                field: "forecast_reference_time",
                ..
            }
        ));
        assert!(err.to_string().contains("yesterday"));
    }

    #[test]
    fn rejects_non_objects_and_bad_numbers() {
        assert!(matches!(
            Notification::from_json("not json"),
            Err(NotificationError::NotJson(_))
        ));
        assert!(matches!(
            Notification::from_json("[1]"),
            Err(NotificationError::NotJson(_))
        ));
        let err = Notification::from_json(
            r#"{"model":"m","name":"n","key":"k","forecast_reference_time":"2019-02-14T03:00:00Z","object_size":"-3"}"#,
        )
        .expect_err("negative size");
        assert!(matches!(
            err,
            NotificationError::Invalid {
                field: "object_size",
                ..
            }
        ));
    }

    proptest::proptest! {
        /// Any JSON text either parses or is rejected with an error; it never panics.
        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = Notification::from_json(&text);
        }

        /// A reference time and lead time written either as strings or numbers parse the same.
        #[test]
        fn string_and_number_forms_agree(frt in 0i64..4_000_000_000, fp in 0i64..1_000_000) {
            let when = crate::time::format_instant(frt);
            let a = Notification::from_json(&format!(
                r#"{{"model":"m","name":"n","key":"k","forecast_reference_time":"{when}","forecast_period":"{fp}"}}"#)).expect("strings");
            let b = Notification::from_json(&format!(
                r#"{{"model":"m","name":"n","key":"k","forecast_reference_time":"{when}","forecast_period":{fp}}}"#)).expect("numbers");
            proptest::prop_assert_eq!(&a, &b);
            proptest::prop_assert_eq!(a.forecast_reference_time, frt);
        }
    }
}
