//! SVG plots of the benchmarks, rendered by the project itself (`seatgate-tools plot`).
//!
//! Three plots, each read from what the benchmarks already write:
//!
//! - [`render_latency`]: the classic HDR percentile plot of one or more `seatgate-tools drop
//!   --json` reports (`seatgate.drop.v1`, or both runs of a `seatgate.drop.compare.v1`):
//!   latency in ms against the percentile, the x axis a log scale of 1/(1−q) so that
//!   50 %, 90 %, 99 %, 99.9 % … are equally spaced.
//! - [`render_throughput`]: claims answered per second by claim strategy, from a
//!   `drop --compare --json` report.
//! - [`render_reconciler`]: confirmed claims per second by batch size, from criterion's
//!   `estimates.json` / `benchmark.json` of the `reconciler` bench group.
//!
//! plotters is built with the SVG backend only: text goes into `<text>` elements that
//! the viewer lays out, and plotters places it with its built-in width estimate, so no
//! font library is needed to build or run this.
//!
//! The parts: this module holds what every plot shares (size, palette, titles, the
//! frame and the files); [`latency`], [`throughput`] and [`reconciler`] read their
//! input and draw one plot each.

mod latency;
mod reconciler;
#[cfg(test)]
mod tests;
mod throughput;

pub use latency::{latency_series, render_latency, LatencySeries};
pub use reconciler::{batch_gain, load_criterion_group, render_reconciler, BenchPoint};
pub use throughput::{load_compare, render_throughput, throughput_title, CompareData, StrategyRun};

use anyhow::{Context, Result};
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;
use std::path::Path;

/// Size of every plot, in px.
pub const SIZE: (u32, u32) = (1000, 600);

const FONT: &str = "sans-serif";

/// Distinct colours (the "tab10" palette), one per series.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// The title of a plot and the line under it (date, machine, workload).
#[derive(Debug, Clone)]
pub struct Titles {
    pub title: String,
    pub note: String,
}

/// `YYYY-MM-DD, N cores`: the default note under a title.
pub fn default_note() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{}, {cores} cores", today_utc())
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today_utc() -> String {
    date_utc(seatgate::clock::unix_secs())
}

/// The UTC date of a Unix time as `YYYY-MM-DD`.
fn date_utc(unix_secs: u64) -> String {
    let date = i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .map_or(time::Date::MAX, |t| t.date());
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Reads and parses a JSON file; every error names the file.
pub fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// Writes a rendered plot, creating its folder if needed.
pub fn write_svg(path: &Path, svg: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}

/// A linear axis whose ticks are exactly the given points (plotters' `with_key_points`
/// has no default formatting, which its mesh needs even with a label formatter).
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(range: std::ops::Range<f64>, ticks: Vec<f64>) -> Self {
        Self {
            inner: range.into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

// ---------------------------------------------------------------------------------
// Latency distribution

/// The chart frame every plot shares: margins and the axes' label areas.
fn frame<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    y_label_width: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_left(20)
        .margin_right(30)
        .margin_bottom(10)
        .x_label_area_size(55)
        .y_label_area_size(y_label_width);
    builder
}

/// The grid and label styles every plot shares.
fn house_style<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
    label_size: u32,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.label_style((FONT, label_size))
        .axis_desc_style((FONT, 17))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(245, 245, 245))
}

/// The title, the note under it, and the area left for the chart.
fn header<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    titles: &Titles,
) -> Result<DrawingArea<SVGBackend<'a>, Shift>> {
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(66);
    let center = Pos::new(HPos::Center, VPos::Top);
    let x = SIZE.0 as i32 / 2;
    top.draw_text(
        &titles.title,
        &TextStyle::from((FONT, 24).into_font().style(FontStyle::Bold)).pos(center),
        (x, 10),
    )?;
    top.draw_text(
        &titles.note,
        &TextStyle::from((FONT, 16).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(center),
        (x, 42),
    )?;
    Ok(body)
}
