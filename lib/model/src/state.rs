//! The committed state of a dataset and how write reports and roll events fold into it.
//!
//! This module is pure: no I/O. [`crate::record`] loads the record, the commit stage stores it and removes what
//! rolled out of the window.

use std::collections::BTreeMap;

use roller_proto::{FileSchema, RollEvent, WriteReport};
use serde::{Deserialize, Serialize};

use crate::config::Visibility;
use crate::layout::Layout;

/// Version of the commit record format.
pub const RECORD_FORMAT: u32 = 1;

/// A target some parts of which are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Abs index.
    pub abs: i64,
    /// Slot.
    pub slot: u32,
    /// Parts the target has.
    pub parts: u32,
    /// Parts reported so far, sorted.
    pub done: Vec<u32>,
}

/// Chunks that must be removed: one target's parts that are out of the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    /// Abs index.
    pub abs: i64,
    /// Slot.
    pub slot: u32,
    /// Parts whose chunks may exist.
    pub parts: Vec<u32>,
    /// When the grace of the commit that rolled them out has passed (seconds since the epoch),
    /// set by that commit; `None` until then.
    #[serde(default)]
    pub release_at: Option<i64>,
}

/// Snapshot records of replaced generations (`first..=last`) that may be removed from
/// `release_at` on: by then every reader's grace on those generations has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// Oldest generation of the range.
    pub first: u64,
    /// Newest generation of the range.
    pub last: u64,
    /// When they may be removed (seconds since the epoch): the newest member's release time.
    pub release_at: i64,
    /// The oldest member's release time: ranges grow only while members come within a
    /// quantum of it, so a steady stream of commits still closes ranges.
    #[serde(default)]
    pub first_release_at: i64,
}

/// The commit record: everything a reader needs to present the logical view, and everything the
/// commit stage needs to resume. Stored whole, in one atomic put.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// Record format version.
    pub format: u32,
    /// Number of commits so far; increases by one per commit.
    pub generation: u64,
    /// When this commit was made (RFC 3339).
    pub committed_at: String,
    /// Shape and encoding of the dataset.
    pub layout: Layout,
    /// Abs index of logical index 0.
    pub offset: i64,
    /// Newest visible abs index; `None` until the first data or roll.
    pub head: Option<i64>,
    /// Complete slots per abs index at or above the offset.
    pub present: BTreeMap<i64, Vec<u32>>,
    /// Targets with some but not all parts written.
    pub pending: Vec<Pending>,
    /// Metadata taken from the source files.
    pub schema: Option<FileSchema>,
    /// The target whose file the schema came from (the newest seen wins, for determinism).
    pub schema_from: Option<(i64, u32)>,
    /// Chunks out of the window that still have to be removed, each once its grace has passed.
    pub expiring: Vec<Expiring>,
    /// The grace (seconds) in force when this record was committed: a replaced generation's
    /// snapshot stays readable until the next generation's `committed_at` plus its grace.
    #[serde(default)]
    pub grace: i64,
    /// Snapshot records of replaced generations still to be removed.
    #[serde(default)]
    pub retired: Vec<Retired>,
    /// Each visible run's own length (seconds of `forecast_period`), where its files give it
    /// (`mosg__forecast_run_duration`): with `complete` visibility a short run is complete
    /// once its own lead times are in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub run_lengths: BTreeMap<i64, i64>,
}

/// The global attribute in which Met Office files give their run's length (`PT54H`).
pub const RUN_DURATION_ATTR: &str = "mosg__forecast_run_duration";

/// What folding a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folded {
    /// The state changed.
    Changed,
    /// Nothing new (a replay).
    Unchanged,
    /// The target is below the window; its chunks are queued for removal.
    OutOfWindow,
    /// The report does not fit the layout (bad abs, slot or part); ignored.
    Refused,
}

impl CommitRecord {
    /// The state of a dataset before anything was committed.
    pub fn empty(layout: Layout) -> Self {
        Self {
            format: RECORD_FORMAT,
            generation: 0,
            committed_at: String::new(),
            layout,
            offset: 0,
            head: None,
            present: BTreeMap::new(),
            pending: Vec::new(),
            schema: None,
            schema_from: None,
            expiring: Vec::new(),
            grace: 0,
            retired: Vec::new(),
            run_lengths: BTreeMap::new(),
        }
    }

    /// Whether every slot the run at `abs` fills (up to its own length) is committed: slots
    /// beyond the run's length do not stand in for missing ones within it.
    fn index_complete(&self, abs: i64) -> bool {
        let length = self.run_lengths.get(&abs).copied();
        let needed = self.layout.slots_within(length);
        self.present.get(&abs).is_some_and(|slots| {
            let within = slots
                .iter()
                .filter(|&&s| self.layout.slot_within(s, length))
                .count();
            u32::try_from(within).unwrap_or(u32::MAX) >= needed
        })
    }

    /// Visible steps (the logical length of the rolling dim).
    pub fn visible_len(&self) -> u64 {
        self.head
            .map_or(0, |h| u64::try_from(h - self.offset + 1).unwrap_or(0))
    }

    /// Whether a target is committed (all its parts written).
    fn is_present(&self, abs: i64, slot: u32) -> bool {
        self.present
            .get(&abs)
            .is_some_and(|s| s.binary_search(&slot).is_ok())
    }

    /// Whether a target's data is committed and inside the window, and, with `complete`
    /// visibility, every slot of its index is committed.
    pub fn is_visible(&self, abs: i64, slot: u32) -> bool {
        let index_ready = match self.layout.visibility {
            Visibility::Any => true,
            Visibility::Complete => self.index_complete(abs),
        };
        index_ready
            && self.head.is_some_and(|h| abs >= self.offset && abs <= h)
            && self.is_present(abs, slot)
    }

    /// Folds one write report. Reports that do not fit the layout are refused.
    pub fn fold_report(&mut self, report: &WriteReport) -> Folded {
        let layout = &self.layout;
        if report.abs < 0
            || report.slot >= layout.slots()
            || report.parts != layout.parts()
            || report.part >= report.parts
        {
            return Folded::Refused;
        }
        let visibility = layout.visibility;
        let key = (report.abs, report.slot);
        let mut changed = false;
        if let Some(schema) = &report.schema {
            if self.schema_from.is_none_or(|from| key > from) {
                self.schema = Some(schema.clone());
                self.schema_from = Some(key);
                changed = true;
            }
            let length = schema
                .global_attrs
                .iter()
                .find(|(name, _)| name == RUN_DURATION_ATTR)
                .and_then(|(_, value)| match value {
                    roller_proto::AttrValue::Text(text) => crate::duration::iso8601_seconds(text),
                    _ => None,
                });
            let in_window = self.head.is_none() || report.abs >= self.offset;
            if let Some(length) = length.filter(|_| in_window) {
                changed |= self.run_lengths.insert(report.abs, length) != Some(length);
            }
        }
        if self.head.is_some() && report.abs < self.offset {
            self.queue_expiry(report.abs, report.slot, vec![report.part]);
            return Folded::OutOfWindow;
        }
        if self.is_present(report.abs, report.slot) {
            return if changed {
                Folded::Changed
            } else {
                Folded::Unchanged
            };
        }
        let complete = if report.parts <= 1 {
            true
        } else {
            let idx = self.pending.iter().position(|p| (p.abs, p.slot) == key);
            let pending = match idx {
                Some(i) => &mut self.pending[i],
                None => {
                    self.pending.push(Pending {
                        abs: report.abs,
                        slot: report.slot,
                        parts: report.parts,
                        done: Vec::new(),
                    });
                    self.pending.sort_by_key(|p| (p.abs, p.slot));
                    let i = self.pending.iter().position(|p| (p.abs, p.slot) == key);
                    &mut self.pending[i.unwrap_or_default()]
                }
            };
            if let Err(at) = pending.done.binary_search(&report.part) {
                pending.done.insert(at, report.part);
                changed = true;
            }
            let complete =
                pending.done.len() >= usize::try_from(pending.parts).unwrap_or(usize::MAX);
            if complete {
                self.pending.retain(|p| (p.abs, p.slot) != key);
            }
            complete
        };
        if complete {
            let slots = self.present.entry(report.abs).or_default();
            if let Err(at) = slots.binary_search(&report.slot) {
                slots.insert(at, report.slot);
            }
            changed = true;
            if visibility == Visibility::Any || self.index_complete(report.abs) {
                self.advance_head(report.abs);
            }
        }
        if changed {
            Folded::Changed
        } else {
            Folded::Unchanged
        }
    }

    /// Applies a changed window: a smaller one moves the offset up at once (queueing what falls
    /// out); a larger one fills in as new steps arrive (the offset never moves back).
    pub fn set_window(&mut self, window: u32) -> Folded {
        if window == self.layout.window {
            return Folded::Unchanged;
        }
        self.layout.window = window;
        if let Some(head) = self.head {
            let offset = head - i64::from(window) + 1;
            if offset > self.offset {
                self.move_offset(offset);
            }
        }
        Folded::Changed
    }

    /// Folds a roll event: the head moves to at least the abs index of `until`.
    pub fn fold_roll(&mut self, roll: &RollEvent) -> Folded {
        let before = (self.offset, self.head);
        self.advance_head(self.layout.abs_index_floor(roll.until));
        if (self.offset, self.head) == before {
            Folded::Unchanged
        } else {
            Folded::Changed
        }
    }

    /// Moves the head forward to `abs` (never back) and the offset with it, queueing everything
    /// that falls below the new offset for removal.
    fn advance_head(&mut self, abs: i64) {
        let first = match self.head {
            Some(h) if h >= abs => return,
            Some(_) => false,
            None => true,
        };
        self.head = Some(abs);
        // The offset never moves back (a larger window fills in as new steps arrive).
        let offset = abs - i64::from(self.layout.window) + 1;
        if !first && offset <= self.offset {
            return;
        }
        self.move_offset(offset);
    }

    /// Moves the offset up to `offset`, queueing everything below it for removal.
    fn move_offset(&mut self, offset: i64) {
        self.offset = offset;
        self.run_lengths = self.run_lengths.split_off(&offset);
        let kept = self.present.split_off(&offset);
        for (abs, slots) in std::mem::replace(&mut self.present, kept) {
            let parts: Vec<u32> = (0..self.layout.parts()).collect();
            for slot in slots {
                self.queue_expiry(abs, slot, parts.clone());
            }
        }
        let (gone, kept): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.abs < offset);
        self.pending = kept;
        for p in gone {
            self.queue_expiry(p.abs, p.slot, p.done);
        }
    }

    fn queue_expiry(&mut self, abs: i64, slot: u32, parts: Vec<u32>) {
        match self
            .expiring
            .iter_mut()
            .find(|e| (e.abs, e.slot) == (abs, slot))
        {
            Some(e) => {
                for p in parts {
                    if let Err(at) = e.parts.binary_search(&p) {
                        e.parts.insert(at, p);
                    }
                }
            }
            None => self.requeue(Expiring {
                abs,
                slot,
                parts,
                release_at: None,
            }),
        }
    }

    /// Puts a target back into the expiry queue at its place in (abs, slot) order, so the
    /// queue, and the stored record, do not depend on the order reports and rolls came in. For
    /// the committer, when removing a released target failed and it must wait for the next
    /// attempt; the queue is otherwise filled only by the fold.
    pub fn requeue(&mut self, target: Expiring) {
        let at = self
            .expiring
            .partition_point(|e| (e.abs, e.slot) < (target.abs, target.slot));
        self.expiring.insert(at, target);
    }

    /// Makes this record generation `generation + 1`, committed at `now` with `grace`: the
    /// replaced generation's snapshot is retired and chunks rolled out since the last commit get
    /// their release time. A chunk is released no earlier than every snapshot that showed it,
    /// even when the grace was shortened since.
    pub fn advance_generation(&mut self, now: i64, grace: i64) {
        let replaced = self.generation;
        self.generation += 1;
        self.committed_at = roller_proto::time::format_instant(now);
        self.grace = grace.max(0);
        let release = now.saturating_add(self.grace);
        if replaced > 0 {
            self.retire(replaced, release);
        }
        let latest = self
            .retired
            .iter()
            .map(|r| r.release_at)
            .max()
            .unwrap_or(release)
            .max(release);
        for e in self.expiring.iter_mut().filter(|e| e.release_at.is_none()) {
            e.release_at = Some(latest);
        }
    }

    /// Queues the snapshot record of `generation` for removal at `release_at`, merged into the
    /// newest range when their release times are close, so the queue stays short however often
    /// commits come (a merged range waits for its newest member).
    fn retire(&mut self, generation: u64, release_at: i64) {
        let quantum = (self.grace / RETIRE_QUANTA).max(1);
        match self.retired.last_mut() {
            Some(last)
                if last.last + 1 == generation && release_at - last.first_release_at < quantum =>
            {
                last.last = generation;
                last.release_at = last.release_at.max(release_at);
            }
            _ => self.retired.push(Retired {
                first: generation,
                last: generation,
                release_at,
                first_release_at: release_at,
            }),
        }
    }

    /// Whether something whose release time is `at` may be removed at `now`: a margin after
    /// it (a tenth of the grace, at most [`MAX_RELEASE_MARGIN`] s), so that a reader whose clock
    /// is a little behind the committer's never finds a chunk of a live snapshot gone.
    pub fn is_released(&self, at: i64, now: i64) -> bool {
        let margin = (self.grace / 10).clamp(0, MAX_RELEASE_MARGIN);
        at.saturating_add(margin) <= now
    }

    /// Chunks whose grace has passed at `now`.
    pub fn released_chunks(&self, now: i64) -> impl Iterator<Item = &Expiring> {
        self.expiring
            .iter()
            .filter(move |e| e.release_at.is_some_and(|at| self.is_released(at, now)))
    }

    /// Whether anything (chunks or snapshot records) may be removed at `now`, or a queued
    /// chunk still lacks a release time (a record written before grace existed).
    pub fn has_released(&self, now: i64) -> bool {
        self.released_chunks(now).next().is_some()
            || self.expiring.iter().any(|e| e.release_at.is_none())
            || self
                .retired
                .iter()
                .any(|r| self.is_released(r.release_at, now))
    }
}

/// The retired-snapshot queue keeps about this many ranges per grace period.
const RETIRE_QUANTA: i64 = 16;

/// How far ahead of the clock the rolling dim may be moved (2 days), by a file's run time or a
/// roll event: further than that is a clock or file error that would roll the whole window away.
/// Decode refuses such a file and commit such a roll event.
pub const MAX_AHEAD_SECONDS: i64 = 2 * 86_400;

/// Longest margin (seconds) between a release time and the removal.
pub const MAX_RELEASE_MARGIN: i64 = 30;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testing::layout;

    fn report(abs: i64, slot: u32, part: u32, parts: u32) -> WriteReport {
        WriteReport {
            dataset: "t".into(),
            source: format!("{abs}/{slot}"),
            abs,
            slot,
            part,
            parts,
            chunks: 1,
            bytes: 1,
            schema: None,
        }
    }

    #[test]
    fn window_follows_data_and_queues_roll_off() {
        let mut r = CommitRecord::empty(layout(3, 1, &[(4, 4)]));
        for abs in 10..15 {
            assert_eq!(r.fold_report(&report(abs, 0, 0, 1)), Folded::Changed);
            r.generation += 1;
        }
        assert_eq!((r.offset, r.head), (12, Some(14)));
        assert_eq!(
            r.present.keys().copied().collect::<Vec<_>>(),
            vec![12, 13, 14]
        );
        assert_eq!(
            r.expiring.iter().map(|e| e.abs).collect::<Vec<_>>(),
            vec![10, 11]
        );
        assert_eq!(r.fold_report(&report(14, 0, 0, 1)), Folded::Unchanged);
        assert_eq!(r.fold_report(&report(5, 0, 0, 1)), Folded::OutOfWindow);
    }

    #[test]
    fn a_target_is_visible_only_when_all_parts_are_in() {
        let mut r = CommitRecord::empty(layout(3, 2, &[(4, 2), (3, 3)]));
        r.fold_report(&report(7, 1, 1, 2));
        assert!(!r.is_visible(7, 1));
        assert_eq!(r.head, None);
        r.fold_report(&report(7, 1, 0, 2));
        assert!(r.is_visible(7, 1));
        assert!(!r.is_visible(7, 0));
        assert!(r.pending.is_empty());
    }

    #[test]
    fn complete_visibility_waits_for_every_slot() {
        let mut l = layout(3, 2, &[(4, 4)]);
        l.visibility = Visibility::Complete;
        let mut r = CommitRecord::empty(l);
        r.fold_report(&report(7, 0, 0, 1));
        assert_eq!(r.head, None);
        r.fold_report(&report(7, 1, 0, 1));
        assert_eq!(r.head, Some(7));
        // A roll past an incomplete index shows none of it, not part of it.
        r.fold_report(&report(8, 0, 0, 1));
        r.fold_roll(&RollEvent {
            dataset: "t".into(),
            until: r.layout.time_of(9),
        });
        assert_eq!(r.head, Some(9));
        assert!(r.is_visible(7, 0) && !r.is_visible(8, 0));
    }

    #[test]
    fn a_short_run_is_complete_once_its_own_lead_times_are_in() {
        // Lead times 0..3 h; complete visibility.
        let mut l = layout(3, 4, &[(4, 4)]);
        l.visibility = Visibility::Complete;
        let mut r = CommitRecord::empty(l.clone());
        let with_length = |abs: i64, slot: u32, length: &str| {
            let mut rep = report(abs, slot, 0, 1);
            rep.schema = Some(roller_proto::FileSchema {
                variable_attrs: Vec::new(),
                coords: Vec::new(),
                grid_mapping: None,
                global_attrs: vec![(
                    RUN_DURATION_ATTR.into(),
                    roller_proto::AttrValue::Text(length.into()),
                )],
            });
            rep
        };
        // A run that reaches T+1 (its files say PT1H): two lead times make it complete.
        r.fold_report(&with_length(5, 0, "PT1H"));
        assert_eq!(r.head, None);
        r.fold_report(&with_length(5, 1, "PT1H"));
        assert_eq!(r.head, Some(5));
        assert!(r.is_visible(5, 1));
        // A full-length run next to it waits for all four.
        for slot in 0..3 {
            r.fold_report(&with_length(6, slot, "PT3H"));
        }
        assert_eq!(r.head, Some(5));
        r.fold_report(&with_length(6, 3, "PT3H"));
        assert_eq!(r.head, Some(6));
        // Files that do not say: the config's run length, else every lead time.
        let mut short = l;
        short.run_length = Some(2 * 3600);
        let mut r = CommitRecord::empty(short);
        // A lead time beyond the run's length does not stand in for a missing one within it.
        for slot in [0, 1, 3] {
            r.fold_report(&report(7, slot, 0, 1));
        }
        assert_eq!(r.head, None);
        r.fold_report(&report(7, 2, 0, 1));
        assert_eq!(r.head, Some(7));
    }

    #[test]
    fn reports_that_do_not_fit_the_layout_are_refused() {
        let mut r = CommitRecord::empty(layout(3, 2, &[(4, 2), (3, 3)]));
        for bad in [
            report(-1, 0, 0, 2),
            report(1, 2, 0, 2),
            report(1, 0, 0, 1),
            report(1, 0, 2, 2),
        ] {
            assert_eq!(r.fold_report(&bad), Folded::Refused, "{bad:?}");
        }
        assert_eq!(r.head, None);
    }

    #[test]
    fn a_smaller_window_moves_the_offset_at_once() {
        let mut r = CommitRecord::empty(layout(4, 1, &[(4, 4)]));
        for abs in 0..4 {
            r.fold_report(&report(abs, 0, 0, 1));
        }
        assert_eq!((r.offset, r.visible_len()), (0, 4));
        assert_eq!(r.set_window(2), Folded::Changed);
        assert_eq!((r.offset, r.visible_len()), (2, 2));
        assert_eq!(
            r.expiring.iter().map(|e| e.abs).collect::<Vec<_>>(),
            vec![0, 1]
        );
    }

    #[test]
    fn a_commit_stamps_what_it_rolled_out_with_its_grace_and_retires_the_replaced_snapshot() {
        let mut r = CommitRecord::empty(layout(2, 1, &[(4, 4)]));
        r.fold_report(&report(0, 0, 0, 1));
        r.advance_generation(1000, 60);
        assert_eq!((r.generation, r.grace), (1, 60));
        assert!(r.retired.is_empty(), "generation 0 has no snapshot");
        for abs in 1..3 {
            r.fold_report(&report(abs, 0, 0, 1));
        }
        r.advance_generation(1010, 60);
        assert_eq!(r.expiring.len(), 1);
        assert_eq!(r.expiring[0].release_at, Some(1070));
        assert_eq!(
            r.retired,
            vec![Retired {
                first: 1,
                last: 1,
                release_at: 1070,
                first_release_at: 1070
            }]
        );
        // Removed a tenth of the grace after the release time.
        assert!(!r.has_released(1075));
        assert!(r.has_released(1076));
        assert_eq!(r.released_chunks(1076).count(), 1);
    }

    #[test]
    fn retired_snapshots_close_in_time_share_one_range_released_with_its_newest() {
        let mut r = CommitRecord::empty(layout(2, 1, &[(4, 4)]));
        // A grace of 160 s merges retirements less than 10 s apart.
        for (i, now) in [0, 3, 6, 9, 30].into_iter().enumerate() {
            r.fold_report(&report(i64::try_from(i).unwrap_or_default(), 0, 0, 1));
            r.advance_generation(now, 160);
        }
        assert_eq!(
            r.retired,
            vec![
                Retired {
                    first: 1,
                    last: 3,
                    release_at: 169,
                    first_release_at: 163
                },
                Retired {
                    first: 4,
                    last: 4,
                    release_at: 190,
                    first_release_at: 190
                }
            ]
        );
    }

    #[test]
    fn steady_commits_still_close_retired_ranges_so_they_are_released() {
        let mut r = CommitRecord::empty(layout(2, 1, &[(4, 4)]));
        // A commit every 5 s with a grace of 160 s (quantum 10 s) for ten graces.
        for i in 0..320 {
            r.fold_report(&report(i, 0, 0, 1));
            r.advance_generation(i * 5, 160);
        }
        assert!(r.retired.len() > 100, "{} ranges", r.retired.len());
        assert!(r
            .retired
            .iter()
            .all(|x| x.release_at - x.first_release_at < 10));
        assert!(r.has_released(320 * 5));
    }

    #[test]
    fn records_written_before_grace_existed_still_read() {
        let mut r = CommitRecord::empty(layout(2, 1, &[(4, 4)]));
        r.fold_report(&report(0, 0, 0, 1));
        let mut old = serde_json::to_value(&r).expect("json");
        for field in ["grace", "retired"] {
            old.as_object_mut().expect("object").remove(field);
        }
        old["expiring"] = serde_json::json!([{"abs": 3, "slot": 0, "parts": [0]}]);
        let read: CommitRecord = serde_json::from_value(old).expect("an old record reads");
        assert_eq!((read.grace, read.retired.len()), (0, 0));
        assert_eq!(read.expiring[0].release_at, None);
        assert!(
            read.has_released(0),
            "an unstamped expiry is due for stamping"
        );
    }

    #[test]
    fn a_shorter_grace_never_releases_chunks_before_older_snapshots_expire() {
        let mut r = CommitRecord::empty(layout(1, 1, &[(4, 4)]));
        r.fold_report(&report(0, 0, 0, 1));
        r.advance_generation(0, 3600);
        r.fold_report(&report(1, 0, 0, 1));
        r.advance_generation(10, 3600);
        r.fold_report(&report(2, 0, 0, 1));
        r.advance_generation(20, 0);
        // Generation 1 is readable until 3610: what generation 2 showed waits as long.
        let released: Vec<_> = r.expiring.iter().map(|e| (e.abs, e.release_at)).collect();
        assert_eq!(released, vec![(0, Some(3610)), (1, Some(3610))]);
    }

    #[test]
    fn rolls_move_the_window_without_data() {
        let l = layout(3, 1, &[(4, 4)]);
        let mut r = CommitRecord::empty(l.clone());
        r.fold_report(&report(2, 0, 0, 1));
        r.generation = 1;
        let until = l.time_of(6) + 1800;
        assert_eq!(
            r.fold_roll(&RollEvent {
                dataset: "t".into(),
                until
            }),
            Folded::Changed
        );
        assert_eq!((r.offset, r.head), (4, Some(6)));
        assert!(r.present.is_empty());
        assert_eq!(r.expiring.len(), 1);
        assert_eq!(
            r.fold_roll(&RollEvent {
                dataset: "t".into(),
                until
            }),
            Folded::Unchanged
        );
    }

    /// Property tests of the fold: what the commit stage sees is redelivered and reordered by
    /// the bus, and none of that may change what is published.
    mod fold_properties {
        use proptest::prelude::*;

        use super::*;

        /// One event of the stream: a write report (abs, slot, part) or a roll to an abs index.
        #[derive(Debug, Clone, Copy)]
        enum Event {
            Report(i64, u32, u32),
            Roll(i64),
        }

        const PARTS: u32 = 2;

        fn fold(record: &mut CommitRecord, event: Event) {
            match event {
                Event::Report(abs, slot, part) => {
                    record.fold_report(&report(abs, slot, part, PARTS));
                }
                Event::Roll(abs) => {
                    let until = record.layout.time_of(abs);
                    record.fold_roll(&RollEvent {
                        dataset: "t".into(),
                        until,
                    });
                }
            }
        }

        fn record_for(window: u32, complete: bool) -> CommitRecord {
            // Two slots, two parts per target (a 2 x 1 grid of chunks).
            let mut layout = layout(window, 2, &[(8, 4), (4, 4)]);
            if complete {
                layout.visibility = Visibility::Complete;
            }
            CommitRecord::empty(layout)
        }

        fn events() -> impl Strategy<Value = Vec<Event>> {
            let event = prop_oneof![
                4 => (0i64..10, 0u32..2, 0u32..PARTS).prop_map(|(a, s, p)| Event::Report(a, s, p)),
                1 => (0i64..12).prop_map(Event::Roll),
            ];
            prop::collection::vec(event, 1..40)
        }

        /// The events, each delivered 1 to 3 times, in a shuffled order.
        fn redelivered(events: Vec<Event>) -> impl Strategy<Value = (Vec<Event>, Vec<Event>)> {
            let copies = prop::collection::vec(1usize..=3, events.len());
            copies.prop_flat_map(move |copies| {
                let stream: Vec<Event> = events
                    .iter()
                    .zip(copies)
                    .flat_map(|(e, n)| std::iter::repeat_n(*e, n))
                    .collect();
                (Just(events.clone()), Just(stream).prop_shuffle())
            })
        }

        proptest! {
            #[test]
            fn any_order_and_any_redelivery_give_the_same_record(
                (events, stream) in events().prop_flat_map(redelivered),
                window in 1u32..4,
                complete in any::<bool>(),
            ) {
                let mut once = record_for(window, complete);
                for e in &events {
                    fold(&mut once, *e);
                }
                let mut shuffled = record_for(window, complete);
                for e in &stream {
                    fold(&mut shuffled, *e);
                }
                prop_assert_eq!(once, shuffled);
            }

            #[test]
            fn the_offset_never_moves_back_and_only_written_targets_are_visible(
                events in events(),
                window in 1u32..4,
                complete in any::<bool>(),
            ) {
                let mut record = record_for(window, complete);
                let mut written = std::collections::BTreeSet::new();
                for e in events {
                    let (offset, head) = (record.offset, record.head);
                    fold(&mut record, e);
                    if let Event::Report(abs, slot, part) = e {
                        written.insert((abs, slot, part));
                    }
                    if head.is_some() {
                        prop_assert!(record.offset >= offset, "offset {} -> {}", offset, record.offset);
                        prop_assert!(record.head >= head);
                    }
                    for abs in record.offset..=record.head.unwrap_or(record.offset - 1) {
                        for slot in 0..2 {
                            if record.is_visible(abs, slot) {
                                for part in 0..PARTS {
                                    prop_assert!(
                                        written.contains(&(abs, slot, part)),
                                        "({}, {}) is visible but part {} was never written",
                                        abs, slot, part
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
