//! The feed: every form in which the Met Office announces a file, read into [`Notification`]s
//! in one place.
//!
//! Forms accepted (one message's body, as text):
//! - an **aws-earth notice** (2018 to 2022): a JSON object with the metadata, read by
//!   [`Notification::from_map`];
//! - an **SNS envelope** around any form (`"Type": "Notification"`, the body as the JSON
//!   *string* `Message`), which is what an SQS queue subscribed to a topic receives unless raw
//!   delivery is on;
//! - an **S3 event** (today's feed): `Records[]` of `ObjectCreated:*` events whose metadata is
//!   only in the object key, read by [`from_key`]. Other events (`s3:TestEvent`, removals) are
//!   [`Notice::Skipped`]: the feed carries them, but they announce no file.
//!
//! Today's keys look like
//! `uk-deterministic-2km/20250614T0000Z/20250614T0100Z-PT0001H00M-temperature_at_screen_level.nc`
//! (model, run folder, then valid time, lead time and parameter) or, for the ensembles, with a
//! date-nested run folder: `uk-ensemble/2026/07/21/T0000Z/...`.

use serde_json::{Map, Value};

use crate::notification::{Notification, NotificationError, MAX_NOTIFICATION_BYTES};
use crate::time::format_instant;

/// What one notice of the feed announces.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A file landed (boxed: a notification is large and most messages hold one).
    File(Box<Notification>),
    /// An event that announces no file (a test event, a removal): counted and dropped.
    Skipped {
        /// The event's name, e.g. `s3:TestEvent` or `ObjectRemoved:Delete`.
        event: String,
    },
}

/// Reads one message body of the feed, in any form it comes in, into its notices (an S3 event
/// may hold several records). A record that does not parse fails the whole message, with the
/// record's position in the reason.
pub fn parse(text: &str) -> Result<Vec<Notice>, NotificationError> {
    if text.len() > MAX_NOTIFICATION_BYTES {
        return Err(NotificationError::TooLarge(text.len()));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| NotificationError::NotJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(NotificationError::NotJson(
            "expected an object (a notice, an SNS envelope or an S3 event)".into(),
        ));
    };
    if is_sns_envelope(&map) {
        let message = match map.get("Message") {
            Some(Value::String(message)) => message,
            _ => {
                return Err(NotificationError::Envelope(
                    "it has no `Message` string".into(),
                ))
            }
        };
        let inner: Value = serde_json::from_str(message)
            .map_err(|e| NotificationError::Envelope(format!("its `Message` is not JSON ({e})")))?;
        let Value::Object(inner) = inner else {
            return Err(NotificationError::Envelope(
                "its `Message` is not a JSON object".into(),
            ));
        };
        if is_sns_envelope(&inner) {
            return Err(NotificationError::Envelope(
                "its `Message` is another SNS envelope".into(),
            ));
        }
        return unwrapped(&inner);
    }
    unwrapped(&map)
}

/// The identity of one feed message, for deduplicating it on the feed (`Nats-Msg-Id`): the
/// `bucket/key` of the first file it announces, followed by `@` and the S3 ETag when the event
/// record carries one (the same key published again with new content is a new message).
/// `None` when the message announces no file (a test event); an error when it does not parse.
pub fn message_id(text: &str) -> Result<Option<String>, NotificationError> {
    Ok(id_of(text, &parse(text)?))
}

/// The [`message_id`] of `text`, whose notices [`parse`] has already given as `notices`.
pub fn id_of(text: &str, notices: &[Notice]) -> Option<String> {
    let first = notices.iter().find_map(|n| match n {
        Notice::File(note) => Some(note),
        Notice::Skipped { .. } => None,
    })?;
    Some(match first_etag(text) {
        Some(etag) => format!("{}@{etag}", first.id()),
        None => first.id(),
    })
}

/// The deduplication id (`Nats-Msg-Id`) of a message on the feed subject: `feed:` and its
/// [`message_id`]; `None` when it announces no file.
pub fn feed_msg_id(text: &str) -> Result<Option<String>, NotificationError> {
    Ok(message_id(text)?.map(|id| format!("feed:{id}")))
}

/// The ETag of the first `ObjectCreated` record of an S3 event (in an SNS envelope or not).
fn first_etag(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let body = match value.get("Message").and_then(Value::as_str) {
        Some(message) if value.get("Type").and_then(Value::as_str) == Some("Notification") => {
            serde_json::from_str(message).ok()?
        }
        _ => value,
    };
    let created = |record: &&Value| {
        record
            .pointer("/eventName")
            .and_then(Value::as_str)
            .is_some_and(|e| {
                e.strip_prefix("s3:")
                    .unwrap_or(e)
                    .starts_with("ObjectCreated:")
            })
    };
    let record = body.get("Records")?.as_array()?.iter().find(created)?;
    let etag = record.pointer("/s3/object/eTag")?.as_str()?;
    // An ETag is hex digits (and quotes): anything else is left out of the identity.
    let usable = !etag.is_empty() && etag.len() <= 128 && !etag.chars().any(char::is_control);
    usable.then(|| etag.to_owned())
}

fn is_sns_envelope(map: &Map<String, Value>) -> bool {
    map.get("Type").and_then(Value::as_str) == Some("Notification") && map.contains_key("Message")
}

/// A body without an envelope: an S3 event, a test event, or an aws-earth notice.
fn unwrapped(map: &Map<String, Value>) -> Result<Vec<Notice>, NotificationError> {
    if let Some(event) = map.get("Event").and_then(Value::as_str) {
        return Ok(vec![Notice::Skipped {
            event: event.to_owned(),
        }]);
    }
    match map.get("Records") {
        Some(Value::Array(records)) => records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                s3_record(record).map_err(|e| NotificationError::Record {
                    index: i,
                    reason: e.to_string(),
                })
            })
            .collect(),
        Some(_) => Err(NotificationError::Invalid {
            field: "Records",
            reason: "is not an array of S3 event records".into(),
        }),
        None => Notification::from_map(map).map(|n| vec![Notice::File(Box::new(n))]),
    }
}

/// One S3 event record.
fn s3_record(record: &Value) -> Result<Notice, NotificationError> {
    let text = |pointer: &str| record.pointer(pointer).and_then(Value::as_str);
    let event = text("/eventName").ok_or(NotificationError::Missing("eventName"))?;
    let created = event
        .strip_prefix("s3:")
        .unwrap_or(event)
        .starts_with("ObjectCreated:");
    if !created {
        return Ok(Notice::Skipped {
            event: event.to_owned(),
        });
    }
    let bucket = text("/s3/bucket/name").ok_or(NotificationError::Missing("s3.bucket.name"))?;
    let key = text("/s3/object/key").ok_or(NotificationError::Missing("s3.object.key"))?;
    let size = match record.pointer("/s3/object/size") {
        None | Some(Value::Null) => None,
        Some(value) => Some(crate::notification::whole_bytes("s3.object.size", value)?),
    };
    crate::notification::printable("s3.bucket.name", bucket)?;
    let mut note = from_key(bucket, &url_decode(key)?, size)?;
    // S3 writes milliseconds (`2025-06-14T03:40:00.123Z`); whole seconds are kept.
    note.created_time = text("/eventTime")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp());
    Ok(Notice::File(Box::new(note)))
}

/// An S3 event key: `%XX` escapes and `+` for a space.
fn url_decode(key: &str) -> Result<String, NotificationError> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| NotificationError::BadKey {
            key: key.to_owned(),
            reason: "it does not decode to UTF-8 text".into(),
        })
}

/// What today's keys look like, for error messages.
const KEY_FORM: &str = "<model>/<run: YYYYMMDDTHHMMZ, or YYYY/MM/DD/THHMMZ>/<valid time: YYYYMMDDTHHMMZ>-PT<hours>H<minutes>M-<parameter>.nc";

/// A notification from today's object key alone: `model` is the key's first segment, `name`
/// the parameter token, the run from the run folder, the lead time from `PT<h>H<m>M` and the
/// valid time from the file name (which must equal run plus lead time).
pub fn from_key(
    bucket: &str,
    key: &str,
    object_size: Option<u64>,
) -> Result<Notification, NotificationError> {
    let bad = |reason: String| NotificationError::BadKey {
        key: key.escape_debug().to_string(),
        reason: format!("{reason}; expected {KEY_FORM}"),
    };
    if key.chars().any(char::is_control) {
        return Err(bad("it contains control characters".into()));
    }
    let segments: Vec<&str> = key.split('/').collect();
    let (model, run, file) = match segments.as_slice() {
        [model, run, file] => (*model, parse_stamp(run), *file),
        [model, year, month, day, time, file] => {
            let run = time
                .strip_prefix('T')
                .and_then(|t| parse_stamp(&format!("{year}{month}{day}T{t}")));
            (*model, run, *file)
        }
        _ => {
            return Err(bad(format!(
                "it has {} segments, not 3 or 6",
                segments.len()
            )))
        }
    };
    if model.is_empty() {
        return Err(bad("the model segment is empty".into()));
    }
    let run = run.ok_or_else(|| bad("the run folder is not a time".into()))?;
    let stem = file
        .strip_suffix(".nc")
        .ok_or_else(|| bad(format!("`{file}` is not a .nc file")))?;
    let mut parts = stem.splitn(3, '-');
    let (Some(valid), Some(lead), Some(parameter)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!(
            "`{file}` is not <valid time>-<lead time>-<parameter>"
        )));
    };
    let valid = parse_stamp(valid)
        .ok_or_else(|| bad(format!("`{valid}` in the file name is not a time")))?;
    let lead = parse_lead(lead).ok_or_else(|| bad(format!("`{lead}` is not PT<h>H<m>M")))?;
    if parameter.is_empty() {
        return Err(bad("the parameter is empty".into()));
    }
    if run.checked_add(lead) != Some(valid) {
        return Err(bad(format!(
            "the run folder ({}) plus the lead time ({lead} s) is not the valid time in the file name ({})",
            format_instant(run),
            format_instant(valid)
        )));
    }
    Ok(Notification {
        model: model.to_owned(),
        name: parameter.to_owned(),
        bucket: Some(bucket.to_owned()),
        key: key.to_owned(),
        object_size,
        forecast_reference_time: run,
        forecast_period: Some(lead),
        time: Some(valid),
        created_time: None,
        realization: None,
        height: None,
        pressure: None,
        depth: None,
        cell_methods: None,
    })
}

/// `YYYYMMDDTHHMMZ` as seconds since the epoch.
fn parse_stamp(text: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%MZ")
        .ok()
        .filter(|_| text.len() == 14)
        .map(|t| t.and_utc().timestamp())
}

/// `PT<hours>H<minutes>M` as seconds.
fn parse_lead(text: &str) -> Option<i64> {
    let rest = text.strip_prefix("PT")?.strip_suffix('M')?;
    let (hours, minutes) = rest.split_once('H')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours) || !digits(minutes) {
        return None;
    }
    let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
    (minutes < 60).then(|| hours.checked_mul(3600)?.checked_add(minutes * 60))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real SNS-delivered aws-earth notice (signature fields shortened), verbatim.
    const REAL_SNS: &str = include_str!("../fixtures/aws-earth-sns.json");

    fn files(text: &str) -> Vec<Notification> {
        parse(text)
            .expect("parses")
            .into_iter()
            .map(|n| match n {
                Notice::File(n) => *n,
                Notice::Skipped { event } => panic!("skipped {event}"),
            })
            .collect()
    }

    #[test]
    fn the_real_sns_notice_with_a_float_size_parses() {
        let [n] = files(REAL_SNS).try_into().expect("one notice");
        assert_eq!(n.model, "mo-atmospheric-mogreps-uk-prd");
        assert_eq!(n.name, "air_temperature");
        assert_eq!(n.object_size, Some(4_034_391));
        assert_eq!(n.forecast_period, Some(36_000));
        assert_eq!(n.realization, Some(vec![26, 27, 28]));
        assert_eq!(n.cell_methods.as_deref(), Some("time: maximum"));
        assert_eq!(n.key, "9a9d4d6889c99285ae4efa76802ccb0ccb96e3c4.nc");
        // The same notice without its envelope reads the same.
        let envelope: Value = serde_json::from_str(REAL_SNS).expect("json");
        let raw = envelope["Message"].as_str().expect("message");
        assert_eq!(files(raw), vec![n]);
    }

    #[test]
    fn s3_event_records_read_the_metadata_from_the_key() {
        let event = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2025-06-14T03:40:00.123Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"met-office-atmospheric-model-data"},"object":{"key":"uk-deterministic-2km/20250614T0000Z/20250614T0100Z-PT0001H00M-temperature_at_screen_level_max-PT01H.nc","size":4034391,"eTag":"abc"}}},{"eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"met-office-uk-ensemble-model-data"},"object":{"key":"uk-ensemble/2026/07/21/T0300Z/20260721T0415Z-PT0001H15M-precipitation_rate.nc","size":12}}}]}"#;
        let notes = files(event);
        assert_eq!(notes.len(), 2);
        let ukv = &notes[0];
        assert_eq!(ukv.model, "uk-deterministic-2km");
        assert_eq!(ukv.name, "temperature_at_screen_level_max-PT01H");
        assert_eq!(
            ukv.bucket.as_deref(),
            Some("met-office-atmospheric-model-data")
        );
        assert_eq!(ukv.forecast_reference_time, 1_749_859_200);
        assert_eq!(ukv.forecast_period, Some(3600));
        assert_eq!(ukv.time, Some(1_749_859_200 + 3600));
        assert_eq!(ukv.object_size, Some(4_034_391));
        assert_eq!(ukv.created_time, Some(1_749_872_400));
        let ens = &notes[1];
        assert_eq!(ens.model, "uk-ensemble");
        assert_eq!(ens.name, "precipitation_rate");
        assert_eq!(ens.forecast_period, Some(4500));
        // And inside an SNS envelope.
        let wrapped =
            serde_json::json!({"Type": "Notification", "MessageId": "x", "Message": event})
                .to_string();
        assert_eq!(files(&wrapped), notes);
    }

    #[test]
    fn a_message_is_identified_by_its_first_file_and_etag() {
        let event = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"k","eTag":"old"}}},{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"uk-deterministic-2km/20250614T0000Z/20250614T0100Z-PT0001H00M-rainfall_rate.nc","eTag":"e1"}}}]}"#;
        let id = "b/uk-deterministic-2km/20250614T0000Z/20250614T0100Z-PT0001H00M-rainfall_rate.nc";
        assert_eq!(message_id(event).expect("parses"), Some(format!("{id}@e1")));
        let wrapped =
            serde_json::json!({"Type": "Notification", "MessageId": "x", "Message": event})
                .to_string();
        assert_eq!(
            message_id(&wrapped).expect("parses"),
            Some(format!("{id}@e1"))
        );
        // aws-earth notices carry no ETag: the key alone.
        let [n] = files(REAL_SNS).try_into().expect("one notice");
        assert_eq!(message_id(REAL_SNS).expect("parses"), Some(n.id()));
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert_eq!(message_id(test).expect("parses"), None);
        assert!(message_id("{").is_err());
    }

    #[test]
    fn control_characters_in_a_key_or_bucket_are_refused() {
        let event = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"uk-deterministic-2km/20250614T0000Z/20250614T0100Z-PT0001H00M-rain%0D%0Afall.nc","eTag":"e\r\n1"}}}]}"#;
        let e = parse(event).expect_err("CR LF in the key").to_string();
        assert!(e.contains("control characters"), "{e}");
        assert!(message_id(event).is_err());
        let earth = r#"{"model":"m","name":"n","key":"a\nb.nc","forecast_reference_time":"2020-01-01T00:00:00Z"}"#;
        let e = parse(earth).expect_err("a newline in the key").to_string();
        assert!(e.contains("control characters"), "{e}");
        // An unusable ETag is left out of the identity.
        let fine = event.replace("rain%0D%0Afall", "rainfall");
        assert_eq!(
            message_id(&fine).expect("parses"),
            Some(
                "b/uk-deterministic-2km/20250614T0000Z/20250614T0100Z-PT0001H00M-rainfall.nc"
                    .into()
            )
        );
    }

    #[test]
    fn keys_are_url_decoded() {
        let event = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"global-deterministic-10km/20250614T1200Z/20250614T1200Z-PT0000H00M-height_of_orography%2Bx.nc"}}}]}"#;
        let [n] = files(event).try_into().expect("one");
        assert_eq!(n.name, "height_of_orography+x");
        assert_eq!(n.forecast_period, Some(0));
    }

    #[test]
    fn other_events_are_skipped() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2025-01-01T00:00:00Z","Bucket":"b"}"#;
        assert_eq!(
            parse(test).expect("parses"),
            vec![Notice::Skipped {
                event: "s3:TestEvent".into()
            }]
        );
        let removed = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#;
        assert_eq!(
            parse(removed).expect("parses"),
            vec![Notice::Skipped {
                event: "ObjectRemoved:Delete".into()
            }]
        );
    }

    #[test]
    fn bad_forms_say_what_was_wrong() {
        let not_json = r#"{"Type":"Notification","Message":"{not json"}"#;
        let e = parse(not_json).expect_err("bad envelope");
        assert!(e.to_string().contains("`Message` is not JSON"), "{e}");

        let fractional = r#"{"model":"m","name":"n","key":"k.nc","forecast_reference_time":"2019-02-14T03:00:00Z","object_size":4034391.5}"#;
        let e = parse(fractional).expect_err("fractional size");
        assert!(
            e.to_string().contains("object_size") && e.to_string().contains("4034391.5"),
            "{e}"
        );

        for (key, says) in [
            (
                "uk-deterministic-2km/20250614T0000Z/temperature.nc",
                "is not <valid time>",
            ),
            (
                "uk-deterministic-2km/latest/20250614T0100Z-PT0001H00M-t.nc",
                "run folder is not a time",
            ),
            (
                "uk-deterministic-2km/20250614T0000Z/20250614T0100Z-1H-t.nc",
                "is not PT<h>H<m>M",
            ),
            (
                "uk-deterministic-2km/20250614T0000Z/20250614T0200Z-PT0001H00M-t.nc",
                "is not the valid time",
            ),
            ("a/b", "not 3 or 6"),
        ] {
            let event = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "b"}, "object": {"key": key}}}]})
            .to_string();
            let e = parse(&event).expect_err(key);
            assert!(
                e.to_string().contains(says) && e.to_string().contains("expected <model>/"),
                "{key}: {e}"
            );
            assert!(e.to_string().contains("record 0"), "{e}");
        }
    }
}
