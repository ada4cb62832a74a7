//! The bucket lifecycle rule that deletes tagged chunks: installed by `roller setup`, checked
//! by `roller check`. A bucket has one lifecycle document; the rule is merged into it by id, so
//! other rules survive and installing twice changes nothing.

use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, Tag,
};
use roller_model::config::{DatasetConfig, ExpiryConfig, ExpiryPolicy};

use crate::client::{Failure, S3Client};

/// Why the lifecycle rule could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// S3 refused or failed.
    #[error("{operation} on bucket `{bucket}` failed: {reason}")]
    S3 {
        /// The request.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// What S3 said.
        reason: String,
    },
}

/// What `roller check` found about the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleState {
    /// An enabled rule expires objects with the tag after this many days.
    Present {
        /// Its expiration age.
        days: u32,
    },
    /// No enabled rule expires objects with the tag.
    Missing,
}

/// The id of the rule for a tag (shared by every dataset using the same tag in a bucket).
pub fn rule_id(expiry: &ExpiryConfig) -> String {
    format!("zarr-roller-{}-{}", expiry.tag_key, expiry.tag_value)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(255)
        .collect()
}

fn s3_error(operation: &'static str, bucket: &str, reason: String) -> LifecycleError {
    LifecycleError::S3 {
        operation,
        bucket: bucket.to_owned(),
        reason,
    }
}

/// The bucket's current rules (none if it has no lifecycle document).
fn rules(client: &S3Client, bucket: &str) -> Result<Vec<LifecycleRule>, LifecycleError> {
    let request = client
        .sdk()
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send();
    match client
        .run(request)
        .map_err(|e| s3_error("GetBucketLifecycleConfiguration", bucket, e.to_string()))?
    {
        Ok(out) => Ok(out.rules().to_vec()),
        Err(e) => {
            let failure = Failure::of(&e);
            if failure.status == Some(404) {
                Ok(Vec::new())
            } else {
                Err(s3_error(
                    "GetBucketLifecycleConfiguration",
                    bucket,
                    failure.message,
                ))
            }
        }
    }
}

fn tag_of(rule: &LifecycleRule) -> Option<(&str, &str)> {
    let filter = rule.filter()?;
    filter
        .tag()
        .or_else(|| filter.and().and_then(|a| a.tags().first()))
        .map(|t| (t.key(), t.value()))
}

/// Reads whether the bucket has an enabled rule expiring objects tagged as `expiry` says; with
/// several such rules, the one that deletes soonest is what counts.
pub fn check(
    client: &S3Client,
    bucket: &str,
    expiry: &ExpiryConfig,
) -> Result<RuleState, LifecycleError> {
    let found = rules(client, bucket)?.into_iter().filter_map(|rule| {
        let enabled = rule.status() == &ExpirationStatus::Enabled;
        let tagged = tag_of(&rule) == Some((expiry.tag_key.as_str(), expiry.tag_value.as_str()));
        let days = rule.expiration().and_then(LifecycleExpiration::days);
        (enabled && tagged)
            .then_some(days)
            .flatten()
            .and_then(|d| u32::try_from(d).ok())
    });
    Ok(found
        .min()
        .map_or(RuleState::Missing, |days| RuleState::Present { days }))
}

/// Installs (or updates) the rule that deletes objects tagged as `expiry` says after
/// `expiry.lifecycle_days` days, keeping the bucket's other rules.
pub fn install(
    client: &S3Client,
    bucket: &str,
    expiry: &ExpiryConfig,
) -> Result<(), LifecycleError> {
    let id = rule_id(expiry);
    let build = |what: &str, e: &dyn std::fmt::Display| {
        s3_error(
            "PutBucketLifecycleConfiguration",
            bucket,
            format!("building the {what}: {e}"),
        )
    };
    let tag = Tag::builder()
        .key(&expiry.tag_key)
        .value(&expiry.tag_value)
        .build()
        .map_err(|e| build("tag", &e))?;
    let ours = LifecycleRule::builder()
        .id(&id)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().tag(tag).build())
        .expiration(
            LifecycleExpiration::builder()
                .days(i32::try_from(expiry.lifecycle_days).unwrap_or(i32::MAX))
                .build(),
        )
        .build()
        .map_err(|e| build("rule", &e))?;
    let mut all: Vec<LifecycleRule> = rules(client, bucket)?
        .into_iter()
        .filter(|r| r.id() != Some(id.as_str()))
        .collect();
    all.push(ours);
    let document = BucketLifecycleConfiguration::builder()
        .set_rules(Some(all))
        .build()
        .map_err(|e| build("lifecycle document", &e))?;
    let request = client
        .sdk()
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(document)
        .send();
    client
        .run(request)
        .map_err(|e| s3_error("PutBucketLifecycleConfiguration", bucket, e.to_string()))?
        .map(|_| ())
        .map_err(|e| {
            s3_error(
                "PutBucketLifecycleConfiguration",
                bucket,
                Failure::of(&e).message,
            )
        })
}

/// With the `at_write` policy a chunk expires by age alone, so the rule's age must cover the
/// whole window, the grace readers of older snapshots are promised (`expiry.grace`), and a day
/// of margin for late data. (With `on_roll_off` chunks are tagged only once their grace has
/// passed, so any rule honours it.) Returns the problem, if any.
pub fn too_short(config: &DatasetConfig, days: u32) -> Option<String> {
    if config.expiry.policy != ExpiryPolicy::AtWrite {
        return None;
    }
    let window = i64::from(config.rolling.window) * config.rolling.step.0;
    let grace = config.expiry.grace.0.max(0);
    let needed = window + grace + 86_400;
    let have = i64::from(days) * 86_400;
    (have < needed).then(|| {
        format!(
            "the lifecycle rule deletes tagged chunks after {days} day(s), but with expiry.policy = \"at_write\" every chunk is tagged when written, so the rule must keep them for the window ({window} s), the grace ({grace} s, expiry.grace) and a day, or readers of a snapshot lose chunks before its grace is over: set expiry.lifecycle_days to at least {}",
            needed.div_euclid(86_400) + i64::from(needed.rem_euclid(86_400) != 0)
        )
    })
}
