//! Shared helpers for zarr-roller's tests: synthetic datasets, configs, reading the logical view,
//! snapshots of a store for byte-for-byte comparison, and the Python environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roller_embedded::{RunOptions, RunSummary};
use roller_model::config::DatasetConfig;
use roller_model::rolling_store::RollingStore;
use roller_storage::{LocalStore, Storage};
use roller_synth::{synth, SynthFile, SynthOptions};
use zarrs::array::Array;

pub mod browser;
pub mod cluster;
pub mod conformance;
pub mod feed;
pub mod http;
pub mod nats;
pub mod s3;
pub mod sqs;

/// The workspace root (where README.md and `.venv` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A dataset config for tests, built up from defaults: a 20 x 30 UKV-like grid chunked 8 x 16,
/// 6-hourly runs, one lead time, window 3, model `mo-atmospheric-ukv-prd`.
#[derive(Debug, Clone)]
pub struct TestDataset {
    name: String,
    model: String,
    match_name: String,
    window: u32,
    run_step: String,
    leads: u32,
    file_dims: Vec<(String, u64, u64)>,
    extra: String,
}

impl TestDataset {
    /// Defaults for a dataset called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            model: "mo-atmospheric-ukv-prd".into(),
            match_name: "air_temperature".into(),
            window: 3,
            run_step: "6h".into(),
            leads: 1,
            file_dims: vec![
                ("projection_y_coordinate".into(), 20, 8),
                ("projection_x_coordinate".into(), 30, 16),
            ],
            extra: String::new(),
        }
    }

    /// Notifications must come from this model.
    pub fn model(mut self, model: &str) -> Self {
        model.clone_into(&mut self.model);
        self
    }

    /// Notifications must carry this `name` (the CF name in the aws-earth feed, the parameter
    /// token of the key today).
    pub fn match_name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.match_name);
        self
    }

    /// Visible steps.
    pub fn window(mut self, window: u32) -> Self {
        self.window = window;
        self
    }

    /// Spacing of runs (`"1h"`, `"6h"`).
    pub fn run_step(mut self, step: &str) -> Self {
        step.clone_into(&mut self.run_step);
        self
    }

    /// Hourly lead times per run.
    pub fn leads(mut self, leads: u32) -> Self {
        self.leads = leads;
        self
    }

    /// File dims as `(name, size, chunk)`, outermost first.
    pub fn file_dims(mut self, dims: &[(&str, u64, u64)]) -> Self {
        self.file_dims = dims
            .iter()
            .map(|(n, s, c)| ((*n).to_string(), *s, *c))
            .collect();
        self
    }

    /// Extra TOML appended to the config (e.g. an `[encoding]` table).
    pub fn extra(mut self, toml: &str) -> Self {
        toml.clone_into(&mut self.extra);
        self
    }

    /// The config, storing in `store` and reading sources under `sources`.
    pub fn config(&self, store: &Path, sources: &Path) -> DatasetConfig {
        let mut text = format!(
            r#"name = "{}"
variable = "air_temperature"
[match]
model = "{}"
name = "{}"
[rolling]
dim = "forecast_reference_time"
step = "{}"
window = {}
[[message_dims]]
name = "forecast_period"
step = "1h"
size = {}
[store]
path = "{}"
fsync = false
[source]
local_roots = ["{}"]
"#,
            self.name,
            self.model,
            self.match_name,
            self.run_step,
            self.window,
            self.leads,
            store.display(),
            sources.display()
        );
        for (dim, size, chunk) in &self.file_dims {
            text.push_str(&format!(
                "[[file_dims]]\nname = \"{dim}\"\nsize = {size}\nchunk = {chunk}\n"
            ));
        }
        text.push_str(&self.extra);
        DatasetConfig::from_toml(&text).expect("test config is valid")
    }
}

/// Synthesises small files: `runs` x `leads` on an `ny` x `nx` grid, 6-hourly runs.
pub fn small_files(out: &Path, runs: usize, leads: usize, ny: usize, nx: usize) -> Vec<SynthFile> {
    synth(&SynthOptions {
        out: out.to_path_buf(),
        ny,
        nx,
        runs,
        leads,
        run_step: 6 * 3600,
        ..SynthOptions::default()
    })
    .expect("synthesise files")
}

/// Runs the embedded pipeline over notification lines.
pub fn ingest(config: &DatasetConfig, lines: &[String]) -> RunSummary {
    let store = roller_embedded::open_store(config).expect("open store");
    roller_embedded::run(
        config,
        store,
        lines.iter().cloned().map(Ok),
        &RunOptions::default(),
    )
    .expect("embedded run")
}

/// The local raw store of a dataset.
pub fn raw_store(config: &DatasetConfig) -> Arc<dyn Storage> {
    Arc::new(LocalStore::new(&config.store.path, false).expect("open raw store"))
}

/// The logical view of a dataset.
pub fn rolling_store(config: &DatasetConfig) -> Arc<RollingStore> {
    Arc::new(RollingStore::open(raw_store(config)).expect("open rolling store"))
}

/// Reads a whole array of the logical view, with its shape.
pub fn read_array<T: zarrs::array::ElementOwned>(
    store: &Arc<RollingStore>,
    name: &str,
) -> (Vec<u64>, Vec<T>) {
    let array = Array::open(store.clone(), &format!("/{name}")).expect("open logical array");
    let values = array
        .retrieve_array_subset::<Vec<T>>(&array.subset_all())
        .expect("read logical array");
    (array.shape().to_vec(), values)
}

/// Reads a whole NetCDF variable as f32 with the netCDF library: the oracle, independent of the
/// decode stage.
pub fn netcdf_values(path: &Path, name: &str) -> Vec<f32> {
    roller_decode::hdf5_quiet::silence_this_thread();
    let file = netcdf::open(path).expect("open source");
    file.variable(name)
        .expect("variable")
        .get_values::<f32, _>(..)
        .expect("values")
}

/// Every object under a directory, by relative path (temporary files of puts in progress are
/// skipped, so it can be taken while stages write). What counts and times commits differs
/// between runs that reach the same state by different paths, so it is left out: the snapshot
/// records (one per generation), and in the commit record `generation`, `committed_at`, the
/// release times of pending expiries and the retired snapshots. Everything else must be
/// identical.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .expect("inside")
                .to_string_lossy()
                .to_string();
            // A put in progress (temporary file), or an object removed since the listing:
            // neither is part of the store's state.
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
            {
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("reading {}: {e}", path.display()),
            };
            if let Some(bytes) = comparable(&rel, bytes) {
                out.insert(rel, bytes);
            }
        }
    }
    out
}

/// Every object of a store (any backend) by key, compared as [`snapshot`] compares.
pub fn snapshot_store(store: &dyn Storage) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for key in store.list_prefix("").expect("list the store") {
        // A server just back from an outage may answer 5xx for a moment: read again.
        let mut read = store.get(&key);
        for _ in 0..10 {
            if read.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            read = store.get(&key);
        }
        // Removed since the listing: not part of the store's state.
        let Some(bytes) = read.expect("read an object") else {
            continue;
        };
        let name = key.as_str().to_owned();
        if let Some(bytes) = comparable(&name, bytes.to_vec()) {
            out.insert(name, bytes);
        }
    }
    out
}

/// An object's bytes with the commit record's run-specific fields blanked; `None` for the
/// snapshot records, whose number depends on how many commits a run made.
fn comparable(key: &str, bytes: Vec<u8>) -> Option<Vec<u8>> {
    use roller_model::physical_key::{COMMIT_KEY, SNAPSHOTS_PREFIX};
    if key.starts_with(&format!("{SNAPSHOTS_PREFIX}/")) {
        return None;
    }
    if key != COMMIT_KEY {
        return Some(bytes);
    }
    let mut record: serde_json::Value = serde_json::from_slice(&bytes).expect("record json");
    record["generation"] = serde_json::Value::Null;
    record["committed_at"] = serde_json::Value::Null;
    record["retired"] = serde_json::Value::Null;
    if let Some(expiring) = record["expiring"].as_array_mut() {
        for e in expiring {
            e["release_at"] = serde_json::Value::Null;
        }
    }
    Some(serde_json::to_vec_pretty(&record).expect("json"))
}

/// The Python interpreter of the test virtual environment (`ROLLER_PYTHON`, or `.venv` at the
/// workspace root). The README's test command creates it; tests fail loudly without it.
pub fn python() -> PathBuf {
    let python = std::env::var_os("ROLLER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "no Python test environment at {}; run `./dev test` (it creates .venv from tests/python/requirements.txt) or set ROLLER_PYTHON",
        python.display()
    );
    python
}

/// Runs a Python script from `tests/python` with arguments, panicking with its output on failure.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(python())
        .arg(workspace_root().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("start python");
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Python script from `tests/python` that talks to the test over stdin and stdout, line by
/// line (for readers that must act between steps the test takes). Killed on drop.
pub struct PythonSession {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    script: String,
}

impl PythonSession {
    /// Starts `script` with `args`; its stderr goes to the test's.
    pub fn start(script: &str, args: &[&str]) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(python())
            .arg(workspace_root().join("tests/python").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python");
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            lines: std::io::BufReader::new(stdout).lines(),
            script: script.to_owned(),
        }
    }

    /// The script's next line of output; panics if it ended instead.
    pub fn line(&mut self) -> String {
        match self.lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let status = self.child.wait().expect("wait for python");
                panic!("{} ended ({status}) instead of answering", self.script)
            }
        }
    }

    /// Sends one line to the script.
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}").expect("write to python");
        stdin.flush().expect("flush to python");
    }

    /// The script's last line, once it has exited successfully.
    pub fn finish(mut self) -> String {
        let last = self.line();
        let status = self.child.wait().expect("wait for python");
        assert!(status.success(), "{} failed: {status}", self.script);
        last
    }
}

impl Drop for PythonSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
