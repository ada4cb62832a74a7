//! Storage keys: validated relative paths that can never escape a store's root.

use std::fmt;

/// Longest key accepted, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 1024;

/// A validated object key: `/`-separated segments, none empty, `.` or `..`, no backslash or
/// control characters, no leading slash. Keys come from configuration, message fields and HTTP
/// paths, so this is the single place where path traversal is stopped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid storage key `{key}`: {reason}")]
pub struct KeyError {
    /// The refused key (truncated when very long).
    pub key: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Key {
    /// Validates and wraps a key.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        let refuse = |reason| {
            Err(KeyError {
                key: key.chars().take(200).collect(),
                reason,
            })
        };
        if key.is_empty() {
            return refuse("it is empty");
        }
        if key.len() > MAX_KEY_LEN {
            return refuse("it is longer than 1024 bytes");
        }
        if key.starts_with('/') {
            return refuse("it is absolute (starts with `/`)");
        }
        if key.chars().any(|c| c == '\\' || c.is_control()) {
            return refuse("it contains a backslash or a control character");
        }
        for segment in key.split('/') {
            match segment {
                "" => return refuse("it has an empty path segment"),
                "." | ".." => return refuse("it has a `.` or `..` path segment"),
                _ => {}
            }
        }
        Ok(Self(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        assert!(Key::new("roller.json").is_ok());
        assert!(Key::new("chunks/air_temperature/c/3/0/0/0").is_ok());
        assert!(Key::new("chunks/air_temperature/3.0.0.0").is_ok());
    }

    #[test]
    fn refuses_traversal_and_oddities() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a//b",
            "a/./b",
            "a\\b",
            "a/\0",
            "a/",
        ] {
            assert!(Key::new(bad).is_err(), "{bad:?} should be refused");
        }
    }

    proptest::proptest! {
        /// No accepted key can name a parent directory or an absolute path.
        #[test]
        fn accepted_keys_stay_inside(s in "[a-z./\\\\]{0,12}") {
            if let Ok(key) = Key::new(s) {
                let p = std::path::Path::new(key.as_str());
                proptest::prop_assert!(p.is_relative());
                proptest::prop_assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))));
            }
        }
    }
}
