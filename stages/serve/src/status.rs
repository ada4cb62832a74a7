//! The status page at `/`: every dataset with its window, head, offset, last commit, dead
//! letters, a completeness grid (which lead times are present for each run) and a quick-look
//! of the newest field. Plain server-rendered HTML that refreshes itself every 30 s.

use std::collections::HashMap;
use std::fmt::Write;

use roller_model::state::CommitRecord;
use roller_proto::time::format_instant;

use crate::catalog::{Catalog, ReadError};
use crate::dead_letters::DeadCount;
use crate::quicklook::{duration_label, label, quicklook_path, QuickLooks};

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
section{border-top:1px solid #ccc;padding-top:.5em;margin-top:1em}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}dd{margin:0}\
table.grid{border-collapse:collapse;font-size:.8em}table.grid td,table.grid th{border:1px solid #ddd;padding:1px 4px;text-align:center}\
td.ok{background:#3a3}td.partial{background:#fc3}td.waiting{background:#9cf}td.missing{background:#eee}\
.legend span{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em 0 1em}\
figure{margin:.5em 0}";

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page, rendered from each dataset's latest commit; `dead` holds each dataset's
/// dead-letter count, `base` is the server's URL (for snapshot links).
pub fn page(
    catalog: &Catalog,
    quicklooks: &QuickLooks,
    dead: &HashMap<String, DeadCount>,
    base: &str,
) -> String {
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\"><title>zarr-roller</title><style>{STYLE}</style></head><body>\n<h1>zarr-roller datasets</h1>\n"
    );
    for name in catalog.names() {
        let _ = write!(
            html,
            "<section id=\"dataset-{0}\"><h2>{0}</h2>",
            escape(name)
        );
        let dead = dead.get(name).cloned().unwrap_or(DeadCount::NotConfigured);
        match catalog.view(name) {
            Ok(view) => {
                let record = view.record();
                let snapshot = format!("{base}/{name}@{}", record.generation);
                summary(&mut html, &record, &dead, &snapshot);
                grid(&mut html, &record);
                html.push_str("<h3>Newest field</h3>");
                match quicklooks.get(name, &view) {
                    Ok(Some(look)) => {
                        let _ = write!(
                            html,
                            "<figure><img id=\"quicklook-{name}\" src=\"{src}\" alt=\"{variable} at {time}, {slot}\" onload=\"this.dataset.loaded='yes'\"><figcaption>{variable} for the run of {time}, {slot}. Colours from {lo} to {hi} {units}; x ({x}) {x0} to {x1} {xu}; y ({y}) {y0} to {y1} {yu}.</figcaption></figure>",
                            name = escape(name),
                            src = escape(&quicklook_path(name)),
                            variable = escape(&look.variable),
                            time = format_instant(look.time),
                            slot = escape(&look.slot),
                            lo = label(look.range.0),
                            hi = label(look.range.1),
                            units = escape(&look.units),
                            x = escape(&look.x.0),
                            x0 = label(look.x.1),
                            x1 = label(look.x.2),
                            xu = escape(&look.x.3),
                            y = escape(&look.y.0),
                            y0 = label(look.y.1),
                            y1 = label(look.y.2),
                            yu = escape(&look.y.3),
                        );
                    }
                    Ok(None) => html.push_str("<p>no field visible yet</p>"),
                    Err(e) => {
                        let _ = write!(
                            html,
                            "<p>quick-look unavailable: {}</p>",
                            escape(&e.to_string())
                        );
                    }
                }
            }
            Err(ReadError::NotCommitted(_)) => html.push_str("<p>no commit yet</p>"),
            Err(e) => {
                let _ = write!(html, "<p>unavailable: {}</p>", escape(&e.to_string()));
            }
        }
        html.push_str("</section>\n");
    }
    html.push_str("</body></html>\n");
    html
}

fn summary(html: &mut String, record: &CommitRecord, dead: &DeadCount, snapshot: &str) {
    let layout = &record.layout;
    let visible = i64::try_from(record.visible_len()).unwrap_or(i64::MAX);
    let window = if visible == 0 {
        "empty (nothing committed yet)".to_owned()
    } else {
        format!(
            "{} to {} ({visible} of {} runs)",
            format_instant(layout.time_of(record.offset)),
            format_instant(layout.time_of(record.offset + visible - 1)),
            layout.window
        )
    };
    let dead = match dead {
        DeadCount::NotConfigured => "not counted (no NATS_URL)".to_owned(),
        DeadCount::Unavailable(reason) => format!("unavailable: {reason}"),
        DeadCount::Count(n) => n.to_string(),
    };
    let _ = write!(
        html,
        "<dl><dt>window</dt><dd class=\"window\">{window}</dd><dt>head</dt><dd>{head}</dd><dt>offset</dt><dd>{offset}</dd><dt>generation</dt><dd>{generation}</dd><dt>snapshot</dt><dd><a class=\"snapshot\" href=\"{snapshot}\">{snapshot}</a> (readable until {grace} after it is replaced, with today's expiry.grace)</dd><dt>last commit</dt><dd>{committed}</dd><dt>dead letters</dt><dd class=\"dead\">{dead}</dd></dl>",
        head = record.head.map_or_else(
            || "none".into(),
            |h| format!("{h} ({})", format_instant(layout.time_of(h)))
        ),
        offset = record.offset,
        generation = record.generation,
        committed = escape(&record.committed_at),
        dead = escape(&dead),
        snapshot = escape(snapshot),
        grace = roller_model::duration::Seconds(record.grace).render(),
    );
}

/// One row per run in the window (newest first), one column per slot (lead time).
fn grid(html: &mut String, record: &CommitRecord) {
    let layout = &record.layout;
    let visible = i64::try_from(record.visible_len()).unwrap_or(i64::MAX);
    if visible == 0 {
        return;
    }
    html.push_str("<h3>Completeness</h3><table class=\"grid\"><tr><th>run</th>");
    for slot in 0..layout.slots() {
        let label = layout
            .slot_values(slot)
            .into_iter()
            .map(duration_label)
            .collect::<Vec<_>>()
            .join(" ");
        let _ = write!(html, "<th>{}</th>", escape(&label));
    }
    html.push_str("</tr>");
    for abs in (record.offset..record.offset + visible).rev() {
        let _ = write!(html, "<tr><th>{}</th>", format_instant(layout.time_of(abs)));
        for slot in 0..layout.slots() {
            let pending = record
                .pending
                .iter()
                .find(|p| p.abs == abs && p.slot == slot);
            let (class, mark, title) = if record.is_visible(abs, slot) {
                ("ok", "✓", "visible".to_owned())
            } else if record.present.get(&abs).is_some_and(|s| s.contains(&slot)) {
                (
                    "waiting",
                    "w",
                    "written; waiting for the rest of the run".to_owned(),
                )
            } else if let Some(p) = pending {
                (
                    "partial",
                    "…",
                    format!("{} of {} parts written", p.done.len(), p.parts),
                )
            } else {
                ("missing", "", "not written".to_owned())
            };
            let _ = write!(html, "<td class=\"{class}\" title=\"{title}\">{mark}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table><p class=\"legend\"><span class=\"ok\" style=\"background:#3a3\"></span>visible<span style=\"background:#9cf\"></span>written, waiting for the rest of the run<span style=\"background:#fc3\"></span>partly written<span style=\"background:#eee\"></span>not written</p>");
}
