//! SQS for zarr-roller: the publisher's queue as the bridge box's [`Queue`], with the AWS SDK.
//!
//! Credentials come from the standard AWS chain (environment, profile, web identity, instance
//! metadata); the endpoint from `--endpoint-url`, `AWS_ENDPOINT_URL_SQS` or `AWS_ENDPOINT_URL`
//! (for SQS-compatible servers); the region from `--region`, the chain, or else `eu-west-2`
//! (where the Met Office's topics are). The SDK retries throttled and failed requests itself
//! (standard mode); what still fails is returned as a [`QueueError`] of the right kind, and
//! the bridge backs off.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use roller_bridge::{Queue, QueueError, QueueErrorKind, QueueMessage};

/// The region used when neither the settings nor the AWS chain name one.
pub const DEFAULT_REGION: &str = "eu-west-2";

/// Where the SQS service is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqsSettings {
    /// An SQS-compatible endpoint instead of AWS's (else the SDK's environment variables).
    pub endpoint_url: Option<String>,
    /// The region (else the AWS chain's, else [`DEFAULT_REGION`]).
    pub region: Option<String>,
}

/// An SQS client for `settings`, credentials from the standard AWS chain.
pub async fn client(settings: &SqsSettings) -> aws_sdk_sqs::Client {
    build(settings, None).await
}

/// An SQS client with fixed credentials instead of the AWS chain (tests, benchmarks).
pub async fn client_with_static_credentials(
    settings: &SqsSettings,
    access_key: &str,
    secret_key: &str,
) -> aws_sdk_sqs::Client {
    let credentials =
        aws_sdk_sqs::config::Credentials::new(access_key, secret_key, None, None, "zarr-roller");
    build(settings, Some(credentials)).await
}

async fn build(
    settings: &SqsSettings,
    credentials: Option<aws_sdk_sqs::config::Credentials>,
) -> aws_sdk_sqs::Client {
    // Long polls wait up to 20 s: an attempt may take that long, not much longer.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(40))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_sqs::config::Builder::from(&shared);
    if shared.region().is_none() {
        config = config.region(Region::new(DEFAULT_REGION));
    }
    aws_sdk_sqs::Client::from_conf(config.build())
}

/// One SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

/// The kind of a failed request: throttling, server failure or unreachable, or refused.
fn failure<E>(operation: &'static str, queue: &str, error: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = match &error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let throttled = matches!(
                service.err().code(),
                Some("ThrottlingException" | "RequestThrottled" | "Throttling")
            );
            if throttled || status == 429 {
                QueueErrorKind::Throttled
            } else if status >= 500 {
                QueueErrorKind::Unavailable
            } else {
                QueueErrorKind::Refused
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            QueueErrorKind::Unavailable
        }
        _ => QueueErrorKind::Refused,
    };
    QueueError {
        kind,
        operation,
        queue: queue.to_owned(),
        detail: DisplayErrorContext(&error).to_string(),
        source: Box::new(error),
    }
}

/// Whole seconds for an SQS duration field (which takes an `i32`).
fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

impl SqsQueue {
    /// The queue at `url`, through `client`.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// Creates (or finds) the queue `name` and returns it (tests, benchmarks, set-up).
    pub async fn create(client: aws_sdk_sqs::Client, name: &str) -> Result<Self, QueueError> {
        let made = client
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| failure("CreateQueue", name, e))?;
        let url = made.queue_url().unwrap_or_default().to_owned();
        Ok(Self::new(client, url))
    }

    /// Sends `bodies` in batches of ten (what a publisher's topic does; tests and benchmarks).
    pub async fn send_all(&self, bodies: &[String]) -> Result<(), QueueError> {
        for batch in bodies.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| QueueError {
                            kind: QueueErrorKind::Refused,
                            operation: "SendMessageBatch",
                            queue: self.url.clone(),
                            detail: e.to_string(),
                            source: Box::new(e),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| failure("SendMessageBatch", &self.url, e))?;
            if let Some(failed) = sent.failed().first() {
                return Err(QueueError {
                    kind: QueueErrorKind::Refused,
                    operation: "SendMessageBatch",
                    queue: self.url.clone(),
                    detail: format!(
                        "{} of {} messages refused: {failed:?}",
                        sent.failed().len(),
                        batch.len()
                    ),
                    source: format!("{failed:?}").into(),
                });
            }
        }
        Ok(())
    }

    /// How many messages the queue holds, visible and in flight (SQS's approximate counts).
    pub async fn depth(&self) -> Result<(u64, u64), QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName::{
            ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible,
        };
        let got = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(ApproximateNumberOfMessages)
            .attribute_names(ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| failure("GetQueueAttributes", &self.url, e))?;
        let count = |name| {
            got.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            count(ApproximateNumberOfMessages),
            count(ApproximateNumberOfMessagesNotVisible),
        ))
    }
}

impl Queue for SqsQueue {
    fn url(&self) -> &str {
        &self.url
    }

    async fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let got = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::from(max.clamp(1, 10)))
            .wait_time_seconds(seconds(wait).min(20))
            .visibility_timeout(seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| failure("ReceiveMessage", &self.url, e))?;
        Ok(got
            .messages()
            .iter()
            .filter_map(|m| {
                let attribute = |name| m.attributes().and_then(|a| a.get(&name));
                Some(QueueMessage {
                    id: m.message_id()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok()),
                    sent_at_ms: attribute(MessageSystemAttributeName::SentTimestamp)
                        .and_then(|v| v.parse().ok()),
                })
            })
            .collect())
    }

    async fn delete(&self, receipts: Vec<String>) -> Result<usize, QueueError> {
        let mut deleted = 0;
        for batch in receipts.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .filter_map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .ok()
                })
                .collect();
            let done = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| failure("DeleteMessageBatch", &self.url, e))?;
            for failed in done.failed() {
                tracing::warn!(
                    queue = %self.url,
                    code = failed.code(),
                    reason = failed.message().unwrap_or_default(),
                    "the queue did not delete a stored message; it will come back and be deduplicated"
                );
            }
            deleted += done.successful().len();
        }
        Ok(deleted)
    }

    async fn extend(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(visibility))
            .send()
            .await
            .map_err(|e| failure("ChangeMessageVisibility", &self.url, e))?;
        Ok(())
    }
}
