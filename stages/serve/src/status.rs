//! The status pages. `/` is the index: one row per dataset (its window, newest run and how
//! complete it is, how far that run lags the clock, last commit, dead letters), sortable by any
//! column and filtered by name, in the browser or with `?filter=...&sort=...&dir=desc` in the
//! URL; it renders no images, so it stays light with hundreds of datasets.
//! `/_status/<dataset>` is one dataset's page: window, head, offset, snapshot, last commit,
//! dead letters, a completeness grid (which lead times are present for each run) and a
//! quick-look of the newest field. Plain server-rendered HTML that refreshes itself every 30 s.

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
figure{margin:.5em 0}\
table.index{border-collapse:collapse}table.index td,table.index th{border-bottom:1px solid #ddd;padding:2px 8px;text-align:left}\
table.index th{cursor:pointer;user-select:none}table.index th[data-dir=asc]::after{content:' ▲'}table.index th[data-dir=desc]::after{content:' ▼'}\
tr.dead td.dead{color:#b00;font-weight:bold}input#filter{margin:.5em 0;padding:.2em;width:20em}";

/// The directory-like path prefix of the dataset pages: `/_status/<dataset>`.
pub const STATUS_DIR: &str = "_status";

/// The index's sorting and filtering, in the browser (no framework: a table of 200 rows needs
/// none). `?filter=`, `?sort=<column>` and `?dir=desc` in the URL set them at load.
const SCRIPT: &str = r#"(function(){
const t=document.getElementById('datasets'),f=document.getElementById('filter'),body=t.tBodies[0];
function filter(){const q=f.value.toLowerCase();for(const r of body.rows){r.hidden=!r.dataset.name.toLowerCase().includes(q)}}
function key(r,i){const c=r.cells[i],v=c.dataset.sort!==undefined?c.dataset.sort:c.textContent,n=Number(v);return v!==''&&!isNaN(n)?n:v.toLowerCase()}
function sort(th,dir){for(const h of t.tHead.rows[0].cells){delete h.dataset.dir}th.dataset.dir=dir;const i=th.cellIndex;
const rows=[...body.rows].sort((a,b)=>{const x=key(a,i),y=key(b,i),c=x<y?-1:x>y?1:0;return dir==='asc'?c:-c});for(const r of rows)body.appendChild(r)}
const p=new URLSearchParams(location.search);
function remember(){history.replaceState(null,'','?'+p.toString())}
f.addEventListener('input',()=>{filter();if(f.value)p.set('filter',f.value);else p.delete('filter');remember()});
t.tHead.addEventListener('click',e=>{const th=e.target.closest('th');if(!th)return;const dir=th.dataset.dir==='asc'?'desc':'asc';sort(th,dir);p.set('sort',th.dataset.column);p.set('dir',dir);remember()});
if(p.has('filter')){f.value=p.get('filter');filter()}
if(p.has('sort')){const th=[...t.tHead.rows[0].cells].find(h=>h.dataset.column===p.get('sort'));if(th)sort(th,p.get('dir')==='desc'?'desc':'asc')}
document.body.dataset.ready='yes';})();"#;

/// What sorts after every real value in a numeric column (a dataset with nothing committed).
const LAST: &str = "1e15";

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(title)
    )
}

/// How long ago `seconds` was, in days, hours and minutes (`2d 3h`, `5h 10m`, `4m`).
fn ago(seconds: i64) -> String {
    let minutes = seconds.max(0) / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// The index: one row per dataset, from each dataset's latest commit; `dead` holds each
/// dataset's dead-letter count, `now` is the clock the lag is measured against.
pub fn index(catalog: &Catalog, dead: &HashMap<String, DeadCount>, now: i64) -> String {
    let mut html = head("zarr-roller datasets");
    let names = catalog.names();
    let count = names.len();
    let _ = writeln!(
        html,
        "<h1>zarr-roller datasets</h1><p>{count} datasets. Click a column to sort; click a name for the dataset's window, completeness and newest field.</p>\
<input id=\"filter\" type=\"search\" placeholder=\"filter by name\" aria-label=\"filter by name\">\
<table class=\"index\" id=\"datasets\"><thead><tr><th data-column=\"name\">dataset</th><th data-column=\"window\">window</th><th data-column=\"newest\">newest run</th><th data-column=\"complete\">complete</th><th data-column=\"lag\">lag</th><th data-column=\"commit\">last commit</th><th data-column=\"dead\">dead letters</th></tr></thead><tbody>"
    );
    for name in &names {
        let name = name.as_str();
        let dead = dead.get(name).cloned().unwrap_or(DeadCount::NotConfigured);
        let (dead_text, dead_sort) = match &dead {
            DeadCount::NotConfigured => ("not counted".to_owned(), -1),
            DeadCount::Unavailable(_) => ("unavailable".to_owned(), -1),
            DeadCount::Count(n) => (n.to_string(), i64::try_from(*n).unwrap_or(i64::MAX)),
        };
        let _ = write!(
            html,
            "<tr data-name=\"{n}\"{class}><td><a href=\"/{STATUS_DIR}/{n}\">{n}</a></td>",
            n = escape(name),
            class = if dead_sort > 0 { " class=\"dead\"" } else { "" },
        );
        match catalog.view(name) {
            Ok(view) => row(&mut html, &view.record(), now),
            Err(ReadError::NotCommitted(_)) => {
                let _ = write!(
                    html,
                    "<td data-sort=\"0\">no commit yet</td><td data-sort=\"-1\"></td><td data-sort=\"-1\"></td><td data-sort=\"{LAST}\"></td><td></td>"
                );
            }
            Err(e) => {
                let _ = write!(
                    html,
                    "<td data-sort=\"0\">unavailable: {}</td><td data-sort=\"-1\"></td><td data-sort=\"-1\"></td><td data-sort=\"{LAST}\"></td><td></td>",
                    escape(&e.to_string())
                );
            }
        }
        let _ = writeln!(
            html,
            "<td class=\"dead\" data-sort=\"{dead_sort}\">{}</td></tr>",
            escape(&dead_text)
        );
    }
    let _ = write!(
        html,
        "</tbody></table>\n<script>{SCRIPT}</script>\n</body></html>\n"
    );
    html
}

/// The cells of one dataset's row from its commit record: window, newest run, how complete it
/// is, its lag behind `now`, the last commit.
fn row(html: &mut String, record: &CommitRecord, now: i64) {
    let layout = &record.layout;
    let visible = record.visible_len();
    let _ = write!(
        html,
        "<td data-sort=\"{visible}\">{visible} of {} runs</td>",
        layout.window
    );
    match record.head {
        Some(newest) => {
            let slots = layout.slots();
            let done = (0..slots).filter(|&s| record.is_visible(newest, s)).count();
            let time = layout.time_of(newest);
            let lag = now - time;
            let _ = write!(
                html,
                "<td data-sort=\"{time}\">{}</td><td data-sort=\"{fraction:.4}\">{done} of {slots} lead times</td><td data-sort=\"{lag}\">{}</td>",
                format_instant(time),
                ago(lag),
                fraction = f64::from(u32::try_from(done).unwrap_or(u32::MAX)) / f64::from(slots.max(1)),
            );
        }
        None => {
            let _ = write!(
                html,
                "<td data-sort=\"-1\">none</td><td data-sort=\"-1\"></td><td data-sort=\"{LAST}\"></td>"
            );
        }
    }
    let _ = write!(html, "<td>{}</td>", escape(&record.committed_at));
}

/// One dataset's page, rendered from its latest commit; `None` when no dataset has that name.
/// `dead` is its dead-letter count, `base` the server's URL (for the snapshot link).
pub fn dataset_page(
    catalog: &Catalog,
    quicklooks: &QuickLooks,
    name: &str,
    dead: DeadCount,
    base: &str,
) -> Option<String> {
    if !catalog.names().iter().any(|n| n == name) {
        return None;
    }
    let mut html = head(&format!("{name}: zarr-roller"));
    let _ = write!(
        html,
        "<p><a href=\"/\">all datasets</a></p><section id=\"dataset-{0}\"><h2>{0}</h2>",
        escape(name)
    );
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
    html.push_str("</section>\n</body></html>\n");
    Some(html)
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

#[cfg(test)]
mod tests {
    use super::ago;

    #[test]
    fn lags_read_in_days_hours_and_minutes() {
        assert_eq!(ago(59), "0m");
        assert_eq!(ago(4 * 60 + 5), "4m");
        assert_eq!(ago(5 * 3600 + 10 * 60), "5h 10m");
        assert_eq!(ago(2 * 86_400 + 3 * 3600 + 59), "2d 3h");
        assert_eq!(ago(-30), "0m");
    }
}
