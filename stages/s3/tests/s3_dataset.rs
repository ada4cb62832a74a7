//! A rolling dataset on a real S3-compatible server (SeaweedFS): the same values as on local
//! disk, read through RollingStore on S3, expiry tags on rolled-off chunks only and only once
//! their grace has passed (across a committer restart), and the lifecycle rule installed by
//! setup readable from the bucket.

use std::sync::Arc;

use roller_commit::Committer;
use roller_embedded::RunOptions;
use roller_model::clock::ManualClock;
use roller_model::config::{DatasetConfig, ExpiryPolicy, S3Config};
use roller_model::layout::Layout;
use roller_model::physical_key::data_chunks_prefix;
use roller_model::rolling_store::RollingStore;
use roller_s3::lifecycle::{self, RuleState};
use roller_s3::setup::{check_storage, setup_storage, SetupError};
use roller_s3::{Backends, S3Client};
use roller_test_support::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use roller_test_support::{ingest, read_array, rolling_store, small_files, TestDataset};

fn on_s3(local: &DatasetConfig, server: &S3Server) -> DatasetConfig {
    let mut config = local.clone();
    config.store.path = "s3://roller-data/datasets/air".into();
    config.s3 = S3Config {
        endpoint_url: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        force_path_style: true,
        ..S3Config::default()
    };
    config.expiry.lifecycle_days = 2;
    config
}

/// A SeaweedFS under `dir`, five 6-hourly runs of two lead times of small files, and the
/// dataset (window 3) on local disk and the same on S3: (server, notifications, local, S3).
fn fixture(dir: &std::path::Path) -> (S3Server, Vec<String>, DatasetConfig, DatasetConfig) {
    let server = S3Server::start(&dir.join("s3"));
    let files = small_files(&dir.join("src"), 5, 2, 20, 30);
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    let local = TestDataset::new("air")
        .window(3)
        .leads(2)
        .config(&dir.join("local"), &dir.join("src"));
    let config = on_s3(&local, &server);
    (server, lines, local, config)
}

/// Runs the embedded pipeline into the S3 store of `backends` at the time `clock` tells;
/// every file must go in.
fn ingest_on_s3(
    config: &DatasetConfig,
    backends: &Backends,
    lines: &[String],
    clock: &ManualClock,
) {
    let summary = roller_embedded::run(
        config,
        backends.store.clone(),
        lines.iter().cloned().map(Ok),
        &RunOptions {
            expiry: backends.expiry.clone(),
            clock: Arc::new(clock.clone()),
            ..RunOptions::default()
        },
    )
    .expect("run on S3");
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
}

/// The abs index of a v3 data chunk key `chunks/<array>/c/<abs>/...`.
fn abs_of(key: &str) -> i64 {
    key.split('/')
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("`{key}` is not a data chunk key"))
}

#[test]
fn dataset_on_s3_matches_local_disk_and_tags_exactly_the_rolled_off_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, lines, local, config) = fixture(dir.path());

    let client =
        S3Client::with_static_credentials(&config.s3, ACCESS_KEY, SECRET_KEY).expect("client");
    let backends = Backends::open_with(&config, Some(client.clone())).expect("backends");
    let done = setup_storage(&config, &backends).expect("setup");
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(
        lifecycle::check(&client, "roller-data", &config.expiry).expect("check"),
        RuleState::Present { days: 2 }
    );

    let clock = ManualClock::at(roller_proto::time::now());
    ingest_on_s3(&config, &backends, &lines, &clock);
    ingest(&local, &lines);

    // The same logical view, read through RollingStore on S3 and on disk.
    let on_s3 = Arc::new(RollingStore::open(backends.store.clone()).expect("rolling store on S3"));
    let on_disk = rolling_store(&local);
    let (s3_shape, s3_values) = read_array::<f32>(&on_s3, "air_temperature");
    let (disk_shape, disk_values) = read_array::<f32>(&on_disk, "air_temperature");
    assert_eq!(s3_shape, disk_shape);
    assert_eq!(
        s3_values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        disk_values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    for name in ["forecast_reference_time", "forecast_period"] {
        assert_eq!(
            read_array::<i64>(&on_s3, name),
            read_array::<i64>(&on_disk, name)
        );
    }

    // Five runs through a window of three: the first two rolled off, but readers of older
    // snapshots may still read them for the grace period: nothing is tagged yet, and a
    // committer restarted before the grace is over keeps it that way.
    let offset = on_s3.record().offset;
    let store = backends.s3_store.as_ref().expect("store on S3");
    let expired = (
        config.expiry.tag_key.clone(),
        config.expiry.tag_value.clone(),
    );
    let tagged_below = |offset: i64| {
        let chunks = backends
            .store
            .list_prefix("chunks/air_temperature/")
            .expect("list");
        let (mut below, mut tagged) = (0, 0);
        for key in &chunks {
            let tags = store.tags(key).expect("tags").expect("chunk exists");
            if abs_of(key.as_str()) < offset {
                below += 1;
                if tags == vec![expired.clone()] {
                    tagged += 1;
                }
            } else {
                assert!(
                    tags.is_empty(),
                    "{key} is in the window but tagged {tags:?}"
                );
            }
        }
        (below, tagged)
    };
    let (below, tagged) = tagged_below(offset);
    assert!(below > 0, "rolled-out chunks are kept for the grace period");
    assert_eq!(tagged, 0, "tagged before the grace was over");
    let grace = config.expiry.grace.0;
    let committer = || {
        Committer::for_dataset(&config, backends.store.clone(), backends.expiry.clone())
            .map(|c| c.with_clock(Arc::new(clock.clone())))
            .expect("committer")
    };
    clock.advance(grace - 60);
    assert!(!committer().tidy().expect("tidy"));
    assert_eq!(tagged_below(offset), (below, 0));

    // Once it is over, a restarted committer tags exactly the rolled-off chunks.
    clock.advance(120);
    assert!(committer().tidy().expect("tidy"));
    assert_eq!(tagged_below(offset), (below, below));
    let record = roller_model::record::load_record(backends.store.as_ref())
        .expect("load")
        .expect("record");
    assert!(record.expiring.is_empty() && record.retired.is_empty());
    let snapshots = backends.store.list_prefix("snapshots/").expect("list");
    assert_eq!(
        snapshots,
        vec![roller_model::physical_key::snapshot_key(record.generation)],
        "only the newest generation's snapshot record is left"
    );
}

#[test]
fn at_write_tags_data_chunks_as_they_are_put_and_check_guards_the_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A window of three 6-hourly runs: the rule must keep chunks 18 h plus a day, so 2 days.
    let (_server, lines, _, mut config) = fixture(dir.path());
    config.expiry.policy = ExpiryPolicy::AtWrite;
    config.expiry.tag_key = "type".into();
    config.expiry.tag_value = "temp_chunk".into();
    let client =
        S3Client::with_static_credentials(&config.s3, ACCESS_KEY, SECRET_KEY).expect("client");
    client.create_bucket("roller-data").expect("bucket");
    let backends = Backends::open_with(&config, Some(client.clone())).expect("backends");

    let problems = |config: &DatasetConfig| -> Vec<String> {
        check_storage(config, &backends)
            .into_iter()
            .filter(|f| !f.ok)
            .map(|f| f.message)
            .collect()
    };
    let missing = problems(&config);
    assert!(
        missing.len() == 1
            && missing[0]
                .contains("no enabled lifecycle rule deleting objects tagged type=temp_chunk"),
        "{missing:?}"
    );
    // Setup refuses a rule that would delete chunks still in the window...
    let mut short = config.clone();
    short.expiry.lifecycle_days = 1;
    assert!(matches!(
        setup_storage(&short, &backends),
        Err(SetupError::Unsafe(_))
    ));
    // ...and check finds one installed by other means.
    lifecycle::install(&client, "roller-data", &short.expiry).expect("install a short rule");
    let too_short = problems(&config);
    assert!(
        too_short.len() == 1 && too_short[0].contains("set expiry.lifecycle_days to at least 2"),
        "{too_short:?}"
    );
    setup_storage(&config, &backends).expect("setup");
    assert_eq!(problems(&config), Vec::<String>::new());

    ingest_on_s3(
        &config,
        &backends,
        &lines,
        &ManualClock::at(roller_proto::time::now()),
    );

    // Every data chunk, inside the window or not, was tagged by its put; static coordinate
    // chunks (written once, needed forever) were not.
    let store = backends.s3_store.as_ref().expect("store on S3");
    let data = data_chunks_prefix(&Layout::from_config(&config));
    let tag = vec![("type".to_owned(), "temp_chunk".to_owned())];
    let (mut tagged, mut statics) = (0, 0);
    for key in backends.store.list_prefix("chunks/").expect("list") {
        let tags = store.tags(&key).expect("tags").expect("chunk exists");
        if key.as_str().starts_with(&data) {
            tagged += 1;
            assert_eq!(tags, tag, "{key}");
        } else {
            statics += 1;
            assert!(
                tags.is_empty(),
                "{key} is a static chunk but tagged {tags:?}"
            );
        }
    }
    assert!(
        tagged > 0 && tagged % (5 * 2) == 0,
        "{tagged} data chunks for 10 files"
    );
    assert!(statics > 0);
}
