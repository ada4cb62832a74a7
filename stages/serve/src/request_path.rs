//! Which object a request path names. Paths are checked on their raw (undecoded) form against
//! a strict alphabet, so no encoding trick (`%2e%2e`, `%2f`, backslashes, NUL) can reach
//! anything but a configured dataset's logical keys: Zarr keys never need more. `@` appears
//! only where it means something: `/<dataset>@<generation>/...` (a snapshot) and
//! `/<dataset>/@latest` (the newest snapshot's URL).

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/`: the status page.
    Index,
    /// `/<dataset>[@<generation>]/<key>`: a logical key of a dataset's newest view, or of one
    /// generation's snapshot (`key` is empty for `/<dataset>/`).
    Object {
        /// The dataset name.
        dataset: &'a str,
        /// The snapshot's generation; `None` for the newest view.
        generation: Option<u64>,
        /// The Zarr key inside it.
        key: &'a str,
    },
    /// `/<dataset>/@latest`: the URL of the newest generation's snapshot.
    Latest {
        /// The dataset name.
        dataset: &'a str,
    },
}

/// The last segment of a path that asks for the newest snapshot's URL.
pub const LATEST: &str = "@latest";

/// Why a path was refused (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A character outside `A-Z a-z 0-9 . _ - / @`.
    #[error("the path may only contain letters, digits, `.`, `_`, `-`, `/` and `@`")]
    Character,
    /// `@` anywhere but before a generation number or in `/<dataset>/@latest`.
    #[error("a snapshot is named `/<dataset>@<generation>/`, the generation a whole number without leading zeros (e.g. `/ukv@12/`), and `/<dataset>/@latest` gives the newest one's URL")]
    Generation,
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
        .all(|b| b.is_ascii_alphanumeric() || b"._-/@".contains(&b))
    {
        return Err(PathError::Character);
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathError::Segment);
    };
    if rest.is_empty() {
        return Ok(Target::Index);
    }
    let (first, key) = rest.split_once('/').unwrap_or((rest, ""));
    let bad = |s: &str| s.is_empty() || s == "." || s == "..";
    if bad(first) || (!key.is_empty() && key.split('/').any(bad)) {
        return Err(PathError::Segment);
    }
    let (dataset, generation) = match first.split_once('@') {
        None => (first, None),
        Some((dataset, digits)) => (dataset, Some(generation(digits)?)),
    };
    if bad(dataset) {
        return Err(PathError::Segment);
    }
    if key == LATEST && generation.is_none() {
        return Ok(Target::Latest { dataset });
    }
    if key.contains('@') {
        return Err(PathError::Generation);
    }
    Ok(Target::Object {
        dataset,
        generation,
        key,
    })
}

/// A generation number: digits, no sign, no leading zero, at least 1, fits in 64 bits.
fn generation(digits: &str) -> Result<u64, PathError> {
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    match digits.parse() {
        Ok(n) if plain => Ok(n),
        _ => Err(PathError::Generation),
    }
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
                generation: None,
                key: "zarr.json"
            })
        );
        assert_eq!(
            parse("/ukv/air_temperature/c/0/1/0/0"),
            Ok(Target::Object {
                dataset: "ukv",
                generation: None,
                key: "air_temperature/c/0/1/0/0"
            })
        );
        assert_eq!(
            parse("/mog/.zmetadata"),
            Ok(Target::Object {
                dataset: "mog",
                generation: None,
                key: ".zmetadata"
            })
        );
        assert_eq!(
            parse("/ukv/"),
            Ok(Target::Object {
                dataset: "ukv",
                generation: None,
                key: ""
            })
        );
    }

    #[test]
    fn names_snapshots_and_the_latest_pointer() {
        assert_eq!(
            parse("/ukv@12/air_temperature/c/0/1/0/0"),
            Ok(Target::Object {
                dataset: "ukv",
                generation: Some(12),
                key: "air_temperature/c/0/1/0/0"
            })
        );
        assert_eq!(
            parse("/ukv@7"),
            Ok(Target::Object {
                dataset: "ukv",
                generation: Some(7),
                key: ""
            })
        );
        assert_eq!(parse("/ukv/@latest"), Ok(Target::Latest { dataset: "ukv" }));
        for raw in [
            "/ukv@/zarr.json",
            "/ukv@0/zarr.json",
            "/ukv@012/zarr.json",
            "/ukv@-1/zarr.json",
            "/ukv@1x/zarr.json",
            "/ukv@1@2/zarr.json",
            "/ukv@99999999999999999999999/zarr.json",
            "/ukv@3/@latest",
            "/ukv/a@1/zarr.json",
            "/ukv/@latest/zarr.json",
        ] {
            assert_eq!(parse(raw), Err(PathError::Generation), "{raw}");
        }
        assert_eq!(parse("/@3/zarr.json"), Err(PathError::Segment));
        assert_eq!(parse("/ukv@3/../x"), Err(PathError::Segment));
        assert_eq!(parse("/ukv@3/%2e%2e/x"), Err(PathError::Character));
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
