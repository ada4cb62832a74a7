//! The HTTP side: `GET`/`HEAD /<dataset>/<key>` answers a key of the dataset's newest logical
//! view, `/<dataset>@<generation>/<key>` a key of one generation's snapshot (410 Gone once its
//! grace has passed), `/<dataset>/@latest` the newest snapshot's URL, and `/` is the status
//! page. Every storage read runs on the blocking pool (S3 reads block).
//!
//! Caching: a logical chunk URL can map to another physical chunk after the window moves, so
//! no logical response is immutable. Stored chunks carry the physical key as their entity tag
//! and `no-cache`: a cache revalidates each use and gets `304 Not Modified`, with no body, as
//! long as the URL still maps to the same physical chunk. Metadata documents and derived
//! coordinate chunks change with commits; they may be cached for `metadata_max_age`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;

use crate::catalog::{Answer, Catalog, Kind, ReadError};
use crate::dead_letters::{DeadCount, DeadLetterCounts};
use crate::quicklook::QuickLooks;
use crate::quicklook::QUICKLOOK_DIR;
use crate::range::{self, Ranged};
use crate::request_path::{self, Target};
use crate::status::STATUS_DIR;

/// What the server needs.
#[derive(Debug)]
pub struct Served {
    /// The datasets.
    pub catalog: Catalog,
    /// How long clients may cache metadata documents.
    pub metadata_max_age: Duration,
    /// The status page's quick-look images.
    pub quicklooks: QuickLooks,
    /// Dead-letter counts for the status page (`None`: not configured).
    pub dead_letters: Option<Arc<dyn DeadLetterCounts>>,
    /// The server's URL as readers reach it (e.g. `https://data.example.org/zarr`), for
    /// snapshot URLs; `None`: `http://` and the request's `Host`.
    pub public_url: Option<String>,
}

impl Served {
    /// Serves `catalog` with no dead-letter counts.
    pub fn new(catalog: Catalog, metadata_max_age: Duration) -> Self {
        Self {
            catalog,
            metadata_max_age,
            quicklooks: QuickLooks::default(),
            dead_letters: None,
            public_url: None,
        }
    }

    /// The server's base URL for a request with these headers.
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

/// The server's routes over `served`.
pub fn router(served: Arc<Served>) -> Router {
    Router::new().fallback(handle).with_state(served)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    served: Arc<Served>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(served))
        .with_graceful_shutdown(shutdown)
        .await
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(
    State(served): State<Arc<Served>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: GET and HEAD only",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let target = match request_path::parse(uri.path()) {
        Ok(target) => target,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let (dataset, generation, key) = match target {
        Target::Index => return index_page(served).await,
        Target::Object {
            dataset: QUICKLOOK_DIR,
            generation: None,
            key,
        } => return quicklook(served, &method, key).await,
        Target::Object {
            dataset: STATUS_DIR,
            generation: None,
            key,
        } => return dataset_page(served, &headers, key.to_owned()).await,
        Target::Latest { dataset } => return latest(served, &headers, dataset.to_owned()).await,
        Target::Object {
            dataset,
            generation,
            key,
        } => (dataset.to_owned(), generation, key.to_owned()),
    };
    let read = {
        let served = served.clone();
        let url = format!("{}/{dataset}", served.base_url(&headers));
        tokio::task::spawn_blocking(move || served.catalog.read(&dataset, generation, &key, &url))
            .await
    };
    let answer = match read {
        Ok(Ok(answer)) => answer,
        Ok(Err(
            e @ (ReadError::NoSuchDataset(_)
            | ReadError::NotCommitted(_)
            | ReadError::NoGeneration(_)),
        )) => return plain(StatusCode::NOT_FOUND, &e.to_string()),
        Ok(Err(e @ ReadError::Expired(_))) => return plain(StatusCode::GONE, &e.to_string()),
        Ok(Err(ReadError::Missing)) => return plain(StatusCode::NOT_FOUND, "no such key"),
        Ok(Err(e @ ReadError::Unavailable(_))) => {
            tracing::warn!(path = uri.path(), error = %e, "read failed");
            let mut response = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage is unavailable; retry",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(_) => return plain(StatusCode::SERVICE_UNAVAILABLE, "the read failed; retry"),
    };
    respond(&served, &method, &headers, answer)
}

/// `/<dataset>/@latest`: the URL of the newest generation's snapshot, as text.
async fn latest(served: Arc<Served>, headers: &HeaderMap, dataset: String) -> Response {
    let base = served.base_url(headers);
    let newest = {
        let served = served.clone();
        let dataset = dataset.clone();
        tokio::task::spawn_blocking(move || served.catalog.newest_generation(&dataset)).await
    };
    match newest {
        Ok(Ok(generation)) => {
            let mut response = plain(StatusCode::OK, &format!("{base}/{dataset}@{generation}"));
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Ok(Err(e @ ReadError::Unavailable(_))) => {
            tracing::warn!(dataset, error = %e, "newest generation unreadable");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage is unavailable; retry",
            )
        }
        Ok(Err(e)) => plain(StatusCode::NOT_FOUND, &e.to_string()),
        Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "the read failed; retry"),
    }
}

/// Every dataset's dead-letter count (not counted without NATS).
async fn dead_letter_counts(served: &Served) -> HashMap<String, DeadCount> {
    let counts = match &served.dead_letters {
        Some(counter) => Some(counter.counts().await),
        None => None,
    };
    served
        .catalog
        .names()
        .into_iter()
        .map(|name| {
            let count = match &counts {
                None => DeadCount::NotConfigured,
                Some(Ok(counts)) => DeadCount::Count(counts.get(&name).copied().unwrap_or(0)),
                Some(Err(reason)) => DeadCount::Unavailable(reason.to_string()),
            };
            (name, count)
        })
        .collect()
}

/// An HTML page, never cached.
fn html_page(page: Result<Option<String>, tokio::task::JoinError>) -> Response {
    match page {
        Ok(Some(html)) => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from(html))
            .unwrap_or_default(),
        Ok(None) => plain(StatusCode::NOT_FOUND, "no such dataset"),
        Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "the status page failed"),
    }
}

/// `/`: the index of every dataset.
async fn index_page(served: Arc<Served>) -> Response {
    let dead = dead_letter_counts(&served).await;
    let now = roller_proto::time::now();
    html_page(
        tokio::task::spawn_blocking(move || {
            Some(crate::status::index(&served.catalog, &dead, now))
        })
        .await,
    )
}

/// `/_status/<dataset>`: one dataset's page.
async fn dataset_page(served: Arc<Served>, headers: &HeaderMap, name: String) -> Response {
    let base = served.base_url(headers);
    let dead = dead_letter_counts(&served)
        .await
        .remove(&name)
        .unwrap_or(DeadCount::NotConfigured);
    html_page(
        tokio::task::spawn_blocking(move || {
            crate::status::dataset_page(&served.catalog, &served.quicklooks, &name, dead, &base)
        })
        .await,
    )
}

/// `/_quicklook/<dataset>.png`.
async fn quicklook(served: Arc<Served>, method: &Method, key: &str) -> Response {
    let Some(dataset) = key.strip_suffix(".png").map(str::to_owned) else {
        return plain(StatusCode::NOT_FOUND, "no such image");
    };
    let rendered = tokio::task::spawn_blocking(move || {
        let view = served.catalog.view(&dataset)?;
        served
            .quicklooks
            .get(&dataset, &view)
            .map_err(|e| ReadError::Unavailable(e.to_string()))
    })
    .await;
    let look = match rendered {
        Ok(Ok(Some(look))) => look,
        Ok(Ok(None)) => return plain(StatusCode::NOT_FOUND, "no field visible yet"),
        Ok(Err(e @ ReadError::Unavailable(_))) => {
            tracing::warn!(error = %e, "quick-look failed");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the quick-look failed; retry",
            );
        }
        Ok(Err(e)) => return plain(StatusCode::NOT_FOUND, &e.to_string()),
        Err(_) => return plain(StatusCode::SERVICE_UNAVAILABLE, "the quick-look failed"),
    };
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(look.png.clone())
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "image/png")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_LENGTH, look.png.len())
        .body(body)
        .unwrap_or_default()
}

/// The response for an object: conditional (`If-None-Match`), ranged (`Range`), or whole.
fn respond(served: &Served, method: &Method, headers: &HeaderMap, answer: Answer) -> Response {
    let etag = format!("\"{}\"", answer.etag);
    let cache = match answer.kind {
        Kind::Stored => "public, no-cache".to_owned(),
        Kind::Metadata | Kind::Derived => {
            format!("public, max-age={}", served.metadata_max_age.as_secs())
        }
    };
    let content_type = if answer.kind == Kind::Metadata {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, cache)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header(header::CONTENT_TYPE, content_type);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default();
    }
    let len = answer.bytes.len() as u64;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, body) = match range::parse(range_header, len) {
        Ranged::Whole => (StatusCode::OK, answer.bytes),
        Ranged::Part(part) => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{len}", part.start, part.end - 1),
            );
            let (start, end) = (
                usize::try_from(part.start).unwrap_or(usize::MAX),
                usize::try_from(part.end).unwrap_or(usize::MAX),
            );
            (StatusCode::PARTIAL_CONTENT, answer.bytes.slice(start..end))
        }
        Ranged::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .unwrap_or_default();
        }
    };
    builder = builder
        .status(status)
        .header(header::CONTENT_LENGTH, body.len());
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    builder.body(body).unwrap_or_default()
}
