//! Datasets made from the feed in embedded mode: before a run, the notices are read once and
//! every parameter a discovering template takes (and no dataset does) gets its dataset
//! ([`roller_model::catalog::Discoveries`]), so `roller run` fills them like configured ones.

use std::io::{self, BufRead};

use roller_model::catalog::{Catalog, Discoveries};
use roller_model::config::DatasetConfig;
use roller_model::matching::matches;
use roller_proto::feed::{self, Notice};

/// The datasets of a run: the catalog's and those its templates made.
#[derive(Debug, Default)]
pub struct Found {
    /// Every dataset, the catalog's first, then those made in the order their first notice came.
    pub datasets: Vec<DatasetConfig>,
    /// How many of them templates made.
    pub made: usize,
    /// Notices a template would take but could not make a dataset for: the notice and why.
    pub refused: Vec<(String, String)>,
}

/// The datasets of `catalog` and those its discovering templates make for the notices in
/// `lines` (feed messages, one per line). Lines that do not parse are left to the run, which
/// dead-letters them.
pub fn datasets_for(catalog: &Catalog, lines: impl BufRead) -> io::Result<Found> {
    let mut found = Found {
        datasets: catalog.datasets.clone(),
        ..Found::default()
    };
    if catalog.discovering.is_empty() {
        return Ok(found);
    }
    let mut discoveries = Discoveries::default();
    for line in lines.lines() {
        let line = line?;
        let Ok(notices) = feed::parse(&line) else {
            continue;
        };
        for notice in notices {
            let Notice::File(note) = notice else { continue };
            if found.datasets.iter().any(|c| matches(&c.matching, &note)) {
                continue;
            }
            match discoveries.make(catalog, &note) {
                Ok(Some(discovered)) => {
                    tracing::info!(
                        dataset = %discovered.config.name,
                        parameter = %discovered.parameter,
                        "a template made a dataset for a parameter of the feed"
                    );
                    found.datasets.push(discovered.config);
                    found.made += 1;
                }
                Ok(None) => {}
                Err(e) => found.refused.push((note.id(), e.to_string())),
            }
        }
    }
    Ok(found)
}
