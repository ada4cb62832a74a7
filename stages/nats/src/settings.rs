//! How a stage reaches NATS, from the environment (the dataset itself comes from its TOML).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `NATS_URL` | `nats://127.0.0.1:4222` | server(s), comma-separated |
//! | `NATS_CREDS` | none | a `.creds` file (JWT + NKey) |
//! | `ROLLER_STREAM_PREFIX` | `roller` | prefix of subjects, streams, consumers and buckets |
//! | `ROLLER_WORKERS` | per stage | messages a process handles at once |
//! | `ROLLER_MAX_DELIVER` | `5` | deliveries before a message is dead-lettered |
//! | `ROLLER_ACK_WAIT` | `30s` | redelivery timeout (kept alive while working) |
//! | `ROLLER_DEDUP_WINDOW` | `2m` | how long a `Nats-Msg-Id` is remembered |
//! | `ROLLER_SHUTDOWN_GRACE` | `20s` | time to finish in-flight work on SIGTERM |
//! | `ROLLER_LEASE_TTL` | `15s` | commit lease lifetime without renewal |

use std::path::PathBuf;
use std::time::Duration;

use roller_model::duration::{DurationError, Seconds};
use roller_proto::Subjects;

/// A setting in the environment that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?}: {problem}")]
pub struct SettingsError {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong.
    #[source]
    pub problem: SettingProblem,
}

/// What is wrong with a setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingProblem {
    /// A duration that must be positive is zero or negative.
    #[error("must be positive")]
    NotPositive,
    /// A duration does not parse.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// A count is not a positive whole number.
    #[error("must be a positive whole number")]
    NotACount,
    /// The stream prefix is not a usable subject token.
    #[error(transparent)]
    Subject(#[from] roller_proto::subjects::SubjectError),
    /// Not an address and port.
    #[error("must be an address and port, e.g. 0.0.0.0:9090")]
    NotAnAddress,
    /// The credentials file does not exist.
    #[error("no such file")]
    NoSuchFile,
}

/// Connection and delivery settings shared by every stage.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// Server URL(s).
    pub url: String,
    /// Credentials file, if any.
    pub creds: Option<PathBuf>,
    /// Names derived from the stream prefix.
    pub subjects: Subjects,
    /// Messages one process handles at once (`None`: the stage's default).
    pub workers: Option<usize>,
    /// Deliveries before a message is dead-lettered.
    pub max_deliver: i64,
    /// Redelivery timeout.
    pub ack_wait: Duration,
    /// Publish deduplication window.
    pub dedup_window: Duration,
    /// Time to finish in-flight work on SIGTERM.
    pub shutdown_grace: Duration,
    /// Commit lease lifetime.
    pub lease_ttl: Duration,
    /// Where to serve `/healthz`, `/readyz` and `/metrics` (`None`: not served).
    pub health_listen: Option<std::net::SocketAddr>,
}

impl NatsSettings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the settings from a lookup function (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let duration = |name: &'static str, default: u64| -> Result<Duration, SettingsError> {
            match var(name) {
                None => Ok(Duration::from_secs(default)),
                Some(value) => match Seconds::parse(&value) {
                    Ok(Seconds(s)) if s > 0 => Ok(Duration::from_secs(s.unsigned_abs())),
                    Ok(_) => Err(SettingsError {
                        name,
                        value,
                        problem: SettingProblem::NotPositive,
                    }),
                    Err(e) => Err(SettingsError {
                        name,
                        value,
                        problem: e.into(),
                    }),
                },
            }
        };
        let number = |name: &'static str| -> Result<Option<i64>, SettingsError> {
            var(name)
                .map(|value| match value.trim().parse::<i64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(SettingsError {
                        name,
                        value,
                        problem: SettingProblem::NotACount,
                    }),
                })
                .transpose()
        };
        let prefix = var("ROLLER_STREAM_PREFIX").unwrap_or_else(|| "roller".into());
        let subjects = Subjects::new(&prefix).map_err(|e| SettingsError {
            name: "ROLLER_STREAM_PREFIX",
            value: prefix.clone(),
            problem: e.into(),
        })?;
        let settings = Self {
            url: var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            creds: var("NATS_CREDS").map(PathBuf::from),
            subjects,
            workers: number("ROLLER_WORKERS")?.map(|n| usize::try_from(n).unwrap_or(1)),
            max_deliver: number("ROLLER_MAX_DELIVER")?.unwrap_or(10),
            ack_wait: duration("ROLLER_ACK_WAIT", 30)?,
            dedup_window: duration("ROLLER_DEDUP_WINDOW", 120)?,
            shutdown_grace: duration("ROLLER_SHUTDOWN_GRACE", 20)?,
            lease_ttl: duration("ROLLER_LEASE_TTL", 15)?,
            health_listen: var("ROLLER_HEALTH_LISTEN")
                .map(|value| {
                    value.trim().parse().map_err(|_| SettingsError {
                        name: "ROLLER_HEALTH_LISTEN",
                        value: value.clone(),
                        problem: SettingProblem::NotAnAddress,
                    })
                })
                .transpose()?,
        };
        if let Some(creds) = &settings.creds {
            if !creds.is_file() {
                return Err(SettingsError {
                    name: "NATS_CREDS",
                    value: creds.display().to_string(),
                    problem: SettingProblem::NoSuchFile,
                });
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<NatsSettings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        NatsSettings::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let s = from(&[]).expect("defaults");
        assert_eq!(s.url, "nats://127.0.0.1:4222");
        assert_eq!(s.subjects.prefix(), "roller");
        assert_eq!(s.max_deliver, 10);
        assert_eq!(s.health_listen, None);
        assert_eq!(
            from(&[("ROLLER_HEALTH_LISTEN", "0.0.0.0:9090")])
                .expect("health")
                .health_listen,
            Some(([0, 0, 0, 0], 9090).into())
        );
        let s = from(&[
            ("ROLLER_ACK_WAIT", "2m"),
            ("ROLLER_STREAM_PREFIX", "test_1"),
        ])
        .expect("overrides");
        assert_eq!(s.ack_wait, Duration::from_secs(120));
        assert_eq!(
            s.subjects.stream(roller_proto::StreamKind::Work),
            "TEST_1_WORK"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("ROLLER_ACK_WAIT", "soon"),
            ("ROLLER_MAX_DELIVER", "0"),
            ("ROLLER_STREAM_PREFIX", "a.b"),
            ("NATS_CREDS", "/nonexistent.creds"),
            ("ROLLER_HEALTH_LISTEN", "port 9090"),
        ] {
            let err = from(&[(name, value)]).expect_err(name).to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
