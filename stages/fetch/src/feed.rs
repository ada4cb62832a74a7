//! The front of the fetch box: one message from the feed, in any form the publisher sends,
//! becomes the files this dataset takes. Events that announce no file and notices for other
//! datasets are counted and dropped here, the same in every mode (a feed carries parameters
//! nobody configured); only a message that does not parse is an error (a dead letter).

use roller_bus::metrics::{Counter, Metrics};
use roller_model::config::MatchConfig;
use roller_model::matching::matches;
use roller_proto::feed::{self, Notice};
use roller_proto::{Notification, NotificationError};

/// What one feed message holds for a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sorted {
    /// The notifications the dataset takes, in order.
    pub files: Vec<Notification>,
    /// Notices for files the dataset does not take (dropped).
    pub unmatched: usize,
    /// Events that announce no file (dropped).
    pub skipped: usize,
}

/// Sorts the notices in `message` by whether `rule` takes them; counts every notice read, and
/// the skipped events and unmatched notices it drops, in `metrics`.
pub fn files_for(
    message: &str,
    rule: &MatchConfig,
    metrics: &Metrics,
) -> Result<Sorted, NotificationError> {
    let notices = feed::parse(message)?;
    let mut sorted = Sorted {
        files: Vec::with_capacity(notices.len()),
        ..Sorted::default()
    };
    for notice in notices {
        metrics.incr(Counter::Notices);
        match notice {
            Notice::File(note) if matches(rule, &note) => sorted.files.push(*note),
            Notice::File(note) => {
                sorted.unmatched += 1;
                metrics.incr(Counter::Unmatched);
                tracing::debug!(
                    source = %note.id(),
                    model = %note.model,
                    name = %note.name,
                    "notice matches no dataset here (match.model = `{}`, match.name = `{}`); dropped",
                    rule.model,
                    rule.name
                );
            }
            Notice::Skipped { event } => {
                sorted.skipped += 1;
                metrics.incr(Counter::Skipped);
                tracing::info!(event, "feed event announces no file; skipped");
            }
        }
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> MatchConfig {
        toml::from_str("model = \"uk-deterministic-2km\"\nname = \"temperature_at_screen_level\"")
            .expect("rule")
    }

    fn event(key: &str, name: &str) -> String {
        format!(
            r#"{{"Records":[{{"eventName":"{name}","s3":{{"bucket":{{"name":"met-office-atmospheric-model-data"}},"object":{{"key":"{key}","size":10}}}}}}]}}"#
        )
    }

    #[test]
    fn takes_matching_files_and_counts_what_it_drops() {
        let metrics = Metrics::default();
        let mine = "uk-deterministic-2km/20250101T0000Z/20250101T0100Z-PT0001H00M-temperature_at_screen_level.nc";
        let other =
            "uk-deterministic-2km/20250101T0000Z/20250101T0100Z-PT0001H00M-rainfall_rate.nc";
        let sorted =
            files_for(&event(mine, "ObjectCreated:Put"), &rule(), &metrics).expect("parses");
        assert_eq!(sorted.files.len(), 1);
        assert_eq!(sorted.files[0].name, "temperature_at_screen_level");
        let sorted =
            files_for(&event(other, "ObjectCreated:Put"), &rule(), &metrics).expect("parses");
        assert_eq!(
            (sorted.files.len(), sorted.unmatched, sorted.skipped),
            (0, 1, 0)
        );
        let sorted =
            files_for(&event(mine, "ObjectRemoved:Delete"), &rule(), &metrics).expect("parses");
        assert_eq!(
            (sorted.files.len(), sorted.unmatched, sorted.skipped),
            (0, 0, 1)
        );
        assert_eq!(metrics.get(Counter::Notices), 3);
        assert_eq!(metrics.get(Counter::Unmatched), 1);
        assert_eq!(metrics.get(Counter::Skipped), 1);
        assert!(files_for("not JSON", &rule(), &metrics).is_err());
    }
}
