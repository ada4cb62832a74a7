//! Dependencies say what a crate is: read from `cargo metadata`, the box crates and the layers
//! they share stay free of the bus and cloud SDKs, only decode links NetCDF/HDF5, the wire types
//! stay free of NetCDF, and the demo links no S3, NATS or HTTP server; the synthetic-file generator is in no stage library (the `roller`
//! CLI, which the image also runs as every stage, does carry it for `roller synth`, `sample` and
//! the benchmarks). A crate that gains
//! one of these dependencies fails here, naming the path that pulled it in.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;

use serde_json::Value;

/// Package name -> the packages it depends on for its library and binaries (normal
/// dependencies only: build scripts and tests link nothing into the shipped code).
fn dependency_graph() -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(roller_test_support::workspace_root().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let names: BTreeMap<String, String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id").to_owned(),
                p["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect();
    let mut graph = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().expect("resolve") {
        let id = node["id"].as_str().expect("node id").to_owned();
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
            })
            .map(|d| d["pkg"].as_str().expect("pkg").to_owned())
            .collect();
        graph.insert(id, deps);
    }
    (names, graph)
}

/// Fails if `package` reaches a package whose name starts with one of `forbidden`, with the
/// chain of dependencies that leads there.
fn assert_free_of(package: &str, forbidden: &[&str]) {
    let (names, graph) = dependency_graph();
    let start = names
        .iter()
        .find(|(_, name)| name.as_str() == package)
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("no package {package} in the workspace"));
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = BTreeSet::from([start.clone()]);
    let mut queue = VecDeque::from([start.clone()]);
    while let Some(id) = queue.pop_front() {
        let name = &names[&id];
        if forbidden.iter().any(|f| name.starts_with(f)) {
            let mut chain = vec![name.clone()];
            let mut at = id.clone();
            while let Some(p) = parent.get(&at) {
                chain.push(names[p].clone());
                at = p.clone();
            }
            chain.reverse();
            panic!(
                "{package} must not depend on {name}: {}",
                chain.join(" -> ")
            );
        }
        for dep in graph.get(&id).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                parent.insert(dep.clone(), id.clone());
                queue.push_back(dep.clone());
            }
        }
    }
}

const BUS_AND_CLOUD: &[&str] = &["async-nats", "aws-sdk-", "aws-config"];
const HTTP_SERVER: &[&str] = &["axum", "hyper"];
const NETCDF: &[&str] = &["netcdf", "hdf5"];

/// The box crates and the layers beneath them.
const BOXES_AND_LAYERS: &[&str] = &[
    "roller-storage",
    "roller-model",
    "roller-bus",
    "roller-embedded",
    "roller-bridge",
    "roller-fetch",
    "roller-decode",
    "roller-write",
    "roller-commit",
    "roller-scheduler",
];

#[test]
fn the_serve_box_depends_on_no_bus_or_cloud_sdk() {
    assert_free_of("roller-serve", BUS_AND_CLOUD);
}

#[test]
fn boxes_and_their_layers_depend_on_no_bus_cloud_sdk_or_http_server() {
    for package in BOXES_AND_LAYERS {
        assert_free_of(package, BUS_AND_CLOUD);
        assert_free_of(package, HTTP_SERVER);
    }
}

#[test]
fn only_decode_links_netcdf() {
    for package in [
        "roller-storage",
        "roller-model",
        "roller-bus",
        "roller-bridge",
        "roller-sqs",
        "roller-fetch",
        "roller-write",
        "roller-commit",
        "roller-scheduler",
        "roller-serve",
    ] {
        assert_free_of(package, NETCDF);
    }
}

#[test]
fn the_wire_types_depend_on_no_netcdf_bus_or_cloud_sdk() {
    assert_free_of("roller-proto", NETCDF);
    assert_free_of("roller-proto", BUS_AND_CLOUD);
}

#[test]
fn the_demo_links_no_bus_cloud_sdk_or_http_server() {
    assert_free_of("roller-demo", BUS_AND_CLOUD);
    assert_free_of("roller-demo", HTTP_SERVER);
}

#[test]
fn the_check_finds_a_dependency_that_is_there() {
    let found = std::panic::catch_unwind(|| assert_free_of("roller-nats", &["async-nats"]));
    let message = found
        .expect_err("roller-nats depends on async-nats")
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("roller-nats -> async-nats"),
        "the failure names the chain: {message}"
    );
}

#[test]
fn the_synthetic_file_generator_stays_out_of_the_stages() {
    for package in
        BOXES_AND_LAYERS
            .iter()
            .chain(&["roller-s3", "roller-sqs", "roller-nats", "roller-serve"])
    {
        assert_free_of(package, &["roller-synth"]);
    }
}
