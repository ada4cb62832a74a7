//! Today's Met Office feed, made from synthetic files: the files copied into a directory laid
//! out as the bucket is (`uk-deterministic-2km/<run>/<valid>-PT<h>H<m>M-<parameter>.nc`, the
//! directory standing in for a mount of the bucket), and each file announced in every form the
//! publisher uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use roller_proto::time::format_instant;
use roller_proto::Notification;
use roller_synth::SynthFile;
use serde_json::{json, Value};

/// The bucket of today's deterministic models.
pub const BUCKET: &str = "met-office-atmospheric-model-data";
/// The UKV model's key prefix (the notification's `model`).
pub const MODEL: &str = "uk-deterministic-2km";
/// The parameter token of screen temperature (the notification's `name`).
pub const PARAMETER: &str = "temperature_at_screen_level";

/// Every form a notice can take.
pub const FORMS: [&str; 4] = [
    "aws-earth",
    "aws-earth-in-sns",
    "s3-event",
    "s3-event-in-sns",
];

/// Synthetic files laid out as today's bucket, with their notices.
#[derive(Debug)]
pub struct TodaysFeed {
    /// The directory standing in for the bucket (`source.mounts`).
    pub mount: PathBuf,
    /// Each form's notices, one line per file, in the files' order.
    pub forms: BTreeMap<&'static str, Vec<String>>,
}

/// `YYYYMMDDTHHMMZ`.
fn stamp(seconds: i64) -> String {
    format_instant(seconds)
        .replace(['-', ':'], "")
        .replace("00Z", "Z")
}

/// Copies `files` under `mount` as today's keys and announces each in every form.
pub fn todays_feed(files: &[SynthFile], mount: &Path) -> TodaysFeed {
    todays_feed_of(files, mount, PARAMETER)
}

/// [`todays_feed`] with the files published as `parameter` (the token in their keys).
pub fn todays_feed_of(files: &[SynthFile], mount: &Path, parameter: &str) -> TodaysFeed {
    let mut forms: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for file in files {
        let note = Notification::from_json(&file.notification).expect("synthetic notice");
        let run = note.forecast_reference_time;
        let lead = note.forecast_period.expect("a lead time");
        let key = format!(
            "{MODEL}/{}/{}-PT{:04}H{:02}M-{parameter}.nc",
            stamp(run),
            stamp(run + lead),
            lead / 3600,
            lead % 3600 / 60
        );
        let path = mount.join(&key);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::copy(&file.path, &path).expect("copy into the bucket");
        let size = std::fs::metadata(&path).expect("size").len();
        // As the aws-earth feed sent it: strings, and the size as a float.
        let earth = json!({
            "model": MODEL, "name": parameter, "bucket": BUCKET, "key": key,
            "object_size": size as f64, "forecast_reference_time": format_instant(run),
            "forecast_period": lead.to_string(), "forecast_period_units": "seconds",
            "time": format_instant(run + lead), "created_time": format_instant(run + 3 * 3600),
            "ttl": 1_595_606_114,
        });
        // S3 URL-encodes keys in event records (`%2F` is not used for `/`, but `+` is a space).
        let event = json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-2",
            "eventTime": "2025-06-14T03:40:00.123Z", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET, "arn": format!("arn:aws:s3:::{BUCKET}")},
                   "object": {"key": key.replace('_', "%5F"), "size": size, "eTag": "0123abcd"}},
        }]});
        let sns = |message: &Value| {
            json!({
                "Type": "Notification", "MessageId": "ecfd61aa-6c93-55da-aba9-3621a0b5ef05",
                "TopicArn": "arn:aws:sns:eu-west-2:021908831235:met-office-atmospheric-model-data-object_created",
                "Message": message.to_string(), "Timestamp": "2025-06-14T03:40:01.000Z",
                "SignatureVersion": "1", "Signature": "...",
            })
            .to_string()
        };
        for (form, line) in [
            ("aws-earth", earth.to_string()),
            ("aws-earth-in-sns", sns(&earth)),
            ("s3-event", event.to_string()),
            ("s3-event-in-sns", sns(&event)),
        ] {
            forms.entry(form).or_default().push(line);
        }
    }
    TodaysFeed {
        mount: mount.to_path_buf(),
        forms,
    }
}

/// The bucket of today's UK ensemble (MOGREPS-UK).
pub const ENSEMBLE_BUCKET: &str = "met-office-uk-ensemble-model-data";

/// The dataset config lines that read today's deterministic bucket from `mount`.
pub fn match_today(mount: &Path) -> String {
    mounts(&[(BUCKET, mount)])
}

/// The dataset config lines that read each bucket from its directory.
pub fn mounts(buckets: &[(&str, &Path)]) -> String {
    let mut lines = "[source.mounts]\n".to_owned();
    for (bucket, dir) in buckets {
        lines.push_str(&format!("\"{bucket}\" = \"{}\"\n", dir.display()));
    }
    lines
}
