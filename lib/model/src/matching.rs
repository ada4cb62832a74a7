//! Which notifications belong to a dataset.

use roller_proto::Notification;

use crate::config::{Levels, MatchConfig};

/// Whether `notification` is for the dataset configured by `rule`.
pub fn matches(rule: &MatchConfig, notification: &Notification) -> bool {
    if notification.model != rule.model || notification.name != rule.name {
        return false;
    }
    if let Some(cell_methods) = &rule.cell_methods {
        if notification.cell_methods.as_deref() != Some(cell_methods.as_str()) {
            return false;
        }
    }
    match rule.levels {
        Levels::Any => true,
        Levels::Single => !notification.is_multi_level(),
        Levels::Multi => notification.is_multi_level(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(extra: &str) -> Notification {
        Notification::from_json(&format!(
            r#"{{"model":"ukv","name":"air_temperature","key":"k","forecast_reference_time":"2024-01-01T00:00:00Z"{extra}}}"#
        ))
        .expect("valid")
    }

    #[test]
    fn matches_model_name_cell_methods_and_levels() {
        let mut rule = MatchConfig {
            model: "ukv".into(),
            name: "air_temperature".into(),
            cell_methods: None,
            levels: Levels::Any,
        };
        assert!(matches(&rule, &note("")));
        assert!(!matches(
            &MatchConfig {
                model: "other".into(),
                ..rule.clone()
            },
            &note("")
        ));
        rule.cell_methods = Some("time: mean".into());
        assert!(!matches(&rule, &note("")));
        assert!(matches(&rule, &note(r#","cell_methods":"time: mean""#)));
        rule.cell_methods = None;
        rule.levels = Levels::Multi;
        assert!(!matches(&rule, &note(r#","height":"1.5""#)));
        assert!(matches(&rule, &note(r#","height":"5.0 10.0""#)));
        rule.levels = Levels::Single;
        assert!(matches(&rule, &note(r#","height":"1.5""#)));
    }
}
