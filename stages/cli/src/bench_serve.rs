//! `roller bench-serve`: chunk throughput through `roller-serve`, on the newest view's URL and
//! on the snapshot URL of the same generation, against reading the same chunks straight from
//! disk with zarrs, alternating in the same run.
//!
//! The dataset is the benchmark's full-size UKV files ingested with chunks of about 1 MB
//! (encoded). The server runs in this process on loopback; the load tool is a plain HTTP/1.1
//! client here too, one keep-alive connection per thread, each thread asking for its share of
//! every stored chunk of the window in turn. The direct route has the same number of threads
//! reading the same chunks with zarrs' `retrieve_encoded_chunk` over the dataset's logical view
//! on the local store. Neither route decodes: both move the stored bytes to the caller.
//!
//! Each repeat times both routes twice: warm (the chunks in the page cache, several passes) and
//! cold (the page cache dropped before the run, one pass, so the chunks come off the disk;
//! needs root to write `/proc/sys/vm/drop_caches`, and is skipped otherwise).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use roller_embedded::RunOptions;
use roller_model::metadata::Role;
use roller_model::rolling_store::{Resolved, RollingStore};
use roller_serve::catalog::Catalog;
use roller_serve::server::{serve, Served};
use roller_storage::{LocalStore, Storage};
use zarrs::array::Array;

/// Arguments of `roller bench-serve`.
#[derive(clap::Args)]
pub(crate) struct BenchServeArgs {
    #[command(flatten)]
    files: crate::bench::BenchFiles,
    /// Client connections (and direct reader threads).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Passes over every chunk in one timed run.
    #[arg(long, default_value_t = 3)]
    passes: usize,
}

/// Rows per chunk: with the full 1042-column width, about 1 MB per chunk once encoded (3
/// chunks per field).
const CHUNK_ROWS: u64 = 324;

/// Idle time before each timed run (see `bench-nats`).
const SETTLE: Duration = Duration::from_secs(1);

/// One stored chunk: its logical key and its chunk indices.
struct Chunk {
    key: String,
    indices: Vec<u64>,
}

/// A reader of chunks for one thread: returns the bytes it got for a chunk.
type Reader = Box<dyn FnMut(&Chunk) -> Result<u64>>;

/// Bytes and requests moved by one timed run, and how long it took.
struct Moved {
    seconds: f64,
    bytes: u64,
    requests: u64,
}

/// Runs `work` on `threads` threads, each with its own share of `chunks` (every
/// `threads`-th), `passes` times over; sums what they report.
fn timed(
    chunks: &Arc<Vec<Chunk>>,
    threads: usize,
    passes: usize,
    work: impl Fn(usize) -> Result<Reader> + Sync,
) -> Result<Moved> {
    std::thread::sleep(SETTLE);
    let started = Instant::now();
    let results: Vec<Result<(u64, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (chunks, work) = (chunks.clone(), &work);
                scope.spawn(move || -> Result<(u64, u64)> {
                    let mut read = work(t)?;
                    let (mut bytes, mut requests) = (0, 0);
                    for _ in 0..passes {
                        for chunk in chunks.iter().skip(t).step_by(threads) {
                            bytes += read(chunk)?;
                            requests += 1;
                        }
                    }
                    Ok((bytes, requests))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a reader panicked")))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let (mut bytes, mut requests) = (0, 0);
    for result in results {
        let (b, r) = result?;
        bytes += b;
        requests += r;
    }
    Ok(Moved {
        seconds,
        bytes,
        requests,
    })
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(port: u16) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::with_capacity(256 * 1024, stream.try_clone()?),
            writer: stream,
        })
    }

    /// GETs `path`; returns the body's length (the body is read and dropped).
    fn get(&mut self, path: &str, body: &mut Vec<u8>) -> Result<u64> {
        write!(
            self.writer,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            bail!("{path}: {}", line.trim());
        }
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>()?);
                }
            }
        }
        let length = length.context("no Content-Length")?;
        body.resize(length, 0);
        self.reader.read_exact(body)?;
        Ok(length as u64)
    }
}

pub(crate) fn run(args: &BenchServeArgs) -> Result<()> {
    let crate::bench::Prepared {
        dir, synth, lines, ..
    } = args.files.prepare()?;
    let config = synth.dataset_config(
        "ukv-serve",
        u32::try_from(args.files.runs)?,
        (CHUNK_ROWS, 1042),
        &dir.join("ukv-serve-store"),
    );
    let _ = std::fs::remove_dir_all(&config.store.path);
    let store: Arc<dyn Storage> = Arc::new(LocalStore::new(&config.store.path, false)?);
    let summary = roller_embedded::run(
        &config,
        store.clone(),
        lines.iter().cloned().map(Ok),
        &RunOptions::default(),
    )?;
    if !summary.dead_letters.is_empty() {
        bail!("the ingest dead-lettered files: {:?}", summary.dead_letters);
    }

    // Every stored data chunk of the window.
    let view = Arc::new(RollingStore::open(store.clone())?);
    let data = view
        .arrays()
        .into_iter()
        .find(|s| s.role == Role::Data)
        .context("no data array")?;
    let format = view.record().layout.format;
    let mut chunks = Vec::new();
    let mut stored_bytes = 0;
    for (key, resolved) in view.keys()? {
        let Resolved::Stored(physical) = resolved else {
            continue;
        };
        let Some(indices) = key
            .strip_prefix(&format!("{}/", data.name))
            .and_then(|chunk| data.parse_chunk_key(format, chunk))
        else {
            continue;
        };
        // A visible chunk may have no object (all fill): not a chunk either route can read.
        let Some(size) = store.size(&physical)? else {
            continue;
        };
        stored_bytes += size;
        chunks.push(Chunk { key, indices });
    }
    if chunks.is_empty() {
        bail!("the dataset has no stored chunks");
    }
    let chunks = Arc::new(chunks);
    let mean_chunk = stored_bytes as f64 / chunks.len() as f64;

    // The server, in this process.
    let runtime = tokio::runtime::Runtime::new()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    let served = Arc::new(Served::new(
        Catalog::with_stores(vec![(config.clone(), store)], Duration::from_secs(1))?,
        Duration::from_secs(2),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, served, async {
        let _ = stopped.await;
    }));

    let name = config.name.clone();
    let generation = view.generation();
    let http = |prefix: String| {
        move |_: usize| -> Result<Reader> {
            let mut connection = Connection::open(port)?;
            let mut body = Vec::new();
            let prefix = prefix.clone();
            Ok(Box::new(move |chunk: &Chunk| {
                connection.get(&format!("{prefix}{}", chunk.key), &mut body)
            }))
        }
    };
    let newest = http(format!("/{name}/"));
    let snapshot = http(format!("/{name}@{generation}/"));
    let direct = |_: usize| -> Result<Reader> {
        let array = Array::open(view.clone(), &format!("/{}", data.name))?;
        Ok(Box::new(move |chunk: &Chunk| {
            let bytes = array
                .retrieve_encoded_chunk(&chunk.indices)?
                .with_context(|| format!("chunk {} is missing", chunk.key))?;
            Ok(bytes.len() as u64)
        }))
    };

    let cold = drop_caches().is_ok();
    if !cold {
        eprintln!("cannot drop the page cache (not root?): timing warm reads only");
    }
    // Rows: ROUTES, warm then cold.
    let mut results: Vec<Vec<Moved>> = ROUTES.iter().map(|_| Vec::new()).collect();
    for repeat in 0..args.files.repeats {
        let mut line = format!("repeat {}:", repeat + 1);
        for (row, route) in ROUTES.iter().enumerate() {
            let is_cold = row >= COLD;
            if is_cold && !cold {
                continue;
            }
            let passes = if is_cold {
                drop_caches()?;
                1
            } else {
                if row == 0 {
                    // The previous repeat ended cold: bring the chunks back into the page
                    // cache (untimed) so the first warm route is not charged for it.
                    timed(&chunks, args.concurrency, 1, direct)?;
                }
                args.passes
            };
            let moved = match row % COLD {
                0 => timed(&chunks, args.concurrency, passes, &newest)?,
                1 => timed(&chunks, args.concurrency, passes, &snapshot)?,
                _ => timed(&chunks, args.concurrency, passes, direct)?,
            };
            line.push_str(&format!(
                " {route} {:.0} MB/s;",
                moved.bytes as f64 / 1e6 / moved.seconds
            ));
            results[row].push(moved);
        }
        eprintln!("{line}");
    }
    let _ = stop.send(());
    let _ = runtime.block_on(server);

    let mbps = |m: &Moved| m.bytes as f64 / 1e6 / m.seconds;
    let rps = |m: &Moved| m.requests as f64 / m.seconds;
    let median = |row: usize, f: &dyn Fn(&Moved) -> f64| {
        crate::bench::median(results[row].iter().map(f).collect())
    };
    println!(
        "## Chunk reads: roller-serve vs zarrs from disk ({} chunks of {:.2} MB on average, {} threads; warm: {} passes per run; medians of {})\n",
        chunks.len(),
        mean_chunk / 1e6,
        args.concurrency,
        args.passes,
        args.files.repeats
    );
    println!("| route | MB/s | chunks/s |");
    println!("|---|---|---|");
    for (row, route) in ROUTES.iter().enumerate() {
        if !results[row].is_empty() {
            println!(
                "| {route} | {:.0} | {:.0} |",
                median(row, &mbps),
                median(row, &rps)
            );
        }
    }
    for (base, label) in [(0, "warm"), (COLD, "cold")] {
        if results[base].is_empty() {
            continue;
        }
        for (top, bottom, what) in [
            (base, base + 2, "roller-serve / direct"),
            (base + 1, base, "snapshot URL / newest URL"),
        ] {
            let ratios: Vec<f64> = results[top]
                .iter()
                .zip(&results[bottom])
                .map(|(a, b)| mbps(a) / mbps(b))
                .collect();
            println!(
                "\n{label}: {what} MB/s {:.0}% (ratio of the medians); per repeat {} (median {:.0}%)",
                100.0 * median(top, &mbps) / median(bottom, &mbps),
                ratios
                    .iter()
                    .map(|r| format!("{:.0}%", 100.0 * r))
                    .collect::<Vec<_>>()
                    .join(", "),
                100.0 * crate::bench::median(ratios.clone()),
            );
        }
    }
    Ok(())
}

/// The timed routes, in the order they run in each repeat: three warm, then three cold.
const ROUTES: [&str; 6] = [
    "roller-serve newest URL (HTTP, loopback), page cache warm",
    "roller-serve snapshot URL (HTTP, loopback), page cache warm",
    "zarrs, straight from disk, page cache warm",
    "roller-serve newest URL (HTTP, loopback), page cache dropped",
    "roller-serve snapshot URL (HTTP, loopback), page cache dropped",
    "zarrs, straight from disk, page cache dropped",
];

/// The first cold row of [`ROUTES`].
const COLD: usize = 3;

/// Writes dirty pages out and drops the page cache, so the next reads come off the disk.
fn drop_caches() -> Result<()> {
    std::process::Command::new("sync").status()?;
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .context("dropping the page cache needs root (/proc/sys/vm/drop_caches)")?;
    Ok(())
}
