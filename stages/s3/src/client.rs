//! One S3 client per process: the AWS SDK client (connection pool, credentials from the
//! standard chain, retries with backoff), a limit on requests in flight, and a small runtime of
//! its own so the synchronous [`Storage`](roller_storage::Storage) calls of the stages can
//! wait on it from any thread, inside or outside another runtime.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::create_bucket::CreateBucketError;
use roller_model::config::S3Config;
use tokio::sync::Semaphore;

/// Why an S3 client could not be made or a request could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client's runtime could not start.
    #[error("cannot start the S3 client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The client's runtime went away while a request was waiting (the process is exiting).
    #[error("the S3 client is shutting down")]
    ShuttingDown,
}

/// A shared S3 client; cheap to clone.
#[derive(Clone)]
pub struct S3Client {
    inner: Arc<Inner>,
}

struct Inner {
    sdk: aws_sdk_s3::Client,
    limit: Arc<Semaphore>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime from inside another one panics; this never blocks.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client").finish_non_exhaustive()
    }
}

impl S3Client {
    /// A client for `config`: endpoint, region and addressing from the config, credentials from
    /// the standard AWS chain (environment, profile, web identity, instance metadata).
    pub fn new(config: &S3Config) -> Result<Self, ClientError> {
        Self::build(config, None)
    }

    /// A client with fixed credentials instead of the AWS chain (tests, embedding).
    pub fn with_static_credentials(
        config: &S3Config,
        access_key: &str,
        secret_key: &str,
    ) -> Result<Self, ClientError> {
        let credentials =
            aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "zarr-roller");
        Self::build(config, Some(credentials))
    }

    fn build(
        config: &S3Config,
        credentials: Option<aws_sdk_s3::config::Credentials>,
    ) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("roller-s3")
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        let settings = config.clone();
        // Loading the AWS configuration is async; wait for it on a thread of our own, since the
        // caller may itself be inside a runtime (where `block_on` is not allowed).
        let load = async move {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(settings.max_attempts)
                        .with_initial_backoff(Duration::from_millis(200))
                        .with_max_backoff(Duration::from_secs(5)),
                )
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_attempt_timeout(Duration::from_secs(60))
                        .build(),
                );
            if let Some(endpoint) = &settings.endpoint_url {
                loader = loader.endpoint_url(endpoint);
            }
            if let Some(region) = &settings.region {
                loader = loader.region(Region::new(region.clone()));
            }
            if let Some(credentials) = credentials {
                loader = loader.credentials_provider(credentials);
            }
            let shared = loader.load().await;
            let mut builder = aws_sdk_s3::config::Builder::from(&shared);
            if shared.region().is_none() {
                builder = builder.region(Region::new("us-east-1"));
            }
            aws_sdk_s3::Client::from_conf(
                builder.force_path_style(settings.force_path_style).build(),
            )
        };
        let sdk = std::thread::scope(|scope| {
            scope.spawn(|| runtime.block_on(load)).join().map_err(|_| {
                ClientError::Runtime(std::io::Error::other(
                    "loading the AWS configuration panicked",
                ))
            })
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                sdk,
                limit: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
                runtime: Some(runtime),
            }),
        })
    }

    /// The SDK client, for building requests.
    pub fn sdk(&self) -> &aws_sdk_s3::Client {
        &self.inner.sdk
    }

    /// Runs `request` on the client's runtime within the concurrency limit and waits for it.
    /// Safe to call from any thread, including a thread of another tokio runtime (it blocks
    /// that thread, so async callers should call it from `spawn_blocking`).
    pub fn run<T, F>(&self, request: F) -> Result<T, ClientError>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let runtime = self
            .inner
            .runtime
            .as_ref()
            .ok_or(ClientError::ShuttingDown)?;
        let limit = self.inner.limit.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let _ = tx.send(request.await);
        });
        rx.recv().map_err(|_| ClientError::ShuttingDown)
    }
}

/// Why a bucket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The request could not be sent (the client is shutting down).
    #[error("creating bucket `{bucket}`: {source}")]
    Client {
        /// The bucket.
        bucket: String,
        /// What stopped the client.
        #[source]
        source: ClientError,
    },
    /// S3 refused or failed the request.
    #[error("creating bucket `{bucket}`: {}", DisplayErrorContext(.source.as_ref()))]
    Refused {
        /// The bucket.
        bucket: String,
        /// The SDK's error, with the service's code and message (boxed: it is large).
        #[source]
        source: Box<SdkError<CreateBucketError, aws_sdk_s3::config::http::HttpResponse>>,
    },
}

impl S3Client {
    /// Creates `bucket` if it does not exist yet.
    pub fn create_bucket(&self, bucket: &str) -> Result<(), BucketError> {
        let request = self.sdk().create_bucket().bucket(bucket).send();
        let answer = self.run(request).map_err(|source| BucketError::Client {
            bucket: bucket.to_owned(),
            source,
        })?;
        match answer {
            Ok(_) => Ok(()),
            Err(e) => match Failure::of(&e).code.as_deref() {
                Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists") => Ok(()),
                _ => Err(BucketError::Refused {
                    bucket: bucket.to_owned(),
                    source: Box::new(e),
                }),
            },
        }
    }
}

/// What an SDK error means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status, when the service answered.
    pub status: Option<u16>,
    /// The service's error code (`NoSuchKey`, `AccessDenied`...), when it sent one.
    pub code: Option<String>,
    /// The whole error chain, for messages.
    pub message: String,
}

impl Failure {
    /// Reads an SDK error.
    pub fn of<E, R>(error: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + HasStatus,
    {
        let status = error.raw_response().map(HasStatus::status);
        let code = error
            .as_service_error()
            .and_then(|e| e.code())
            .map(str::to_owned);
        Self {
            status,
            code,
            message: DisplayErrorContext(error).to_string(),
        }
    }

    /// Not found (404, `NoSuchKey`, `NotFound`).
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404) || matches!(self.code.as_deref(), Some("NoSuchKey" | "NotFound"))
    }
}

/// The HTTP status of a raw response.
pub trait HasStatus {
    /// The status code.
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}
