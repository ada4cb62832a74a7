//! The committed state of a dataset and how write reports and roll events fold into it.
//!
//! This module is pure: no I/O. [`crate::commit`] loads and stores the record and removes what
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
    /// Chunks out of the window that still have to be removed.
    pub expiring: Vec<Expiring>,
}

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
        }
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
            Visibility::Complete => self
                .present
                .get(&abs)
                .is_some_and(|s| s.len() as u32 >= self.layout.slots()),
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
            let complete = pending.done.len() as u32 >= pending.parts;
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
            let index_complete = slots.len() as u32 >= self.layout.slots();
            if visibility == Visibility::Any || index_complete {
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
            None => self.expiring.push(Expiring { abs, slot, parts }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::layout;

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
}
