//! The front of the fetch box: one message from the feed, in any form the publisher sends,
//! becomes the files this dataset takes ([`files_for`]), or, read once for many datasets, the
//! datasets it goes to ([`route`]). Events that announce no file and notices for no dataset
//! are counted and dropped here, the same in every mode (a feed carries parameters nobody
//! configured); only a message that does not parse is an error (a dead letter).

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

/// Where one feed message goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routed {
    /// Each dataset that takes a file of the message, with the first such file, in the order
    /// of the datasets given.
    pub to: Vec<(String, Notification)>,
    /// Notices for files no dataset takes (dropped, unless a template makes a dataset for
    /// them).
    pub unmatched: Vec<Notification>,
    /// Events that announce no file (dropped).
    pub skipped: usize,
    /// The message's [`feed::message_id`] (`None` when it announces no file).
    pub message_id: Option<String>,
}

/// Reads `message` once and finds the datasets of `rules` (name and `match`) that take a file
/// of it; counts the notices read and the skipped events in `metrics` (the caller counts the
/// unmatched notices it drops).
pub fn route(
    message: &str,
    rules: &[(String, MatchConfig)],
    metrics: &Metrics,
) -> Result<Routed, NotificationError> {
    let notices = feed::parse(message)?;
    let mut routed = Routed {
        message_id: feed::id_of(message, &notices),
        ..Routed::default()
    };
    for notice in notices {
        metrics.incr(Counter::Notices);
        match notice {
            Notice::File(note) => {
                let mut taken = false;
                for (dataset, _) in rules.iter().filter(|(_, rule)| matches(rule, &note)) {
                    taken = true;
                    if !routed.to.iter().any(|(d, _)| d == dataset) {
                        routed.to.push((dataset.clone(), (*note).clone()));
                    }
                }
                if !taken {
                    tracing::debug!(source = %note.id(), model = %note.model, name = %note.name, "notice matches no dataset");
                    routed.unmatched.push(*note);
                }
            }
            Notice::Skipped { event } => {
                routed.skipped += 1;
                metrics.incr(Counter::Skipped);
                tracing::info!(event, "feed event announces no file; skipped");
            }
        }
    }
    routed
        .to
        .sort_by_key(|(d, _)| rules.iter().position(|(name, _)| name == d));
    Ok(routed)
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

    #[test]
    fn a_message_is_routed_to_every_dataset_that_takes_a_file_of_it() {
        let metrics = Metrics::default();
        let other: MatchConfig =
            toml::from_str("model = \"uk-deterministic-2km\"\nname = \"rainfall_rate\"")
                .expect("rule");
        let rules = vec![
            ("rain".to_owned(), other),
            ("screen".to_owned(), rule()),
            ("screen-too".to_owned(), rule()),
        ];
        let key = "uk-deterministic-2km/20250101T0000Z/20250101T0100Z-PT0001H00M-temperature_at_screen_level.nc";
        let routed = route(&event(key, "ObjectCreated:Put"), &rules, &metrics).expect("parses");
        let to: Vec<&str> = routed.to.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(to, ["screen", "screen-too"]);
        assert_eq!(routed.to[0].1.name, "temperature_at_screen_level");
        let nobody = key.replace("temperature_at_screen_level", "snow_depth");
        let routed = route(&event(&nobody, "ObjectCreated:Put"), &rules, &metrics).expect("parses");
        assert_eq!(routed.to.len(), 0);
        assert_eq!(routed.unmatched[0].name, "snow_depth", "left to the caller");
        assert!(route("not json", &rules, &metrics).is_err());
    }

    #[test]
    fn a_routed_message_carries_the_id_replay_gives_it() {
        let metrics = Metrics::default();
        let rules = vec![("screen".to_owned(), rule())];
        let key = "uk-deterministic-2km/20250101T0000Z/20250101T0100Z-PT0001H00M-temperature_at_screen_level.nc";
        let with_etag = |etag: &str| {
            event(key, "ObjectCreated:Put")
                .replace(r#""size":10"#, &format!(r#""size":10,"eTag":"{etag}""#))
        };
        let first = with_etag("e1");
        let routed = route(&first, &rules, &metrics).expect("parses");
        let id = feed::message_id(&first).expect("parses");
        assert_eq!(routed.message_id, id);
        assert_eq!(
            routed.message_id.as_deref(),
            Some(format!("met-office-atmospheric-model-data/{key}@e1").as_str())
        );
        let replaced = route(&with_etag("e2"), &rules, &metrics).expect("parses");
        assert_ne!(
            replaced.message_id, routed.message_id,
            "new content, new id"
        );
        let removal = route(&event(key, "ObjectRemoved:Delete"), &rules, &metrics).expect("parses");
        assert_eq!(removal.message_id, None, "a removal announces no file");
    }
}
