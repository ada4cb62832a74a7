//! `roller-serve` as a separate process over datasets made by the embedded runner: xarray
//! reads the rolled window over HTTP (Zarr v3 and v2) and follows a roll; paths, methods,
//! ranges, HEAD and conditional requests behave; concurrent chunk requests all succeed; xarray
//! reads the reference file straight from disk; the status page, in headless Chromium, shows
//! each dataset's window, completeness, quick-look and dead letters.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roller_model::config::{DatasetConfig, ScratchConfig};
use roller_model::duration::Seconds;
use roller_nats::replay::replay;
use roller_nats::shutdown::Shutdown;
use roller_nats::{run_stage, topology, NatsSettings, StageKind};
use roller_storage::expiry::DeleteExpired;
use roller_synth::write_config;
use roller_test_support::browser;
use roller_test_support::http::request;
use roller_test_support::nats::{free_port, spawn_isolated, NatsServer};
use roller_test_support::{ingest, raw_store, run_python, small_files, TestDataset};

const RUNS: usize = 4;
const LEADS: usize = 2;
const WINDOW: usize = 3;

/// A `roller-serve` process, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(configs: &[&Path], log: &Path) -> Self {
        Self::start_with(configs, log, &[])
    }

    /// Starts the server with extra environment variables.
    fn start_with(configs: &[&Path], log: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_roller-serve"));
        command.envs(env.iter().copied());
        for config in configs {
            command.arg("--config").arg(config);
        }
        let child = spawn_isolated(
            command
                .args(["--listen", &format!("127.0.0.1:{port}"), "--refresh", "0s"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).expect("log")),
        )
        .expect("start roller-serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "roller-serve did not listen: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    fn url(&self, dataset: &str) -> String {
        format!("http://127.0.0.1:{}/{dataset}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two datasets of the same files, Zarr v3 and v2, ingested: their configs, config files and
/// the notifications file.
fn datasets(dir: &Path) -> (Vec<DatasetConfig>, Vec<PathBuf>, PathBuf) {
    let src = dir.join("src");
    let files = small_files(&src, RUNS, LEADS, 20, 30);
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    let mut configs = Vec::new();
    let mut paths = Vec::new();
    for (name, format) in [("ukv3", 3), ("ukv2", 2)] {
        let config = TestDataset::new(name)
            .window(u32::try_from(WINDOW).expect("window"))
            .leads(u32::try_from(LEADS).expect("leads"))
            .extra(&format!(
                "[encoding]\nformat = {format}\n[reference]\nenabled = true\n"
            ))
            .config(&dir.join(name), &src);
        let summary = ingest(&config, &lines);
        assert!(
            summary.dead_letters.is_empty(),
            "{:?}",
            summary.dead_letters
        );
        let path = dir.join(format!("{name}.toml"));
        write_config(&config, &path).expect("write config");
        configs.push(config);
        paths.push(path);
    }
    (configs, paths, src.join("notifications.jsonl"))
}

/// Reads `target` (a URL, or a reference file's path) with xarray and checks it against the
/// source files; with `same_as`, also checks it equals the dataset at that URL.
fn read_with_xarray(
    target: &str,
    notifications: &Path,
    fields: usize,
    same_as: Option<&str>,
) -> serde_json::Value {
    let mut args = vec![
        target.to_owned(),
        notifications.display().to_string(),
        WINDOW.to_string(),
        LEADS.to_string(),
        fields.to_string(),
    ];
    args.extend(same_as.map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_python("read_served.py", &args);
    serde_json::from_str(out.lines().last().unwrap_or_default()).expect("the script's JSON line")
}

#[test]
fn xarray_reads_the_rolled_window_over_http_for_zarr_v3_and_v2_and_follows_a_roll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (configs, paths, notifications) = datasets(dir.path());
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let server = Server::start(&refs, &dir.path().join("serve.log"));

    for config in &configs {
        let read = read_with_xarray(
            &server.url(&config.name),
            &notifications,
            WINDOW * LEADS,
            None,
        );
        // Four 6-hourly runs from 2024-01-01T00 through a window of three: the first rolled off.
        assert_eq!(read["first"], "2024-01-01T06:00:00.000000000", "{read}");
        assert_eq!(read["last"], "2024-01-01T18:00:00.000000000", "{read}");
    }

    // One step on: the newest run has no files (fill values) and the oldest left the window.
    let chunk = "air_temperature/c/2/0/0/0";
    let before = request(server.port, "GET", &format!("/ukv3/{chunk}"), &[]);
    assert_eq!(before.status, 200);
    let config = &configs[0];
    let until = roller_proto::time::parse_instant("2024-01-02T00:00:00Z").expect("time");
    roller_embedded::roll(config, raw_store(config), Arc::new(DeleteExpired), until).expect("roll");
    let read = read_with_xarray(
        &server.url("ukv3"),
        &notifications,
        (WINDOW - 1) * LEADS,
        None,
    );
    assert_eq!(read["first"], "2024-01-01T12:00:00.000000000", "{read}");
    assert_eq!(read["last"], "2024-01-02T00:00:00.000000000", "{read}");
    assert_eq!(
        request(server.port, "GET", &format!("/ukv3/{chunk}"), &[]).status,
        404,
        "a chunk with no data in the new window is missing, not an error"
    );
}

/// The reference file of a store, as a path for `read_served.py`.
fn reference_file(config: &DatasetConfig) -> String {
    config
        .store
        .path
        .join(roller_commit::reference::REFERENCE_KEY)
        .display()
        .to_string()
}

#[test]
fn xarray_reads_the_reference_file_straight_from_disk_with_the_same_values_as_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (configs, paths, notifications) = datasets(dir.path());
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let server = Server::start(&refs, &dir.path().join("serve.log"));

    for config in &configs {
        let url = server.url(&config.name);
        let read = read_with_xarray(
            &reference_file(config),
            &notifications,
            WINDOW * LEADS,
            Some(&url),
        );
        assert_eq!(read["first"], "2024-01-01T06:00:00.000000000", "{read}");
    }

    // The roll rewrites the reference: the moved window, an empty newest run (fill values
    // for chunks that were never stored) and no reference to a chunk that left the window.
    let config = &configs[1];
    let before = std::fs::read_to_string(reference_file(config)).expect("reference");
    let until = roller_proto::time::parse_instant("2024-01-02T00:00:00Z").expect("time");
    roller_embedded::roll(config, raw_store(config), Arc::new(DeleteExpired), until).expect("roll");
    let after = std::fs::read_to_string(reference_file(config)).expect("reference");
    let url = server.url(&config.name);
    let read = read_with_xarray(
        &reference_file(config),
        &notifications,
        (WINDOW - 1) * LEADS,
        Some(&url),
    );
    assert_eq!(read["first"], "2024-01-01T12:00:00.000000000", "{read}");
    assert_eq!(read["last"], "2024-01-02T00:00:00.000000000", "{read}");
    // The oldest run's first chunk (v2 key `0.0.0.0`) pointed at a file before the roll; no key
    // points at it after.
    let refs = |text: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(text).expect("JSON")["refs"].clone()
    };
    let rolled_off = refs(&before)["air_temperature/0.0.0.0"][0].clone();
    let url = rolled_off.as_str().expect("a URL reference");
    assert!(url.starts_with("file:///"), "{url}");
    assert!(!after.contains(url), "{url} is still referenced");
    assert_eq!(
        refs(&after)["air_temperature/0.0.0.0"],
        refs(&before)["air_temperature/1.0.0.0"]
    );
}

#[test]
fn paths_methods_ranges_heads_and_conditional_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, paths, _) = datasets(dir.path());
    let server = Server::start(&[&paths[0], &paths[1]], &dir.path().join("serve.log"));
    let get = |path: &str, headers: &[(&str, &str)]| request(server.port, "GET", path, headers);

    // Traversal and odd paths: refused, and nothing of the file system leaks.
    for path in [
        "/ukv3/../ukv3.toml",
        "/../ukv3.toml",
        "/ukv3/%2e%2e/ukv3.toml",
        "/ukv3/..%2fukv3.toml",
        "/ukv3%2f..%2f..%2fetc%2fpasswd",
        "//etc/passwd",
        "/ukv3/./zarr.json",
        "/ukv3\\..\\ukv3.toml",
    ] {
        let reply = get(path, &[]);
        assert!(
            (400..500).contains(&reply.status),
            "{path}: {}",
            reply.status
        );
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            !body.contains("[rolling]") && !body.contains("root:"),
            "{path}: {body}"
        );
    }
    assert_eq!(get("/etc/passwd", &[]).status, 404);
    assert_eq!(get("/nope/zarr.json", &[]).status, 404);
    // The raw store is not reachable through the view.
    assert_eq!(get("/ukv3/roller.json", &[]).status, 404);
    assert_eq!(get("/ukv3/air_temperature/c/9/0/0/0", &[]).status, 404);
    assert_eq!(get("/ukv3/air_temperature/c/x", &[]).status, 404);
    assert_eq!(
        request(server.port, "POST", "/ukv3/zarr.json", &[]).status,
        405
    );
    assert_eq!(
        request(server.port, "DELETE", "/ukv3/zarr.json", &[]).status,
        405
    );

    // Metadata: short-lived. v2 has consolidated metadata.
    let meta = get("/ukv3/zarr.json", &[]);
    assert_eq!(meta.status, 200);
    assert_eq!(meta.header("content-type"), Some("application/json"));
    assert!(meta
        .header("cache-control")
        .is_some_and(|c| c.contains("max-age")));
    assert_eq!(get("/ukv2/.zmetadata", &[]).status, 200);

    // A chunk: tagged by its physical key; HEAD, ranges and revalidation.
    let chunk = "/ukv3/air_temperature/c/0/0/0/0";
    let whole = get(chunk, &[]);
    assert_eq!(whole.status, 200);
    let etag = whole.header("etag").expect("etag").to_owned();
    assert!(etag.contains("chunks/air_temperature/c/"), "{etag}");
    assert_eq!(whole.header("cache-control"), Some("public, no-cache"));
    let len = whole.body.len();
    assert!(len > 8);
    let head = request(server.port, "HEAD", chunk, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert!(head.body.is_empty());
    let part = get(chunk, &[("Range", "bytes=2-5")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[2..6]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 2-5/{len}").as_str())
    );
    let suffix = get(chunk, &[("Range", "bytes=-4")]);
    assert_eq!(suffix.body, whole.body[len - 4..]);
    assert_eq!(
        get(chunk, &[("Range", &format!("bytes={len}-"))]).status,
        416
    );
    let again = get(chunk, &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());

    // 200 concurrent chunk requests all succeed.
    let port = server.port;
    let threads: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let path = format!("/ukv3/air_temperature/c/{}/{}/0/0", i % WINDOW, i % LEADS);
                request(port, "GET", &path, &[]).status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("request thread"), 200);
    }
}

/// Runs a fetch stage on `config` over the NATS at `url` and replays `lines` into it, so they
/// are dead-lettered by the real stage. Returns the stage's shutdown handle and thread.
fn dead_letter_through_fetch(
    config: &DatasetConfig,
    url: &str,
    lines: Vec<String>,
) -> (Shutdown, std::thread::JoinHandle<()>) {
    let settings = NatsSettings::from_vars(|name| (name == "NATS_URL").then(|| url.to_owned()))
        .expect("settings");
    let shutdown = Shutdown::new();
    let (config, stop) = (config.clone(), shutdown.clone());
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let client = topology::connect(&settings, "test").await.expect("connect");
            topology::setup(client.clone(), &settings, &config)
                .await
                .expect("setup");
            let stage = tokio::spawn(run_stage(
                StageKind::Fetch,
                config.clone(),
                settings.clone(),
                stop,
            ));
            let js = async_nats::jetstream::new(client);
            replay(&js, &settings.subjects, &config.name, lines)
                .await
                .expect("replay");
            stage.await.expect("join").expect("fetch stage");
        });
    });
    (shutdown, thread)
}

#[test]
fn the_status_page_in_headless_chromium_shows_names_window_completeness_quicklook_and_dead_letters()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (configs, paths, _) = datasets(dir.path());
    let nats = NatsServer::start(&dir.path().join("nats"));
    let mut fetching = configs[0].clone();
    fetching.scratch = Some(ScratchConfig {
        path: dir.path().join("scratch"),
        max_age: Seconds(3600),
        fsync: false,
    });
    let (shutdown, stage) = dead_letter_through_fetch(
        &fetching,
        &nats.url(),
        vec![
            "not JSON".into(),
            "{\"also\": \"not a notification\"}".into(),
        ],
    );
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let server = Server::start_with(
        &refs,
        &dir.path().join("serve.log"),
        &[("NATS_URL", &nats.url())],
    );
    let index = format!("http://127.0.0.1:{}/", server.port);
    let page_of = |name: &str| {
        let page = request(server.port, "GET", &format!("/_status/{name}"), &[]);
        assert_eq!(page.status, 200);
        String::from_utf8_lossy(&page.body).into_owned()
    };

    // The two bad messages reach the dead-letter stream through the real fetch stage.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let html = page_of("ukv3");
        if html.contains("<dd class=\"dead\">2</dd>") {
            break html;
        }
        assert!(
            Instant::now() < deadline,
            "no dead-letter count of 2: {html}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    shutdown.stop_pulling.cancel();
    shutdown.give_up.cancel();
    stage.join().expect("fetch stage thread");
    // ukv2 has no dead letters (the stream is per dataset).
    let other = page_of("ukv2");
    assert!(other.contains("<dd class=\"dead\">0</dd>"), "{other}");

    // Completeness: every field of the window is visible (3 runs x 2 lead times).
    for html in [&page, &other] {
        assert_eq!(
            html.matches("<td class=\"ok\"").count(),
            WINDOW * LEADS,
            "{html}"
        );
    }
    assert_eq!(
        request(server.port, "GET", "/_status/nope", &[]).status,
        404
    );

    // The quick-look is a PNG.
    let png = request(server.port, "GET", "/_quicklook/ukv3.png", &[]);
    assert_eq!(png.status, 200);
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert!(png.body.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(
        request(server.port, "GET", "/_quicklook/nope.png", &[]).status,
        404
    );

    // In the browser, the index: a row per dataset with its window, newest run, completeness
    // and dead letters, linking to the dataset's page; sorted and filtered from the URL.
    let dom = browser::dump_dom(&index);
    assert!(dom.contains("data-ready=\"yes\""), "the script ran: {dom}");
    for name in ["ukv3", "ukv2"] {
        assert!(
            dom.contains(&format!("<a href=\"/_status/{name}\">{name}</a>")),
            "{dom}"
        );
    }
    assert_eq!(dom.matches("3 of 3 runs").count(), 2, "{dom}");
    assert_eq!(dom.matches("2 of 2 lead times").count(), 2, "{dom}");
    assert!(dom.contains("2024-01-01T18:00:00Z"), "{dom}");
    assert!(
        dom.contains("<tr data-name=\"ukv3\" class=\"dead\">"),
        "{dom}"
    );
    let filtered = browser::dump_dom(&format!("{index}?filter=ukv2"));
    assert!(
        filtered.contains("<tr data-name=\"ukv3\" class=\"dead\" hidden=\"\">"),
        "{filtered}"
    );
    assert!(filtered.contains("<tr data-name=\"ukv2\">"), "{filtered}");
    let by_name = |url: &str| {
        let dom = browser::dump_dom(url);
        let (a, b) = (
            dom.find("data-name=\"ukv2\""),
            dom.find("data-name=\"ukv3\""),
        );
        a.zip(b).map(|(a, b)| a < b).expect("both rows")
    };
    assert!(
        by_name(&format!("{index}?sort=name")),
        "ukv2 first ascending"
    );
    assert!(
        !by_name(&format!("{index}?sort=name&dir=desc")),
        "ukv3 first descending"
    );
    assert!(
        by_name(&format!("{index}?sort=dead")),
        "fewer dead letters first"
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-index.png");
    browser::screenshot(&index, &shot);
    let bytes = std::fs::read(&shot).expect("screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
        "{}",
        shot.display()
    );
    println!("screenshot: {}", shot.display());

    // A dataset's page: its name, the window and the loaded quick-look.
    let dataset = format!("{index}_status/ukv3");
    let dom = browser::dump_dom(&dataset);
    assert!(dom.contains("<h2>ukv3</h2>"), "{dom}");
    assert!(
        dom.contains("id=\"quicklook-ukv3\""),
        "no quick-look: {dom}"
    );
    assert!(
        dom.contains("2024-01-01T06:00:00Z to 2024-01-01T18:00:00Z (3 of 3 runs)"),
        "{dom}"
    );
    assert_eq!(dom.matches("data-loaded=\"yes\"").count(), 1, "{dom}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    browser::screenshot(&dataset, &shot);
    let bytes = std::fs::read(&shot).expect("screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{}",
        shot.display()
    );
    println!("screenshot: {}", shot.display());
}

#[test]
fn the_index_stays_usable_with_two_hundred_datasets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (configs, _, _) = datasets(dir.path());
    let template = toml::Value::try_from(&configs[0]).expect("a config as TOML");
    let tables: Vec<toml::Value> = (0..200)
        .map(|i| {
            let mut table = template.clone();
            let name = format!("param-{i:03}");
            table["name"] = toml::Value::String(name.clone());
            table["store"]["path"] =
                toml::Value::String(dir.path().join("stores").join(&name).display().to_string());
            table
        })
        .collect();
    let mut catalog = toml::Table::new();
    catalog.insert("dataset".into(), toml::Value::Array(tables));
    let path = dir.path().join("catalog.toml");
    std::fs::write(&path, toml::to_string(&catalog).expect("TOML")).expect("write catalog");
    let server = Server::start(&[&path], &dir.path().join("serve.log"));
    let page = request(server.port, "GET", "/", &[]);
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert_eq!(html.matches("<tr data-name=").count(), 200);
    assert_eq!(html.matches("no commit yet").count(), 200);
    assert!(html.contains("200 datasets"), "{html}");
    // No images on the index: its weight grows by a row per dataset.
    assert!(!html.contains("<img"));
    assert!(page.body.len() < 200 * 1024, "{} bytes", page.body.len());
    let index = format!("http://127.0.0.1:{}/", server.port);
    let dom = browser::dump_dom(&format!("{index}?filter=param-19"));
    let shown = dom.matches("<tr data-name=\"param-").count() - dom.matches("hidden=\"\">").count();
    assert_eq!(shown, 10, "param-190 to param-199");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-index-200.png");
    browser::screenshot(&index, &shot);
    assert!(std::fs::read(&shot)
        .expect("screenshot")
        .starts_with(b"\x89PNG"));
    println!("screenshot: {}", shot.display());
}

#[test]
fn a_catalog_serves_every_dataset_it_defines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (configs, _, _) = datasets(dir.path());
    let tables: Vec<toml::Value> = configs
        .iter()
        .map(|c| toml::Value::try_from(c).expect("a config as TOML"))
        .collect();
    let mut catalog = toml::Table::new();
    catalog.insert("dataset".into(), toml::Value::Array(tables));
    let path = dir.path().join("catalog.toml");
    std::fs::write(&path, toml::to_string(&catalog).expect("TOML")).expect("write catalog");
    let server = Server::start(&[&path], &dir.path().join("serve.log"));
    let page = request(server.port, "GET", "/", &[]);
    assert_eq!(page.status, 200);
    let page = String::from_utf8_lossy(&page.body);
    for config in &configs {
        assert!(
            page.contains(&config.name),
            "{} missing from\n{page}",
            config.name
        );
    }
    let v3 = request(server.port, "GET", "/ukv3/zarr.json", &[]);
    let v2 = request(server.port, "GET", "/ukv2/.zgroup", &[]);
    assert_eq!((v3.status, v2.status), (200, 200));
}
