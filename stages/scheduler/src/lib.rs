//! The scheduler box, beside the data path: it moves a dataset's window on the clock's cadence
//! (`schedule.cron`), so the window follows the clock even when no data comes. It says when to
//! fire next and which roll event to emit; the bus that carries the event (the commit stage's
//! roll subject on NATS, or `roller roll` on local disk) is the runner's business.

use roller_model::config::DatasetConfig;
use roller_model::schedule::{newest_expected_run, Cron, CronError};
use roller_proto::RollEvent;

/// Why the scheduler cannot run: its cadence is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// `schedule.cron` does not parse.
    #[error("schedule.cron: {0}")]
    Cron(#[from] CronError),
    /// `schedule.cron` parses but names no time that exists (e.g. 31 February).
    #[error("schedule.cron `{0}` never fires")]
    NeverFires(String),
}

/// One dataset's scheduler: its cadence and where its window should end.
#[derive(Debug, Clone)]
pub struct Scheduler {
    config: DatasetConfig,
    cron: Cron,
}

impl Scheduler {
    /// The scheduler of `config`'s dataset; fails if its cron expression does not parse.
    pub fn new(config: &DatasetConfig) -> Result<Self, SchedulerError> {
        Ok(Self {
            cron: Cron::parse(&config.schedule.cron)?,
            config: config.clone(),
        })
    }

    /// When to emit the next roll event after `now` (seconds since the epoch).
    pub fn next_fire(&self, now: i64) -> Result<i64, SchedulerError> {
        self.cron
            .next_after(now)
            .ok_or_else(|| SchedulerError::NeverFires(self.config.schedule.cron.clone()))
    }

    /// The roll event the clock asks for at `now`: the window ends at the newest expected run.
    pub fn roll_event(&self, now: i64) -> RollEvent {
        roll_event(&self.config, now)
    }
}

/// The roll event the clock asks for at `now` for `config`'s dataset (without parsing its cron
/// expression: `roller roll --now` needs no cadence).
pub fn roll_event(config: &DatasetConfig, now: i64) -> RollEvent {
    RollEvent {
        dataset: config.name.clone(),
        until: newest_expected_run(
            now,
            &config.schedule,
            config.origin_seconds(),
            config.rolling.step.0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roller_model::layout::testing::config;

    #[test]
    fn fires_on_the_cadence_and_ends_the_window_at_the_newest_run() {
        let mut config = config(4, 1, &[(8, 8)]);
        config.schedule.cron = "5 * * * *".into();
        let scheduler = Scheduler::new(&config).expect("valid cron");
        let now = 10 * 3600 + 4 * 60;
        assert_eq!(scheduler.next_fire(now).expect("fires"), 10 * 3600 + 5 * 60);
        let event = scheduler.roll_event(now);
        assert_eq!((event.dataset.as_str(), event.until), ("t", 10 * 3600));
        assert_eq!(event, roll_event(&config, now));
    }

    #[test]
    fn an_impossible_cadence_is_refused_when_it_would_fire() {
        let mut config = config(4, 1, &[(8, 8)]);
        config.schedule.cron = "0 0 31 2 *".into();
        let scheduler = Scheduler::new(&config).expect("parses");
        let err = scheduler.next_fire(0).expect_err("31 February");
        assert!(err.to_string().contains("never fires"), "{err}");
        config.schedule.cron = "61 * * * *".into();
        let err = Scheduler::new(&config).expect_err("minute 61");
        assert!(err.to_string().contains("minute"), "{err}");
    }
}
