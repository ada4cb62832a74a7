//! The example configs in `examples/` load and validate.

use roller_model::catalog;
use roller_model::config::DatasetConfig;
use roller_model::layout::Layout;
use roller_test_support::workspace_root;

#[test]
fn every_example_config_is_valid() {
    let dir = workspace_root().join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let configs =
                catalog::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for config in &configs {
                assert!(Layout::from_config(config).parts() >= 1);
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 6,
        "expected the UKV, height-level and today's-feed examples"
    );
    // A template for every parameter of the feed: no dataset until the feed makes them.
    let every = catalog::load_file(&dir.join("ukv-every-parameter.toml")).expect("catalog");
    assert!(every.datasets.is_empty());
    let made = every.discovering[0]
        .dataset_for("temperature_at_screen_level")
        .expect("a dataset");
    assert_eq!(made.name, "ukv-temperature_at_screen_level");
    assert_eq!(made.variable, roller_model::config::VARIABLE_FROM_FILE);
    assert_eq!(every.discovering[0].limit(), 100);
    // Lead times as published.
    let load = |name: &str| DatasetConfig::load(&dir.join(name)).expect("load");
    let global = load("global-today-screen-temperature.toml");
    assert_eq!(global.message_dims[0].size, 55 + 30 + 4);
    let maxima = load("ukv-today-max-screen-temperature.toml");
    assert_eq!(maxima.message_dims[0].size, 54);
    assert_eq!(maxima.message_dims[0].value_at(0), 3600);
    // The catalog makes the same two datasets as their own files, but for where they live and
    // the maxima's compression level (the catalog's default).
    let ukv = catalog::load(&dir.join("ukv-catalog.toml")).expect("catalog");
    let names: Vec<&str> = ukv.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["ukv-screen-temperature", "ukv-max-screen-temperature"]
    );
    let screen = load("ukv-today-screen-temperature.toml");
    for (from_catalog, own) in ukv.iter().zip([&screen, &maxima]) {
        let mut own = own.clone();
        own.store.path = from_catalog.store.path.clone();
        own.encoding.level = from_catalog.encoding.level;
        assert_eq!(from_catalog, &own, "{}", own.name);
    }
    let members = load("mogreps-uk-today-screen-temperature.toml");
    assert!(members.file_dims[0].is_per_run());
    let mogreps =
        DatasetConfig::load(&dir.join("mogreps-uk-air-temperature-height.toml")).expect("load");
    assert_eq!(Layout::from_config(&mogreps).parts(), 12 * 33 * 2);

    // A whole UKV run: 51 parameters, as many datasets, the layout left to the first files;
    // to T+54 they take the 3 445 files of a T+54 run.
    let whole = catalog::load(&dir.join("ukv-all-parameters.toml")).expect("catalog");
    assert_eq!(whole.len(), 51);
    let names: std::collections::BTreeSet<&str> = whole.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 51);
    assert!(whole.iter().all(|c| c.file_dims.is_empty()));
    let t54 = 54 * 3600;
    let files: u32 = whole
        .iter()
        .map(|c| c.message_dims[0].count_at_most(t54))
        .sum();
    assert_eq!(files, 39 * 55 + 8 * 54 + 4 * 217);
    assert_eq!(files, 3445);
    let rain = whole
        .iter()
        .find(|c| c.name == "ukv-rainfall_rate")
        .expect("the rate fields");
    assert_eq!(rain.message_dims[0].size, 217);
    let ensemble = catalog::load(&dir.join("mogreps-uk-catalog.toml")).expect("catalog");
    assert!(ensemble.iter().all(|c| c.matching.model == "uk-ensemble"));
    assert!(ensemble.len() >= 10);

    // Today's feed: a notice read from an S3 event record matches the example.
    let today = DatasetConfig::load(&dir.join("ukv-today-screen-temperature.toml")).expect("load");
    let event = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"met-office-atmospheric-model-data"},"object":{"key":"uk-deterministic-2km/20250614T0000Z/20250614T0100Z-PT0001H00M-temperature_at_screen_level.nc","size":2541234}}}]}"#;
    let notices = roller_proto::feed::parse(event).expect("parses");
    let Some(roller_proto::feed::Notice::File(note)) = notices.first() else {
        panic!("not a file notice: {notices:?}");
    };
    assert!(roller_model::matching::matches(&today.matching, note));
    assert_eq!(
        today.source.mounts.keys().collect::<Vec<_>>(),
        ["met-office-atmospheric-model-data"]
    );
}
