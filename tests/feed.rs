//! Today's feed as the Met Office publishes it (issue 13, first part): the same files announced
//! in every form (aws-earth JSON with float sizes, inside an SNS envelope, S3 event records raw
//! and inside an SNS envelope), read through a mounted bucket (`source.mounts`), give
//! byte-identical datasets; bad forms are dead-lettered with a specific reason.

use roller_test_support::feed::{match_today, todays_feed, FORMS, MODEL, PARAMETER};
use roller_test_support::{ingest, small_files, snapshot, TestDataset};

fn dataset(
    name: &str,
    dir: &std::path::Path,
    mount: &std::path::Path,
) -> roller_core::config::DatasetConfig {
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
    let lines = vec![
        r#"{"Type":"Notification","MessageId":"m","Message":"{not json"}"#.to_owned(),
        record("uk-deterministic-2km/latest/20240101T0000Z-PT0000H00M-temperature_at_screen_level.nc"),
        fractional,
        escaping,
        record("uk-deterministic-2km/20240101T0000Z/20240101T0600Z-PT0000H00M-temperature_at_screen_level.nc"),
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#.to_owned(),
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
    assert_eq!(reasons.len(), 5, "{reasons:#?}");
    // Parse failures come from the ingest thread, fetch refusals from the workers: any order.
    for says in [
        "`Message` is not JSON",
        "the run folder is not a time",
        "`object_size`",
        "plain relative path",
        "is not the valid time in the file name",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(says)),
            "no reason says `{says}`: {reasons:#?}"
        );
    }
}
