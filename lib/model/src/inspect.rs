//! A human-readable description of a dataset's committed state and logical view.

use std::fmt::Write;

use roller_proto::time::format_instant;

use crate::metadata::array_specs;
use crate::state::CommitRecord;

/// Describes the commit record: window, offset, head, generation, completeness per visible
/// index, and the arrays of the logical view with their shapes.
pub fn describe(record: &CommitRecord) -> String {
    let layout = &record.layout;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "dataset     {}", layout.name);
    let _ = writeln!(
        w,
        "generation  {} (committed {})",
        record.generation, record.committed_at
    );
    let _ = writeln!(
        w,
        "snapshot    {}@{}  (open http://HOST/{}@{} on roller-serve; readable until {} after it is replaced, with today's expiry.grace)",
        layout.name,
        record.generation,
        layout.name,
        record.generation,
        crate::duration::Seconds(record.grace).render()
    );
    let _ = writeln!(
        w,
        "window      {} steps of {} s along {}",
        layout.window, layout.step, layout.rolling_dim
    );
    match record.head {
        None => {
            let _ = writeln!(w, "visible     nothing yet (no data committed, no roll)");
        }
        Some(head) => {
            let _ = writeln!(
                w,
                "visible     {} .. {}  (offset {}, head {}, {} steps)",
                format_instant(layout.time_of(record.offset)),
                format_instant(layout.time_of(head)),
                record.offset,
                head,
                record.visible_len()
            );
            let slots = layout.slots();
            let _ = writeln!(
                w,
                "completeness (one mark per {} slot; # written, . missing):",
                slots
            );
            for abs in record.offset..=head {
                let present = record.present.get(&abs);
                let marks: String = (0..slots)
                    .map(|s| {
                        if present.is_some_and(|p| p.binary_search(&s).is_ok()) {
                            '#'
                        } else {
                            '.'
                        }
                    })
                    .collect();
                let _ = writeln!(
                    w,
                    "  [{:>3}] {}  {}",
                    abs - record.offset,
                    format_instant(layout.time_of(abs)),
                    marks
                );
            }
        }
    }
    if !record.pending.is_empty() {
        let _ = writeln!(
            w,
            "in progress {} target(s) partly written",
            record.pending.len()
        );
    }
    if let Some(next) = record.expiring.iter().filter_map(|e| e.release_at).min() {
        let _ = writeln!(
            w,
            "expiring    {} rolled-out target(s) kept for readers; the first is removed after {}",
            record.expiring.len(),
            format_instant(next)
        );
    }
    let _ = writeln!(w, "arrays (Zarr v{}):", layout.format);
    for spec in array_specs(layout, record.schema.as_ref(), record.visible_len()) {
        let dims: Vec<String> = spec
            .dims
            .iter()
            .zip(&spec.shape)
            .map(|(d, s)| format!("{d}: {s}"))
            .collect();
        let _ = writeln!(
            w,
            "  {:<28} {:<8} ({})",
            spec.name,
            spec.dtype,
            dims.join(", ")
        );
    }
    out
}
