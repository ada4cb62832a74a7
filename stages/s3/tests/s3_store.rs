//! The S3 backend against a real S3-compatible server (SeaweedFS on loopback).

use bytes::Bytes;
use roller_model::config::{ExpiryConfig, S3Config};
use roller_s3::lifecycle::{self, RuleState};
use roller_s3::{S3Client, S3Store, TagExpired};
use roller_storage::{Key, Storage};
use roller_test_support::s3::{S3Server, ACCESS_KEY, SECRET_KEY};

fn key(s: &str) -> Key {
    Key::new(s).expect("valid key")
}

fn client(server: &S3Server) -> S3Client {
    let config = S3Config {
        endpoint_url: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        force_path_style: true,
        max_attempts: 3,
        ..S3Config::default()
    };
    S3Client::with_static_credentials(&config, ACCESS_KEY, SECRET_KEY).expect("client")
}

#[test]
fn objects_ranges_listing_tags_and_lifecycle_rule_on_a_real_s3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start(dir.path());
    let client = client(&server);
    client.create_bucket("roller-test").expect("bucket");
    client
        .create_bucket("roller-test")
        .expect("creating twice is fine");
    let store = S3Store::new(client.clone(), "roller-test", "datasets/ukv");

    let k = key("chunks/air/c/1/0/0");
    assert_eq!(store.get(&k).expect("get missing"), None);
    assert_eq!(store.size(&k).expect("size missing"), None);
    store
        .put(&k, Bytes::from_static(b"hello world"))
        .expect("put");
    assert_eq!(
        store.get(&k).expect("get").as_deref(),
        Some(&b"hello world"[..])
    );
    assert_eq!(store.size(&k).expect("size"), Some(11));
    assert_eq!(
        store.get_range(&k, 6, Some(5)).expect("range").as_deref(),
        Some(&b"world"[..])
    );
    assert_eq!(
        store.get_range(&k, 6, None).expect("open range").as_deref(),
        Some(&b"world"[..])
    );
    store
        .put_parts(&key("roller.json"), &[b"{", b"}"])
        .expect("put parts");
    let file = dir.path().join("source.nc");
    std::fs::write(&file, b"netcdf").expect("file");
    store
        .put_file(&key("fetched/ukv/1"), &file)
        .expect("put file");
    assert_eq!(
        store.list_prefix("").expect("list"),
        vec![
            key("chunks/air/c/1/0/0"),
            key("fetched/ukv/1"),
            key("roller.json")
        ]
    );
    assert_eq!(
        store.list_prefix("chunks/").expect("list chunks"),
        vec![key("chunks/air/c/1/0/0")]
    );

    // Tags: idempotent, and a missing object is not an error.
    let expiry = TagExpired::new(store.clone(), "zarr-roller-expired", "true");
    let keys = [k.clone(), key("chunks/air/c/0/0/0")];
    roller_storage::expiry::Expiry::expire(&expiry, &store, &keys).expect("tag");
    roller_storage::expiry::Expiry::expire(&expiry, &store, &keys).expect("tag again");
    assert_eq!(
        store.tags(&k).expect("tags"),
        Some(vec![("zarr-roller-expired".into(), "true".into())])
    );
    assert_eq!(store.tags(&key("roller.json")).expect("tags"), Some(vec![]));

    store.delete(&k).expect("delete");
    store.delete(&k).expect("delete twice");
    assert_eq!(store.get(&k).expect("get deleted"), None);

    // The lifecycle rule: missing, installed, read back; installing twice keeps one rule.
    let config = ExpiryConfig {
        lifecycle_days: 3,
        ..ExpiryConfig::default()
    };
    assert_eq!(
        lifecycle::check(&client, "roller-test", &config).expect("check"),
        RuleState::Missing
    );
    lifecycle::install(&client, "roller-test", &config).expect("install");
    lifecycle::install(&client, "roller-test", &config).expect("install twice");
    assert_eq!(
        lifecycle::check(&client, "roller-test", &config).expect("check"),
        RuleState::Present { days: 3 }
    );
}

#[test]
fn sources_are_sized_downloaded_capped_and_their_downloads_removed() {
    use std::sync::Arc;

    use roller_fetch::{FetchError, Fetcher, ObjectSource};
    use roller_model::config::SourceConfig;
    use roller_proto::Notification;
    use roller_s3::S3Objects;

    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start(&dir.path().join("s3"));
    let client = client(&server);
    client.create_bucket("sources").expect("bucket");
    let sources = S3Store::new(client.clone(), "sources", "");
    sources
        .put(&key("mo/a.nc"), Bytes::from(vec![7u8; 1000]))
        .expect("upload");
    let objects = S3Objects::new(client);

    assert_eq!(objects.size("sources", "mo/a.nc"), Ok(Some(1000)));
    assert_eq!(objects.size("sources", "mo/missing.nc"), Ok(None));
    let to = dir.path().join("download");
    assert_eq!(objects.download("sources", "mo/a.nc", &to, 1000), Ok(1000));
    assert_eq!(std::fs::read(&to).expect("read"), vec![7u8; 1000]);
    // The cap holds while the body streams, whatever the size check said before.
    let capped = objects
        .download("sources", "mo/a.nc", &to, 999)
        .expect_err("over the cap");
    assert!(
        capped.permanent && capped.reason.contains("more than"),
        "{capped:?}"
    );

    // Through the fetcher: the download is a private temporary file, removed on drop.
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).expect("mkdir");
    let fetcher = Fetcher::new(&SourceConfig {
        buckets: vec!["sources".into()],
        ..SourceConfig::default()
    })
    .expect("fetcher")
    .with_objects(Arc::new(objects), downloads.clone());
    let note = |key: &str, size: u64| {
        Notification::from_json(&format!(
            r#"{{"model":"m","name":"n","bucket":"sources","key":"{key}","object_size":"{size}","forecast_reference_time":"2024-01-01T00:00:00Z"}}"#
        ))
        .expect("notification")
    };
    let file = fetcher.fetch(&note("mo/a.nc", 1000)).expect("fetch");
    assert_eq!(file.size(), 1000);
    assert_eq!(std::fs::read(file.path()).expect("read"), vec![7u8; 1000]);
    assert!(file.path().starts_with(&downloads));
    drop(file);
    assert_eq!(std::fs::read_dir(&downloads).expect("list").count(), 0);
    assert!(matches!(
        fetcher.fetch(&note("mo/a.nc", 999)),
        Err(FetchError::SizeMismatch { .. })
    ));
    assert!(matches!(
        fetcher.fetch(&note("mo/missing.nc", 1)),
        Err(FetchError::Missing { .. })
    ));
    assert_eq!(std::fs::read_dir(&downloads).expect("list").count(), 0);
}

#[test]
fn the_s3_store_passes_the_storage_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start(dir.path());
    let client = client(&server);
    client.create_bucket("conformance").expect("bucket");
    let store = S3Store::new(client, "conformance", "datasets/suite");
    roller_test_support::conformance::check_storage(&store);
}
