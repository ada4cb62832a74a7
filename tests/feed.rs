//! Today's feed as the Met Office publishes it (issue 13, first part): the same files announced
//! in every form (aws-earth JSON with float sizes, inside an SNS envelope, S3 event records raw
//! and inside an SNS envelope), read through a mounted bucket (`source.mounts`), give
//! byte-identical datasets; bad forms are dead-lettered with a specific reason.

use roller_test_support::feed::{match_today, todays_feed, FORMS, MODEL, PARAMETER};
use roller_test_support::{ingest, netcdf_values, small_files, snapshot, TestDataset};

fn dataset(
    name: &str,
    dir: &std::path::Path,
    mount: &std::path::Path,
) -> roller_model::config::DatasetConfig {
    TestDataset::new(name)
        .model(MODEL)
        .match_name(PARAMETER)
        .leads(2)
        .extra(&match_today(mount))
        .config(&dir.join(name), dir)
}

#[test]
fn every_form_of_a_notice_gives_the_same_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = small_files(&dir.path().join("src"), 4, 2, 20, 30);
    let feed = todays_feed(&files, &dir.path().join("bucket"));
    let mut stores = Vec::new();
    for form in FORMS {
        // One dataset per form, named alike so that the stores can be compared byte for byte.
        let config = dataset("ukv", &dir.path().join(form), &feed.mount);
        let summary = ingest(&config, &feed.forms[form]);
        assert!(
            summary.dead_letters.is_empty(),
            "{form}: {:?}",
            summary.dead_letters
        );
        assert_eq!(summary.files, 8, "{form}");
        stores.push((form, snapshot(&config.store.path)));
    }
    let (first, reference) = &stores[0];
    assert!(reference
        .keys()
        .any(|k| k.starts_with("chunks/air_temperature/")));
    for (form, store) in &stores[1..] {
        assert_eq!(
            store.keys().collect::<Vec<_>>(),
            reference.keys().collect::<Vec<_>>(),
            "{form} vs {first}"
        );
        for (key, bytes) in reference {
            assert!(
                &store[key] == bytes,
                "{key} differs between {first} and {form}"
            );
        }
    }
}

#[test]
fn bad_forms_are_dead_lettered_with_a_specific_reason_and_test_events_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = small_files(&dir.path().join("src"), 1, 1, 20, 30);
    let feed = todays_feed(&files, &dir.path().join("bucket"));
    let config = dataset("bad", dir.path(), &feed.mount);
    let good = feed.forms["s3-event"][0].clone();
    let record = |key: &str| {
        serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": roller_test_support::feed::BUCKET}, "object": {"key": key}}}]})
        .to_string()
    };
    let fractional = feed.forms["aws-earth"][0].replace(".0,", ".5,");
    assert_ne!(
        fractional, feed.forms["aws-earth"][0],
        "the size is a float"
    );
    // An aws-earth notice (metadata in the body) whose key climbs out of the mounted bucket.
    let mut escaping: serde_json::Value =
        serde_json::from_str(&feed.forms["aws-earth"][0]).expect("json");
    escaping["key"] = "../../../etc/passwd".into();
    let escaping = escaping.to_string();
    // The same file copied under another run's folder: its key parses, its contents disagree.
    let good_key = {
        let event: serde_json::Value = serde_json::from_str(&good).expect("json");
        let key = event["Records"][0]["s3"]["object"]["key"]
            .as_str()
            .expect("key")
            .replace("%5F", "_");
        key
    };
    let run = good_key.split('/').nth(1).expect("run folder").to_owned();
    let misplaced = good_key.replace(&run, "20200101T0000Z");
    let target = feed.mount.join(&misplaced);
    std::fs::create_dir_all(target.parent().expect("folder")).expect("mkdir");
    std::fs::copy(feed.mount.join(&good_key), &target).expect("copy");
    let lines = vec![
        r#"{"Type":"Notification","MessageId":"m","Message":"{not json"}"#.to_owned(),
        record("uk-deterministic-2km/latest/20240101T0000Z-PT0000H00M-temperature_at_screen_level.nc"),
        fractional,
        escaping,
        record("uk-deterministic-2km/20240101T0000Z/20240101T0600Z-PT0000H00M-temperature_at_screen_level.nc"),
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#.to_owned(),
        record(&misplaced),
        good,
    ];
    let summary = ingest(&config, &lines);
    assert_eq!(summary.files, 1, "the good notice still goes in");
    assert_eq!(
        summary.skipped, 1,
        "the test event is skipped, not dead-lettered"
    );
    let reasons: Vec<String> = summary
        .dead_letters
        .iter()
        .map(|d| d.reason.clone())
        .collect();
    assert_eq!(reasons.len(), 6, "{reasons:#?}");
    // Parse failures come from the ingest thread, fetch refusals from the workers: any order.
    for says in [
        "`Message` is not JSON",
        "the run folder is not a time",
        "`object_size`",
        "plain relative path",
        "is not the valid time in the file name",
        "the notification says forecast_reference_time 2020-01-01T00:00:00Z, the file says",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(says)),
            "no reason says `{says}`: {reasons:#?}"
        );
    }
}

#[test]
fn irregular_lead_times_land_at_their_index_and_a_short_run_is_complete_at_its_own_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    // Lead times hourly to T+3, then 3-hourly to T+9: 0 1 2 3 6 9 h. The 00Z run is whole;
    // the 01Z run is a nowcast to T+2 (its files say PT2H); the 02Z run lacks its T+9 file.
    let hours = |h: &[i64]| h.iter().map(|h| h * 3600).collect::<Vec<_>>();
    let spec = serde_json::json!({"ny": 200, "nx": 260, "runs": [
        {"run": "2024-01-01T00:00:00Z", "leads": hours(&[0, 1, 2, 3, 6, 9]), "duration": "PT9H"},
        {"run": "2024-01-01T01:00:00Z", "leads": hours(&[0, 1, 2]), "duration": "PT2H"},
        {"run": "2024-01-01T02:00:00Z", "leads": hours(&[0, 1, 2, 3, 6]), "duration": "PT9H"},
    ]});
    roller_test_support::run_python(
        "make_feed_files.py",
        &[&bucket.display().to_string(), &spec.to_string()],
    );
    let text = format!(
        r#"name = "leads"
variable = "air_temperature"
[match]
model = "{MODEL}"
name = "{PARAMETER}"
[rolling]
dim = "forecast_reference_time"
step = "1h"
window = 3
visibility = "complete"
[[message_dims]]
name = "forecast_period"
segments = [{{ step = "1h", until = "3h" }}, {{ step = "3h", until = "9h" }}]
[[file_dims]]
name = "projection_y_coordinate"
size = 200
chunk = 100
[[file_dims]]
name = "projection_x_coordinate"
size = 260
chunk = 130
[store]
path = "{}"
fsync = false
{}"#,
        dir.path().join("store").display(),
        match_today(&bucket)
    );
    let config = roller_model::config::DatasetConfig::from_toml(&text).expect("config");
    let lines: Vec<String> = std::fs::read_to_string(bucket.join("notifications.jsonl"))
        .expect("notices")
        .lines()
        .map(str::to_owned)
        .collect();
    let summary = ingest(&config, &lines);
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    assert_eq!(summary.files, 14);
    assert_eq!(
        summary.direct_reads, 14,
        "128 x 128 zlib-1 chunks without shuffle, padded at the edges, take the fast path"
    );

    let store = roller_test_support::rolling_store(&config);
    let record = store.record();
    let layout = &record.layout;
    let abs = |run: &str| {
        layout
            .abs_index(roller_proto::time::parse_instant(run).expect("time"))
            .expect("abs")
    };
    // The nowcast run is complete at its own length; the 02Z run is not complete yet.
    assert_eq!(record.head, Some(abs("2024-01-01T01:00:00Z")));
    let (_, fp) = roller_test_support::read_array::<i64>(&store, "forecast_period");
    assert_eq!(fp, hours(&[0, 1, 2, 3, 6, 9]));
    let (shape, data) = roller_test_support::read_array::<f32>(&store, "air_temperature");
    assert_eq!(shape[1..], [6, 200, 260]);
    let field = 200 * 260;
    let at = |logical: usize, lead_index: usize| {
        let start = (logical * 6 + lead_index) * field;
        &data[start..start + field]
    };
    let logical = |run: &str| usize::try_from(abs(run) - record.offset).expect("in the window");
    let file = |run: &str, lead: &str| bucket.join(format!("{MODEL}/{run}/{lead}-{PARAMETER}.nc",));
    // T+6 of the 00Z run is at index 4, T+9 at index 5.
    let first = logical("2024-01-01T00:00:00Z");
    assert_eq!(
        at(first, 4),
        netcdf_values(
            &file("20240101T0000Z", "20240101T0600Z-PT0006H00M"),
            "air_temperature"
        )
        .as_slice()
    );
    assert_eq!(
        at(first, 5),
        netcdf_values(
            &file("20240101T0000Z", "20240101T0900Z-PT0009H00M"),
            "air_temperature"
        )
        .as_slice()
    );
    // The nowcast run reads its own lead times and fill where it stops.
    let nowcast = logical("2024-01-01T01:00:00Z");
    assert_eq!(
        at(nowcast, 2),
        netcdf_values(
            &file("20240101T0100Z", "20240101T0300Z-PT0002H00M"),
            "air_temperature"
        )
        .as_slice()
    );
    for lead_index in 3..6 {
        assert!(
            at(nowcast, lead_index).iter().all(|v| v.is_nan()),
            "T index {lead_index}"
        );
    }
}
