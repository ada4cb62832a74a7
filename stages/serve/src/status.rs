//! The status page at `/`: every dataset with its window, head, offset and last commit.

use std::fmt::Write;

use crate::catalog::{Catalog, ReadError};

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page, rendered from each dataset's latest commit.
pub fn page(catalog: &Catalog) -> String {
    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>zarr-roller</title></head><body>\n<h1>zarr-roller datasets</h1>\n",
    );
    for name in catalog.names() {
        let _ = write!(html, "<section><h2>{}</h2>", escape(name));
        match catalog.view(name) {
            Ok(view) => {
                let record = view.record();
                let layout = &record.layout;
                let first = layout.time_of(record.offset);
                let last = record.head.map(|h| layout.time_of(h));
                let _ = write!(
                    html,
                    "<dl><dt>window</dt><dd>{} to {}</dd><dt>offset</dt><dd>{}</dd><dt>head</dt><dd>{}</dd><dt>generation</dt><dd>{}</dd><dt>last commit</dt><dd>{}</dd></dl>",
                    roller_proto::time::format_instant(first),
                    last.map_or_else(|| "nothing yet".into(), roller_proto::time::format_instant),
                    record.offset,
                    record.head.map_or_else(|| "none".into(), |h| h.to_string()),
                    record.generation,
                    escape(&record.committed_at),
                );
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
