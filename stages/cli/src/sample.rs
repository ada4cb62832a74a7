//! `roller sample`: synthesises a few runs of files that fit a dataset's config, timed so the
//! clock-following window shows them now, and publishes their notifications on the dataset's
//! ingest subject. It is how `docker compose up` shows data within a minute.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use roller_model::config::DatasetConfig;
use roller_model::schedule::newest_expected_run;
use roller_synth::{synth, SynthOptions};

/// Arguments of `roller sample`.
#[derive(clap::Args)]
pub(crate) struct SampleArgs {
    /// Dataset config (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Where to write the files: a directory inside one of the config's `source.local_roots`.
    #[arg(long)]
    out: PathBuf,
    /// Runs to make, ending at the newest run the window expects now.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Lead times per run.
    #[arg(long, default_value_t = 3)]
    leads: usize,
}

/// The synthetic files `config` takes: its grid, variable, model and steps, `runs` runs ending
/// at the newest run expected at `now`.
pub(crate) fn sample_options(
    config: &DatasetConfig,
    out: &Path,
    runs: usize,
    leads: usize,
    now: i64,
) -> Result<SynthOptions> {
    let dims = &config.file_dims;
    if dims.is_empty() {
        bail!(
            "the dataset leaves its file dims to its first file; the sample needs them listed (`[[file_dims]]`, y then x)"
        );
    }
    let named = |name: &str| dims.iter().find(|d| d.name == name);
    let (Some(y), Some(x)) = (dims.iter().rev().nth(1), dims.last()) else {
        bail!("the sample needs a dataset with two grid dims (y, x)");
    };
    let known = ["realization", "height", y.name.as_str(), x.name.as_str()];
    if let Some(other) = dims.iter().find(|d| !known.contains(&d.name.as_str())) {
        bail!(
            "the sample can make realization, height and grid dims, not `{}`",
            other.name
        );
    }
    if config.variable != config.matching.name {
        bail!(
            "the sample's notifications name the variable; the config matches `{}` instead of `{}`",
            config.matching.name,
            config.variable
        );
    }
    let lead = config.message_dims.first();
    if let Some(lead) = lead {
        if usize::try_from(lead.size).unwrap_or(0) < leads {
            bail!(
                "the dataset has {} lead times; asked for {leads}",
                lead.size
            );
        }
    }
    let origin = roller_proto::time::parse_instant(&config.rolling.origin).with_context(|| {
        format!(
            "rolling.origin `{}` is not an RFC 3339 time",
            config.rolling.origin
        )
    })?;
    let step = config.rolling.step.0;
    let newest = newest_expected_run(now, &config.schedule, origin, step);
    let runs_back = i64::try_from(runs.max(1) - 1)?;
    Ok(SynthOptions {
        out: out.to_path_buf(),
        model: config.matching.model.clone(),
        variable: config.variable.clone(),
        ny: usize::try_from(y.size)?,
        nx: usize::try_from(x.size)?,
        realizations: named("realization")
            .map(|d| usize::try_from(d.size))
            .transpose()?,
        heights: named("height").map(|d| (0..d.size).map(|i| 10.0 * (i + 1) as f64).collect()),
        runs: runs.max(1),
        leads,
        first_run: newest - runs_back * step,
        run_step: step,
        lead_step: lead.map_or(3600, |l| l.step.0),
        ..SynthOptions::default()
    })
}

pub(crate) fn run(args: &SampleArgs) -> Result<()> {
    let config = DatasetConfig::load(&args.config)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = args.out.canonicalize()?;
    let inside_a_root = config
        .source
        .local_roots
        .iter()
        .filter_map(|root| root.canonicalize().ok())
        .any(|root| out.starts_with(root));
    if !inside_a_root {
        bail!(
            "{} is not inside any of the dataset's source.local_roots ({:?}): fetch would refuse every file",
            out.display(),
            config.source.local_roots
        );
    }
    let options = sample_options(
        &config,
        &out,
        args.runs,
        args.leads,
        roller_proto::time::now(),
    )?;
    let files = synth(&options)?;
    println!(
        "wrote {} files of {} runs ending {} under {}",
        files.len(),
        options.runs,
        roller_proto::time::format_instant(
            options.first_run + i64::try_from(options.runs - 1)? * options.run_step
        ),
        out.display()
    );
    let lines = files.iter().map(|f| f.notification.clone()).collect();
    let done = crate::nats_cmd::replay_lines(&config, lines)?;
    println!(
        "published {} notifications on the ingest subject ({} duplicates dropped)",
        done.published, done.duplicates
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_fits_the_example_config_and_ends_at_the_newest_expected_run() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ukv-air-temperature.toml");
        let config = DatasetConfig::load(&path).expect("example config");
        let now = roller_proto::time::parse_instant("2026-11-24T18:47:00Z").expect("time");
        let o = sample_options(&config, Path::new("/tmp/x"), 2, 3, now).expect("options");
        assert_eq!((o.ny, o.nx), (970, 1042));
        assert_eq!(o.model, "mo-atmospheric-ukv-prd");
        // The example expects runs about 2 h late: the newest at 16:00, so 15:00 and 16:00.
        assert_eq!(
            o.first_run,
            roller_proto::time::parse_instant("2026-11-24T15:00:00Z").expect("time")
        );
        assert_eq!((o.run_step, o.lead_step, o.leads), (3600, 3600, 3));
    }
}
