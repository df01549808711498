//! `report --html FILE`: the repository report as one self-contained page.
//!
//! Charts are drawn by `plotters` into inline SVG (no script, no network,
//! no fonts fetched); the treemap's layout (squarified, Bruls et al.) is
//! worked out here and drawn with the same library. Each chart sits in a
//! `<section>` with an id, and each headline figure in an element with an
//! id, so that a test can find them in the rendered page.

use std::fmt::Write as _;

use anyhow::anyhow;
use dedup::ops::insight::usage::{DirUsage, Usage};
use dedup::units::human_bytes;
use dedup::Report;
use dedup::Repository;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

const WIDTH: u32 = 880;
const HEIGHT: u32 = 300;
const BLUE: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);
const ORANGE: RGBColor = RGBColor(0xe0, 0x7b, 0x1f);
const GREEN: RGBColor = RGBColor(0x2e, 0x9e, 0x5b);
const GREY: RGBColor = RGBColor(0x9a, 0xa3, 0xad);
const INK: RGBColor = RGBColor(0x22, 0x2b, 0x33);
const FONT: &str = "sans-serif";

/// The depth of the folders the treemap shows (what a folder above holds
/// in files of its own is one more tile).
const TREEMAP_DEPTH: u32 = 2;
/// Tiles the treemap draws at most.
const MAX_TILES: usize = 400;

/// The page for `report`, drawn from the repository's snapshots.
pub fn page(repo: &Repository, report: &Report, usage: &Usage) -> anyhow::Result<String> {
    let snaps = usage.snapshots();
    let mut body = String::new();
    let title = format!("dedup report: {}", repo.root().display());
    writeln!(body, "<h1>{}</h1>", escape(&title))?;
    writeln!(
        body,
        "<p class=\"sub\">{} snapshots, generated {}</p>",
        snaps.len(),
        escape(&humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string())
    )?;
    figures(&mut body, report)?;
    section(
        &mut body,
        "ratio-chart",
        "Ratios over time",
        "The repository's dedup ratio (logical bytes over unique bytes) and overall ratio \
         (logical over stored) as each snapshot was added.",
        &ratio_chart(usage)?,
    )?;
    section(
        &mut body,
        "costs-chart",
        "What each snapshot cost",
        "Bytes each snapshot's ingest added on disk, and its exclusive bytes now: \
         what forgetting it alone would free.",
        &costs_chart(report)?,
    )?;
    let (treemap_title, treemap) = match snaps.last() {
        Some((id, _)) => {
            let dirs = usage.by_dir(id, TREEMAP_DEPTH)?;
            (
                format!(
                    "Where the latest snapshot's bytes are ({})",
                    &id.to_hex()[..8]
                ),
                treemap_chart(&dirs.folders)?,
            )
        }
        None => (
            "Where the latest snapshot's bytes are".into(),
            empty_chart("no snapshots")?,
        ),
    };
    section(
        &mut body,
        "treemap",
        &treemap_title,
        "Folders sized by logical bytes, coloured by the share of their bytes no other folder \
         or snapshot holds: green is shared (cheap), orange is unique (what the folder costs).",
        &treemap,
    )?;
    section(
        &mut body,
        "chunk-histogram",
        "Chunk sizes",
        "Distinct chunks the snapshots hold, by size.",
        &chunk_histogram(usage)?,
    )?;
    section(
        &mut body,
        "shard-chart",
        "Shard balance",
        "Each shard's share of the stored bytes against the share its weight asks for.",
        &shard_chart(report)?,
    )?;
    section(
        &mut body,
        "bloom-chart",
        "Bloom filter",
        "Chunk lookups over all ingests: those the filter answered (index read skipped), those \
         that went to the index, and false positives (the filter said maybe, the index said no).",
        &bloom_chart(report)?,
    )?;
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(&title)
    ))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;color:#222b33;background:#f4f6f8;\
margin:0 auto;max-width:940px;padding:24px}h1{font-size:22px;margin:0}\
.sub{color:#5c6770;margin:4px 0 18px}section{background:#fff;border-radius:8px;\
padding:16px 20px;margin:0 0 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
h2{font-size:17px;margin:0 0 4px}p.note{color:#5c6770;font-size:13px;margin:0 0 10px}\
dl{display:grid;grid-template-columns:repeat(4,1fr);gap:10px;margin:0}\
dl div{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
dt{color:#5c6770;font-size:12px}dd{margin:2px 0 0;font-size:20px;font-weight:600}\
.figures{margin:0 0 18px}svg{display:block;max-width:100%;height:auto}";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The headline figures, each in an element with an id.
fn figures(out: &mut String, r: &Report) -> anyhow::Result<()> {
    let items = [
        ("snapshots", "snapshots", r.snapshots.to_string()),
        ("logical", "logical size", human_bytes(r.logical_bytes)),
        ("stored", "stored on disk", human_bytes(r.stored_bytes)),
        (
            "dedup-ratio",
            "dedup ratio",
            format!("{:.2}x", r.dedup_ratio),
        ),
        (
            "total-ratio",
            "overall ratio",
            format!("{:.2}x", r.total_ratio),
        ),
        (
            "compression",
            "compression saving",
            format!("{:.1}%", r.compression_saving * 100.0),
        ),
        ("chunks", "unique chunks", r.unique_chunks.to_string()),
        (
            "imbalance",
            "shard imbalance",
            format!("{:.1}%", r.shard_imbalance * 100.0),
        ),
    ];
    writeln!(out, "<dl class=\"figures\">")?;
    for (id, name, value) in items {
        writeln!(
            out,
            "<div><dt>{name}</dt><dd id=\"{id}\">{}</dd></div>",
            escape(&value)
        )?;
    }
    writeln!(out, "</dl>")?;
    Ok(())
}

fn section(out: &mut String, id: &str, title: &str, note: &str, svg: &str) -> anyhow::Result<()> {
    writeln!(
        out,
        "<section id=\"{id}\"><h2>{}</h2><p class=\"note\">{}</p>{svg}</section>",
        escape(title),
        escape(note)
    )?;
    Ok(())
}

/// Runs `draw` on a fresh SVG canvas and returns the SVG.
fn svg(
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    Ok(out)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw a chart: {e:?}")
}

fn empty_chart(message: &str) -> anyhow::Result<String> {
    svg(60, |root| {
        root.draw(&Text::new(
            message.to_string(),
            (20, 25),
            (FONT, 15).into_font().color(&GREY),
        ))
        .map_err(plot_error)
    })
}

/// Axis labels for bytes: `1.5 GiB`.
fn bytes_label(v: f64) -> String {
    human_bytes(v.max(0.0) as u64)
}

/// The repository's ratios as each snapshot was added, from the ingest
/// summaries: logical bytes so far over bytes added so far.
fn ratio_chart(usage: &Usage) -> anyhow::Result<String> {
    let snaps = usage.snapshots();
    if snaps.is_empty() {
        return empty_chart("no snapshots");
    }
    let (mut logical, mut added, mut stored) = (0u64, 0u64, 0u64);
    let mut dedup = Vec::new();
    let mut total = Vec::new();
    for (i, (_, r)) in snaps.iter().enumerate() {
        logical += r.summary.logical_bytes;
        added += r.summary.new_bytes;
        stored += r.summary.new_stored_bytes;
        dedup.push((i as f64, logical as f64 / added.max(1) as f64));
        total.push((i as f64, logical as f64 / stored.max(1) as f64));
    }
    let top = dedup.iter().chain(&total).map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let labels = time_labels(snaps.iter().map(|(_, r)| r.time.as_str()));
    svg(HEIGHT, |root| {
        let mut chart = axes(root, &labels, top, &|y| format!("{y:.1}x"), "ratio")?;
        for (points, color, name) in [
            (&dedup, BLUE, "dedup ratio"),
            (&total, ORANGE, "overall ratio"),
        ] {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(plot_error)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// A chart with one category a label on the x axis (at 0, 1, ...) and
/// values from 0 to `top` on the y axis, its grid drawn.
fn axes<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    labels: &[String],
    top: f64,
    y_label: &dyn Fn(&f64) -> String,
    y_desc: &str,
) -> anyhow::Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..(labels.len() as f64 - 0.5), 0.0..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(labels.len().min(12))
        .x_label_formatter(&|x| label_at(labels, *x))
        .y_label_formatter(y_label)
        .y_desc(y_desc)
        .label_style((FONT, 12))
        .draw()
        .map_err(plot_error)?;
    Ok(chart)
}

/// Snapshot times for an axis: the day, or day and time when two
/// snapshots share a day.
fn time_labels<'a>(times: impl Iterator<Item = &'a str>) -> Vec<String> {
    let times: Vec<&str> = times.collect();
    let day = |t: &str| t.get(..10).unwrap_or(t).to_string();
    let days: std::collections::HashSet<String> = times.iter().map(|t| day(t)).collect();
    if days.len() == times.len() {
        times.iter().map(|t| day(t)).collect()
    } else {
        times
            .iter()
            .map(|t| t.get(5..16).unwrap_or(t).replace('T', " "))
            .collect()
    }
}

/// The label of the point nearest `x` (for integer positions only).
fn label_at(labels: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    labels.get(i as usize).cloned().unwrap_or_default()
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    at: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font((FONT, 12))
        .draw()
        .map_err(plot_error)
}

/// Two bars per snapshot: bytes added, exclusive bytes now.
fn costs_chart(report: &Report) -> anyhow::Result<String> {
    let costs = &report.snapshot_costs;
    if costs.is_empty() {
        return empty_chart("no snapshots");
    }
    let top = costs
        .iter()
        .map(|c| c.added_stored_bytes.max(c.exclusive_stored_bytes))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15;
    let labels: Vec<String> = costs
        .iter()
        .map(|c| c.id.to_hex()[..8].to_string())
        .collect();
    svg(HEIGHT, |root| {
        let mut chart = axes(root, &labels, top, &|v| bytes_label(*v), "")?;
        let bars = [
            (BLUE, "added when taken", -0.38, 0.0),
            (ORANGE, "exclusive now", 0.0, 0.38),
        ];
        for (k, (color, name, from, to)) in bars.into_iter().enumerate() {
            chart
                .draw_series(costs.iter().enumerate().map(|(i, c)| {
                    let v = if k == 0 {
                        c.added_stored_bytes
                    } else {
                        c.exclusive_stored_bytes
                    };
                    let x = i as f64;
                    Rectangle::new([(x + from, 0.0), (x + to, v as f64)], color.filled())
                }))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// A tile of the treemap.
struct Tile {
    name: String,
    logical: u64,
    /// Share of its distinct bytes no other folder or snapshot holds.
    unique: f64,
}

/// The latest snapshot's folders at [`TREEMAP_DEPTH`], with what each
/// folder above holds in files of its own as one more tile; largest first,
/// the smallest beyond [`MAX_TILES`] as one tile.
fn tiles(folders: &[DirUsage]) -> Vec<Tile> {
    let mut below: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for d in folders.iter().filter(|d| d.depth > 0) {
        *below.entry(parent(&d.path)).or_default() += d.logical_bytes;
    }
    let mut tiles = Vec::new();
    for d in folders {
        let unique = if d.distinct_bytes == 0 {
            0.0
        } else {
            d.unique_bytes as f64 / d.distinct_bytes as f64
        };
        let below = below.get(d.path.as_str()).copied().unwrap_or(0);
        if d.depth == TREEMAP_DEPTH {
            tiles.push(Tile {
                name: d.path.clone(),
                logical: d.logical_bytes,
                unique,
            });
        } else if d.logical_bytes > below {
            let name = if d.path == "/" {
                "/ (files)".to_string()
            } else {
                format!("{} (files)", d.path)
            };
            tiles.push(Tile {
                name,
                logical: d.logical_bytes - below,
                unique,
            });
        }
    }
    tiles.retain(|t| t.logical > 0);
    tiles.sort_by(|a, b| b.logical.cmp(&a.logical).then(a.name.cmp(&b.name)));
    if tiles.len() > MAX_TILES {
        let rest = tiles.split_off(MAX_TILES - 1);
        let logical: u64 = rest.iter().map(|t| t.logical).sum();
        let unique = rest
            .iter()
            .map(|t| t.unique * t.logical as f64)
            .sum::<f64>()
            / logical as f64;
        tiles.push(Tile {
            name: format!("{} smaller folders", rest.len()),
            logical,
            unique,
        });
    }
    tiles
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) if i > 0 => &path[..i],
        _ => "/",
    }
}

/// Squarified treemap layout (Bruls, Huizing, van Wijk): `areas`, largest
/// first, laid out in `(x, y, w, h)`; one rectangle per area, in order.
fn squarify(areas: &[f64], rect: (f64, f64, f64, f64)) -> Vec<(f64, f64, f64, f64)> {
    let total: f64 = areas.iter().sum();
    let (mut left, mut top, mut width, mut height) = rect;
    let scale = if total > 0.0 {
        width * height / total
    } else {
        0.0
    };
    let sizes: Vec<f64> = areas.iter().map(|a| a * scale).collect();
    let mut out = Vec::with_capacity(sizes.len());
    let mut next = 0;
    let worst = |row: &[f64], side: f64| {
        let sum: f64 = row.iter().sum();
        let (max, min) = row.iter().fold((0.0f64, f64::INFINITY), |(mx, mn), &r| {
            (mx.max(r), mn.min(r))
        });
        (side * side * max / (sum * sum)).max(sum * sum / (side * side * min))
    };
    while next < sizes.len() {
        let side = width.min(height);
        let mut end = next + 1;
        while end < sizes.len() && worst(&sizes[next..=end], side) <= worst(&sizes[next..end], side)
        {
            end += 1;
        }
        let row = &sizes[next..end];
        let sum: f64 = row.iter().sum();
        if width >= height {
            // A column along the left edge.
            let across = if height > 0.0 { sum / height } else { 0.0 };
            let mut at = top;
            for r in row {
                let along = if across > 0.0 { r / across } else { 0.0 };
                out.push((left, at, across, along));
                at += along;
            }
            left += across;
            width -= across;
        } else {
            // A row along the top edge.
            let across = if width > 0.0 { sum / width } else { 0.0 };
            let mut at = left;
            for r in row {
                let along = if across > 0.0 { r / across } else { 0.0 };
                out.push((at, top, along, across));
                at += along;
            }
            top += across;
            height -= across;
        }
        next = end;
    }
    out
}

/// A colour between green (shared) and orange (unique).
fn shade(unique: f64) -> RGBColor {
    let t = unique.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
    RGBColor(
        mix(GREEN.0, ORANGE.0),
        mix(GREEN.1, ORANGE.1),
        mix(GREEN.2, ORANGE.2),
    )
}

fn treemap_chart(folders: &[DirUsage]) -> anyhow::Result<String> {
    let tiles = tiles(folders);
    if tiles.is_empty() {
        return empty_chart("the latest snapshot holds no file bytes");
    }
    let height = 380;
    let areas: Vec<f64> = tiles.iter().map(|t| t.logical as f64).collect();
    let rects = squarify(&areas, (0.0, 0.0, f64::from(WIDTH), f64::from(height)));
    svg(height, |root| {
        for (t, &(x, y, w, h)) in tiles.iter().zip(&rects) {
            let (x0, y0) = (x.round() as i32, y.round() as i32);
            let (x1, y1) = ((x + w).round() as i32, (y + h).round() as i32);
            root.draw(&Rectangle::new(
                [(x0, y0), (x1, y1)],
                shade(t.unique).filled(),
            ))
            .map_err(plot_error)?;
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], WHITE.stroke_width(2)))
                .map_err(plot_error)?;
            // Names only where they fit (about 7 pixels a character).
            let room = ((w - 8.0) / 7.0).max(0.0) as usize;
            if h >= 34.0 && room >= 4 {
                let name = fit(&t.name, room);
                let style = (FONT, 13).into_font().color(&WHITE);
                root.draw(&Text::new(name, (x0 + 5, y0 + 5), style.clone()))
                    .map_err(plot_error)?;
                let figure = format!(
                    "{} · {:.0}% unique",
                    human_bytes(t.logical),
                    t.unique * 100.0
                );
                // The figures whole, or not at all.
                if figure.chars().count() <= room {
                    root.draw(&Text::new(figure, (x0 + 5, y0 + 21), style))
                        .map_err(plot_error)?;
                }
            }
        }
        Ok(())
    })
}

/// `s` cut to `room` characters, with an ellipsis when cut.
fn fit(s: &str, room: usize) -> String {
    if s.chars().count() <= room {
        s.to_string()
    } else {
        let keep: String = s.chars().take(room.saturating_sub(1)).collect();
        format!("{keep}…")
    }
}

/// Distinct chunks by size, in power-of-two buckets.
fn chunk_histogram(usage: &Usage) -> anyhow::Result<String> {
    let mut buckets = [0u64; 33];
    for len in usage.chunk_lengths() {
        buckets[64 - len.max(1).leading_zeros() as usize - 1] += 1;
    }
    let Some(first) = buckets.iter().position(|&n| n > 0) else {
        return empty_chart("no chunks");
    };
    let last = buckets.iter().rposition(|&n| n > 0).unwrap_or(first);
    let shown = &buckets[first..=last];
    let labels: Vec<String> = (first..=last)
        .map(|b| {
            format!(
                "{}+",
                human_bytes(1u64 << b).replace(".0", "").replace(' ', "")
            )
        })
        .collect();
    let top = *shown.iter().max().unwrap_or(&1) as f64 * 1.15;
    svg(HEIGHT, |root| {
        let mut chart = axes(root, &labels, top, &|y| format!("{y:.0}"), "chunks")?;
        chart
            .draw_series(shown.iter().enumerate().map(|(i, &n)| {
                let x = i as f64;
                Rectangle::new([(x - 0.4, 0.0), (x + 0.4, n as f64)], BLUE.filled())
            }))
            .map_err(plot_error)?;
        Ok(())
    })
}

/// Each shard's share of the stored bytes beside its target.
fn shard_chart(report: &Report) -> anyhow::Result<String> {
    let shards = &report.shards;
    if shards.is_empty() {
        return empty_chart("no shards");
    }
    let labels: Vec<String> = shards.iter().map(|s| format!("shard {}", s.id)).collect();
    let top = shards
        .iter()
        .map(|s| s.share.max(s.target_share))
        .fold(0.01, f64::max)
        * 115.0;
    svg(HEIGHT, |root| {
        let mut chart = axes(
            root,
            &labels,
            top,
            &|y| format!("{y:.0}%"),
            "share of stored bytes",
        )?;
        for (k, (color, name)) in [(BLUE, "actual share"), (GREY, "target (weight)")]
            .into_iter()
            .enumerate()
        {
            chart
                .draw_series(shards.iter().enumerate().map(|(i, s)| {
                    let v = if k == 0 { s.share } else { s.target_share } * 100.0;
                    let x = i as f64 + if k == 0 { -0.36 } else { 0.0 };
                    Rectangle::new([(x, 0.0), (x + 0.36, v)], color.filled())
                }))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// The filter's answers over all ingests, as one horizontal bar, and
/// their counts.
fn bloom_chart(report: &Report) -> anyhow::Result<String> {
    let b = &report.bloom;
    let to_index = b.lookups.saturating_sub(b.skipped);
    let parts = [
        (GREEN, "index read skipped", b.skipped),
        (
            BLUE,
            "looked up in the index",
            to_index.saturating_sub(b.false_positives),
        ),
        (ORANGE, "false positives", b.false_positives),
    ];
    svg(110, |root| {
        let total = b.lookups.max(1) as f64;
        let width = f64::from(WIDTH) - 40.0;
        let mut x: f64 = 20.0;
        for (color, _, n) in parts {
            let w = n as f64 / total * width;
            if w > 0.0 {
                root.draw(&Rectangle::new(
                    [(x.round() as i32, 14), ((x + w).round() as i32, 50)],
                    color.filled(),
                ))
                .map_err(plot_error)?;
            }
            x += w;
        }
        let mut lx = 20;
        for (color, name, n) in parts {
            root.draw(&Rectangle::new([(lx, 70), (lx + 12, 82)], color.filled()))
                .map_err(plot_error)?;
            let pct = n as f64 / total * 100.0;
            let text = format!("{name}: {n} ({pct:.1}%)");
            root.draw(&Text::new(
                text.clone(),
                (lx + 18, 69),
                (FONT, 13).into_font().color(&INK),
            ))
            .map_err(plot_error)?;
            lx += 30 + 7 * i32::try_from(text.chars().count()).unwrap_or(100);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squarify_tiles_the_rectangle_in_proportion_to_the_areas() {
        let areas = [600.0, 300.0, 200.0, 120.0, 60.0, 10.0, 1.0];
        let (w, h) = (880.0, 380.0);
        let rects = squarify(&areas, (0.0, 0.0, w, h));
        assert_eq!(rects.len(), areas.len());
        let total: f64 = areas.iter().sum();
        for (a, &(x, y, rw, rh)) in areas.iter().zip(&rects) {
            // Each tile's area is its share of the whole.
            assert!(
                (rw * rh - a / total * w * h).abs() < 1e-6,
                "{a}: {rw} x {rh}"
            );
            // Inside the rectangle.
            assert!(x >= -1e-9 && y >= -1e-9 && x + rw <= w + 1e-6 && y + rh <= h + 1e-6);
        }
        // No two tiles overlap.
        for (i, a) in rects.iter().enumerate() {
            for b in &rects[i + 1..] {
                let dx = (a.0 + a.2).min(b.0 + b.2) - a.0.max(b.0);
                let dy = (a.1 + a.3).min(b.1 + b.3) - a.1.max(b.1);
                assert!(dx <= 1e-6 || dy <= 1e-6, "{a:?} overlaps {b:?}");
            }
        }
        // Squarified: the big tiles are not slivers.
        let (_, _, rw, rh) = rects[0];
        assert!(rw.max(rh) / rw.min(rh) < 3.0);
    }

    #[test]
    fn tiles_split_a_folder_into_its_subfolders_and_its_own_files() {
        let row = |path: &str, depth: u32, logical: u64, unique: u64| DirUsage {
            path: path.into(),
            depth,
            files: 1,
            logical_bytes: logical,
            distinct_bytes: logical,
            stored_bytes: logical,
            unique_bytes: unique,
            unique_stored_bytes: unique,
            shared_in_snapshot: 0,
            shared_with_snapshots: logical - unique,
        };
        let folders = [
            row("/", 0, 1000, 100),
            row("/a", 1, 700, 0),
            row("/a/x", 2, 500, 0),
            row("/b", 1, 200, 100),
        ];
        let tiles = tiles(&folders);
        let got: Vec<(&str, u64)> = tiles.iter().map(|t| (t.name.as_str(), t.logical)).collect();
        assert_eq!(
            got,
            [
                ("/a/x", 500),
                ("/a (files)", 200),
                ("/b (files)", 200),
                ("/ (files)", 100)
            ]
        );
        assert!((tiles[2].unique - 0.5).abs() < 1e-9);
        // Past the cap, the smallest are one tile of the same bytes.
        let many: Vec<DirUsage> = (0..500u64)
            .map(|i| row(&format!("/a/{i:03}"), 2, 1000 + i, 0))
            .collect();
        let tiles = super::tiles(&many);
        assert_eq!(tiles.len(), MAX_TILES);
        assert_eq!(tiles.last().unwrap().name, "101 smaller folders");
        let total: u64 = tiles.iter().map(|t| t.logical).sum();
        assert_eq!(total, many.iter().map(|d| d.logical_bytes).sum::<u64>());
    }
}
