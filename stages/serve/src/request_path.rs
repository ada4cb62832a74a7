//! Which object a request path names. Paths are checked on their raw (undecoded) form against
//! a strict alphabet, so no encoding trick (`%2e%2e`, `%2f`, backslashes, NUL) can reach
//! anything but a configured dataset's logical keys: Zarr keys never need more.

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/`: the status page.
    Index,
    /// `/<dataset>/<key>`: a logical key of a dataset (`key` is empty for `/<dataset>/`).
    Object {
        /// The dataset name.
        dataset: &'a str,
        /// The Zarr key inside it.
        key: &'a str,
    },
}

/// Why a path was refused (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A character outside `A-Z a-z 0-9 . _ - /`.
    #[error("the path may only contain letters, digits, `.`, `_`, `-` and `/`")]
    Character,
    /// An empty, `.` or `..` segment.
    #[error("the path has an empty, `.` or `..` segment")]
    Segment,
    /// Longer than any key of ours.
    #[error("the path is longer than {MAX_PATH} bytes")]
    TooLong,
}

/// Longest path accepted.
pub const MAX_PATH: usize = 1024;

/// Parses the raw path of a request (without the query).
pub fn parse(raw: &str) -> Result<Target<'_>, PathError> {
    if raw.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
    {
        return Err(PathError::Character);
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathError::Segment);
    };
    if rest.is_empty() {
        return Ok(Target::Index);
    }
    let (dataset, key) = rest.split_once('/').unwrap_or((rest, ""));
    let bad = |s: &str| s.is_empty() || s == "." || s == "..";
    if bad(dataset) || (!key.is_empty() && key.split('/').any(bad)) {
        return Err(PathError::Segment);
    }
    Ok(Target::Object { dataset, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_datasets_and_keys() {
        assert_eq!(parse("/"), Ok(Target::Index));
        assert_eq!(
            parse("/ukv/zarr.json"),
            Ok(Target::Object {
                dataset: "ukv",
                key: "zarr.json"
            })
        );
        assert_eq!(
            parse("/ukv/air_temperature/c/0/1/0/0"),
            Ok(Target::Object {
                dataset: "ukv",
                key: "air_temperature/c/0/1/0/0"
            })
        );
        assert_eq!(
            parse("/mog/.zmetadata"),
            Ok(Target::Object {
                dataset: "mog",
                key: ".zmetadata"
            })
        );
        assert_eq!(
            parse("/ukv/"),
            Ok(Target::Object {
                dataset: "ukv",
                key: ""
            })
        );
    }

    #[test]
    fn refuses_traversal_and_encodings() {
        for raw in [
            "/ukv/../etc/passwd",
            "/../ukv/zarr.json",
            "/ukv/./zarr.json",
            "/ukv//zarr.json",
            "//etc/passwd",
            "ukv/zarr.json",
        ] {
            assert_eq!(parse(raw), Err(PathError::Segment), "{raw}");
        }
        for raw in [
            "/ukv/%2e%2e/%2e%2e/etc/passwd",
            "/ukv/..%2fsecret",
            "/ukv/a%00b",
            "/ukv\\..\\secret",
            "/ukv/zarr.json?x",
            "/ukv/ü",
        ] {
            assert_eq!(parse(raw), Err(PathError::Character), "{raw}");
        }
        assert_eq!(
            parse(&format!("/{}", "a".repeat(2000))),
            Err(PathError::TooLong)
        );
    }
}
